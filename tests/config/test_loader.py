"""The config language: what loads, what it means, and where errors are reported."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gwcore.config import (
    ConfigError,
    ConfigIssue,
    DirectResponseAction,
    ForwardAction,
    GatewayConfig,
    RedirectAction,
    load_config,
    load_config_file,
    load_config_text,
    parse_duration,
    parse_size,
)
from gwcore.config import model as m

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(text: str) -> GatewayConfig:
    return load_config_text(textwrap.dedent(text), "gw.yaml")


def _issues(text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        _load(text)
    assert str(info.value) == "\n".join(str(i) for i in info.value.issues)
    return info.value.issues


def _issue(text: str) -> ConfigIssue:
    issues = _issues(text)
    assert len(issues) == 1, "\n".join(str(i) for i in issues)
    return issues[0]


def _match(match_yaml: str) -> m.RouteMatch:
    """The RouteMatch of a one-route config whose ``match:`` body is ``match_yaml``."""
    body = textwrap.indent(textwrap.dedent(match_yaml), "      ")
    config = load_config_text(
        f"routes:\n  - match:\n{body}\n    direct_response: {{status: 200}}\n", "gw.yaml"
    )
    return config.virtual_hosts[0].routes[0].match


def _route_with(action_yaml: str) -> str:
    """A one-route config (prefix /) with the given action lines, plus a cluster 'a'."""
    action = textwrap.indent(textwrap.dedent(action_yaml), "    ")
    return (
        "routes:\n  - match: {prefix: /}\n"
        + action
        + "\nclusters:\n  a: {endpoints: ['127.0.0.1:9000']}\n"
    )


def _meaning(route: m.Route) -> tuple[Any, ...]:
    """What a route does, without where it was written."""
    match = route.match
    return (
        match.path.describe(),
        match.methods,
        [h.describe() for h in match.headers],
        [c.describe() for c in match.jwt_claims],
        route.action,
    )


# ------------------------------------------------------------------ examples


def test_seed_example_loads_and_means_what_it_says() -> None:
    config = load_config_file(EXAMPLES / "seed.yaml")
    assert config.source.endswith("seed.yaml")
    (vhost,) = config.virtual_hosts
    assert vhost.domains == ("*",)
    (route,) = vhost.routes
    (header,) = route.match.headers
    assert header.name == "x-api-version"
    assert header.string == m.StringMatcher("exact", "v2")
    assert header.present is None and header.range is None and not header.invert_match
    (claim,) = route.match.jwt_claims
    assert claim.path == ("role",)
    assert claim.string == m.StringMatcher("exact", "admin")
    assert not claim.invert_match
    assert route.match.path.kind == "any"
    assert route.match.methods is None
    assert route.action == ForwardAction(cluster="admin-service-v2", timeout=0.5)
    assert config.clusters["admin-service-v2"].endpoints == (m.Endpoint("127.0.0.1", 9001),)


def test_gateway_example_loads_with_every_kind_of_route() -> None:
    config = load_config_file(EXAMPLES / "gateway.yaml")
    assert [vh.name for vh in config.virtual_hosts] == ["api", "fallback"]
    assert set(config.clusters) == {"admin-service-v2", "orders", "orders-canary", "static"}
    (listener,) = config.listeners
    assert (listener.host, listener.port, listener.protocols) == (
        "127.0.0.1",
        8080,
        ("http1", "h2c"),
    )
    api = config.virtual_hosts[0]
    assert api.domains == ("api.example.com",)
    actions = [r.action for r in api.routes]
    assert any(isinstance(a, DirectResponseAction) for a in actions)
    assert any(isinstance(a, RedirectAction) and a.scheme == "https" for a in actions)
    assert any(isinstance(a, ForwardAction) and len(a.weighted_clusters) == 2 for a in actions)
    assert any(r.match.grpc is not None for r in api.routes)
    assert any(r.match.path.kind == "template" for r in api.routes)
    # The seed route is in there, unchanged.
    seed = load_config_file(EXAMPLES / "seed.yaml").virtual_hosts[0].routes[0]
    assert _meaning(seed) in [_meaning(r) for r in api.routes]
    assert config.virtual_hosts[1].domains == ("*",)


# ------------------------------------------------------------ located errors


def test_unknown_key_suggests_closest_name() -> None:
    issue = _issue(
        """\
        routes:
        - match:
            prefix: /
            headres: []
          direct_response: {status: 200}
        """
    )
    assert (issue.source, issue.line, issue.column) == ("gw.yaml", 4, 14)
    assert issue.path == "routes[0].match.headres"
    assert "unknown key 'headres'" in issue.message
    assert "did you mean 'headers'?" in issue.message
    assert str(issue).startswith("gw.yaml:4:14: routes[0].match.headres: unknown key")


def test_unknown_top_level_key_suggests_closest_name() -> None:
    issue = _issue("routes: []\nclusterz: {}\n")
    assert (issue.line, issue.path) == (2, "clusterz")
    assert "did you mean 'clusters'?" in issue.message


def test_integer_where_a_string_is_expected_suggests_quoting() -> None:
    issue = _issue(
        """\
        routes:
        - match: {prefix: /a}
          direct_response: {status: 200}
        - match: {prefix: /b}
          direct_response: {status: 200}
        - match: {prefix: /c}
          direct_response: {status: 200}
        - match:
            headers:
            - name: x-api-version
              exact_match: 2
          direct_response: {status: 200}
        """
    )
    assert issue.path == "routes[3].match.headers[0].exact_match"
    assert (issue.line, issue.column) == (11, 20)
    assert "expected a string, got an integer (2)" in issue.message
    assert "quote it" in issue.message


def test_yaml_boolean_where_a_string_is_expected_suggests_quoting() -> None:
    issue = _issue(
        """\
        routes:
        - match:
            headers:
            - {name: x-debug, exact_match: yes}
          direct_response: {status: 200}
        """
    )
    assert issue.path == "routes[0].match.headers[0].exact_match"
    assert "got a boolean (true)" in issue.message and "quote it" in issue.message


def test_duplicate_yaml_key_is_an_error_at_the_second_key() -> None:
    issue = _issue(
        """\
        routes:
        - match:
            prefix: /a
            prefix: /b
          direct_response: {status: 200}
        """
    )
    assert (issue.line, issue.column) == (4, 5)
    assert "duplicate key 'prefix'" in issue.message


def test_invalid_yaml_syntax_is_located() -> None:
    issue = _issue("routes:\n- match: {prefix: /\n  direct_response: {status: 200}\n")
    assert issue.message.startswith("invalid YAML:")
    assert issue.line is not None and issue.column is not None
    assert issue.path == ""


def test_tab_indentation_is_invalid_yaml() -> None:
    issue = _issue("routes:\n\t- match: {}\n")
    assert issue.message.startswith("invalid YAML:")
    assert issue.line == 2


def test_control_character_is_invalid_yaml_with_its_position() -> None:
    issue = _issue('routes:\n  - x: "a\x07b"\n')
    assert issue.message.startswith("invalid YAML: unacceptable character #x0007")
    assert (issue.line, issue.column) == (2, 10)


def test_deeply_nested_yaml_is_an_error_not_a_crash() -> None:
    issue = _issue("routes: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in issue.message


def test_several_documents_are_invalid() -> None:
    issue = _issue("routes: []\n---\nroutes: []\n")
    assert issue.message.startswith("invalid YAML:")
    assert issue.line == 2


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_empty_file_says_what_was_expected(text: str) -> None:
    issue = _issue(text)
    assert "config is empty" in issue.message
    assert "routes or virtual_hosts" in issue.message


def test_document_that_is_not_a_mapping_is_located() -> None:
    issue = _issue("- routes\n")
    assert (issue.line, issue.column) == (1, 1)
    assert "expected a mapping, got a list" in issue.message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    (issue,) = info.value.issues
    assert issue.source == str(path)
    assert "cannot read config" in issue.message and "No such file" in issue.message


def test_directory_is_an_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config_file(tmp_path)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("routes: []  # caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config_file(path)


@pytest.mark.parametrize(
    ("regex", "complaint"),
    [
        (r"(a)\1", "invalid escape sequence"),  # backreference
        ("(?=a)b", "invalid perl operator"),  # lookahead
        ("(?<!a)b", "invalid perl operator"),  # lookbehind
        ("a(", "missing )"),
    ],
)
def test_regex_that_re2_rejects_is_located(regex: str, complaint: str) -> None:
    issue = _issue(
        f"""\
        routes:
        - match:
            safe_regex: '{regex}'
          direct_response: {{status: 200}}
        """
    )
    assert issue.path == "routes[0].match.safe_regex"
    assert (issue.line, issue.column) == (3, 17)
    assert "invalid RE2 regex" in issue.message and complaint in issue.message


def test_regex_in_header_matcher_is_compiled_with_re2() -> None:
    issue = _issue(
        """\
        routes:
        - match:
            headers:
            - name: x
              safe_regex_match: {regex: '(?=x)'}
          direct_response: {status: 200}
        """
    )
    assert issue.path == "routes[0].match.headers[0].safe_regex_match"
    assert "invalid RE2 regex" in issue.message


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        ("500", "add a unit"),
        ("'500'", "expected a number with a unit"),
        ("5 s", "expected a number with a unit"),
        ("1s1m", "units must go from largest to smallest"),
        ("1m1m", "units must go from largest to smallest"),
        ("-1s", "expected a number with a unit"),
        ("1.5", "add a unit"),
        ("fast", "expected a number with a unit"),
    ],
)
def test_bad_duration_is_located(timeout: str, expected: str) -> None:
    issue = _issue(_route_with(f"route: {{cluster: a, timeout: {timeout}}}"))
    assert issue.path == "routes[0].route.timeout"
    assert issue.line == 3
    assert expected in issue.message


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("64kib", "expected bytes"),
        ("1.5MiB", "expected bytes"),
        ("-1", "must not be negative"),
        ("lots", "expected bytes"),
        ("[1]", "expected a size"),
    ],
)
def test_bad_size_is_located(size: str, expected: str) -> None:
    issue = _issue(
        f"""\
        routes: []
        listeners:
        - name: public
          address: 127.0.0.1:8080
          limits:
            max_body_bytes: {size}
        """
    )
    assert issue.path == "listeners[0].limits.max_body_bytes"
    assert (issue.line, issue.column) == (6, 21)
    assert expected in issue.message


def test_every_bad_listener_limit_is_reported() -> None:
    issues = _issues(
        """\
        routes: []
        listeners:
        - name: public
          address: 127.0.0.1:8080
          limits: {max_header_bytes: 64kb, max_body_bytes: 1.5MiB, idle_timeout: 0s}
        """
    )
    assert [i.path.rsplit(".", 1)[1] for i in issues] == [
        "max_header_bytes",
        "max_body_bytes",
        "idle_timeout",
    ]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("/a/**/b", "'**' must be the last operator"),
        ("/a/{1x}", "invalid variable name '1x'"),
        ("/a/{x-y}", "invalid variable name 'x-y'"),
        ("/a/{}", "invalid variable name ''"),
        ("/a/{x}/{x}", "variable 'x' appears twice"),
        ("/a//b", "empty segment ('//')"),
        ("a/b", "must start with '/'"),
        ("/a/{x", "unclosed '{'"),
        ("/a/*.m4s/b", "allowed only in the last segment"),
    ],
)
def test_bad_path_template_is_located(template: str, expected: str) -> None:
    issue = _issue(
        f"""\
        routes:
        - match:
            path_template: '{template}'
          direct_response: {{status: 200}}
        """
    )
    assert issue.path == "routes[0].match.path_template"
    assert (issue.line, issue.column) == (3, 20)
    assert expected in issue.message


@pytest.mark.parametrize("value", ["/api/", "/", "api"])
def test_path_separated_prefix_must_not_end_with_slash(value: str) -> None:
    issue = _issue(
        f"""\
        routes:
        - match: {{path_separated_prefix: '{value}'}}
          direct_response: {{status: 200}}
        """
    )
    assert issue.path == "routes[0].match.path_separated_prefix"
    assert "must start with '/' and not end with '/'" in issue.message


@pytest.mark.parametrize("kind", ["prefix", "path", "path_separated_prefix", "path_template"])
def test_query_string_in_a_path_matcher_points_to_query_parameters(kind: str) -> None:
    issue = _issue(
        f"""\
        routes:
        - match: {{{kind}: '/search?q=1'}}
          direct_response: {{status: 200}}
        """
    )
    assert issue.path == f"routes[0].match.{kind}"
    assert "use query_parameters" in issue.message


def test_unknown_cluster_suggests_closest_defined_name() -> None:
    issue = _issue(
        """\
        routes:
        - match: {prefix: /}
          route:
            cluster: ordres
        clusters:
          orders: {endpoints: ['127.0.0.1:9000']}
          static: {endpoints: ['127.0.0.1:9001']}
        """
    )
    assert issue.path == "routes[0].route.cluster"
    assert (issue.line, issue.column) == (4, 14)
    assert "unknown cluster 'ordres' (did you mean 'orders'?)" in issue.message
    assert "defined: orders, static" in issue.message


def test_unknown_weighted_cluster_is_reported_in_a_virtual_host() -> None:
    issue = _issue(
        """\
        virtual_hosts:
        - name: api
          domains: [api.example.com]
          routes:
          - match: {prefix: /}
            route:
              weighted_clusters:
              - {name: orders, weight: 90}
              - {name: canary, weight: 10}
        clusters:
          orders: {endpoints: ['127.0.0.1:9000']}
        """
    )
    assert issue.path == "virtual_hosts[0].routes[0].route.weighted_clusters"
    assert issue.line == 8
    assert "unknown cluster 'canary'" in issue.message


def test_reference_without_any_cluster_says_none_are_defined() -> None:
    issue = _issue("routes:\n- match: {}\n  route: {cluster: x}\n")
    assert "no clusters are defined" in issue.message


def test_duplicate_domain_across_virtual_hosts_names_the_first_owner() -> None:
    issue = _issue(
        """\
        virtual_hosts:
        - name: api
          domains: [api.example.com, www.example.com]
          routes: []
        - name: web
          domains: [WWW.example.com]
          routes: []
        """
    )
    assert issue.path == "virtual_hosts[1].domains"
    assert issue.line == 6
    assert "domain 'www.example.com' is already used by virtual host 'api'" in issue.message


def test_routes_and_virtual_hosts_together_are_rejected() -> None:
    issue = _issue("routes: []\nvirtual_hosts: []\n")
    assert (issue.line, issue.column, issue.path) == (1, 1, "")
    assert "either top-level routes" in issue.message


def test_route_with_two_actions_is_rejected() -> None:
    issue = _issue(
        _route_with(
            """\
            route: {cluster: a}
            direct_response: {status: 200}"""
        )
    )
    assert issue.path == "routes[0]"
    assert issue.line == 2
    assert "exactly one action" in issue.message
    assert "got route, direct_response" in issue.message


def test_route_without_an_action_is_rejected() -> None:
    issue = _issue("routes:\n- match: {}\n")
    assert "a route needs exactly one action" in issue.message


@pytest.mark.parametrize(
    "misplaced", ["direct_response: {status: 200}", "redirect: {path_redirect: /x}"]
)
def test_direct_response_or_redirect_inside_route_says_where_it_belongs(misplaced: str) -> None:
    key = misplaced.split(":")[0]
    issue = _issue(_route_with(f"route:\n  cluster: a\n  {misplaced}"))
    assert issue.path == f"routes[0].route.{key}"
    assert issue.line == 5
    assert f"{key} belongs beside route:, not inside it" in issue.message


def test_lower_case_method_suggests_upper_case() -> None:
    issue = _issue(
        """\
        routes:
        - match:
            methods: [GET, post]
          direct_response: {status: 200}
        """
    )
    assert issue.path == "routes[0].match.methods[1]"
    assert (issue.line, issue.column) == (3, 20)
    assert "did you mean 'POST'?" in issue.message


def test_ipv6_endpoint_without_brackets_shows_the_bracketed_form() -> None:
    issue = _issue(
        """\
        routes: []
        clusters:
          v6:
            endpoints: ['::1:9000']
        """
    )
    assert issue.path == "clusters.v6.endpoints[0]"
    assert (issue.line, issue.column) == (4, 17)
    assert "an IPv6 address needs brackets: [::1]:9000" in issue.message


def test_bracketed_ipv6_endpoint_loads() -> None:
    config = _load("routes: []\nclusters:\n  v6: {endpoints: ['[::1]:9000']}\n")
    assert config.clusters["v6"].endpoints == (m.Endpoint("::1", 9000),)
    assert str(config.clusters["v6"].endpoints[0]) == "[::1]:9000"


@pytest.mark.parametrize("address", ["127.0.0.1:²", "127.0.0.1:٨٠", "127.0.0.1", "127.0.0.1:0"])
def test_endpoint_port_must_be_ascii_digits_in_range(address: str) -> None:
    issue = _issue(f"routes: []\nclusters:\n  a: {{endpoints: ['{address}']}}\n")
    assert issue.path == "clusters.a.endpoints[0]"
    assert "host:port" in issue.message or "out of range" in issue.message


def test_ignore_case_with_safe_regex_points_to_inline_flag() -> None:
    issue = _issue(
        """\
        routes:
        - match:
            headers:
            - name: x
              string_match: {safe_regex: {regex: 'a.*'}, ignore_case: true}
          direct_response: {status: 200}
        """
    )
    assert issue.path == "routes[0].match.headers[0].string_match.safe_regex"
    assert "ignore_case does not apply to safe_regex; use (?i)" in issue.message


def test_case_sensitive_with_safe_regex_points_to_inline_flag() -> None:
    issue = _issue(
        """\
        routes:
        - match:
            safe_regex: '/a.*'
            case_sensitive: false
          direct_response: {status: 200}
        """
    )
    assert issue.path == "routes[0].match.case_sensitive"
    assert (issue.line, issue.column) == (4, 21)
    assert "case_sensitive does not apply to safe_regex" in issue.message


def test_redirect_code_must_be_an_integer_redirect_status() -> None:
    for code in ("301.0", "200", "true", "MOVED"):
        issue = _issue(_route_with(f"redirect: {{response_code: {code}}}"))
        assert issue.path == "routes[0].redirect.response_code"


def test_several_errors_in_one_file_are_all_reported_in_order() -> None:
    issues = _issues(
        """\
        virtual_hosts:
        - name: api
          domains: [api.example.com]
          routes:
          - match:
              prefx: /
            route: {cluster: a}
          - match:
              methods: [get]
              safe_regex: '(a)\\1'
            route: {cluster: a, timeout: 500}
        clusters:
          a: {endpoints: ['::1:80']}
        listeners:
        - name: l
          adress: 127.0.0.1:80
        """
    )
    assert [(i.line, i.path) for i in issues] == [
        (6, "virtual_hosts[0].routes[0].match.prefx"),
        (9, "virtual_hosts[0].routes[1].match.methods[0]"),
        (10, "virtual_hosts[0].routes[1].match.safe_regex"),
        (11, "virtual_hosts[0].routes[1].route.timeout"),
        (13, "clusters.a.endpoints[0]"),
        (15, "listeners[0]"),
        (16, "listeners[0].adress"),
    ]
    assert "missing required key 'address'" in issues[5].message
    assert "did you mean 'address'?" in issues[6].message
    lines = str(ConfigError(issues)).splitlines()
    assert len(lines) == 7 and all(line.startswith("gw.yaml:") for line in lines)


def test_dict_config_errors_carry_a_path_but_no_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            {
                "routes": [
                    {"match": {"prefix": "/"}, "direct_response": {"status": 200}},
                    {"match": {"headers": [{"name": "x", "exact_match": 1}]}, "route": {}},
                ]
            }
        )
    issues = info.value.issues
    assert [i.path for i in issues] == [
        "routes[1].match.headers[0].exact_match",
        "routes[1].route",
    ]
    assert all(i.line is None and i.column is None and i.source == "<dict>" for i in issues)
    assert str(issues[0]).startswith("<dict>: routes[1].match.headers[0].exact_match: expected")


# ------------------------------------------------------------ what loads


def test_path_matchers_parse_into_their_kinds() -> None:
    assert _match("prefix: /api").path == m.PathMatcher(
        "prefix", "/api", location="routes[0].match.prefix"
    )
    assert _match("path: /users").path.kind == "path"
    sep = _match("path_separated_prefix: /api").path
    assert (sep.kind, sep.value) == ("path_separated_prefix", "/api")
    folded = _match("prefix: /API\ncase_sensitive: false").path
    assert (folded.kind, folded.value, folded.case_sensitive) == ("prefix", "/api", False)
    regex = _match("safe_regex: {regex: '/items/[0-9]+'}").path
    assert (regex.kind, regex.value) == ("safe_regex", "/items/[0-9]+")
    assert regex.compiled.fullmatch("/items/42") is not None
    assert _match("safe_regex: '/b.*'").path.value == "/b.*"
    template = _match("path_template: '/users/{id}/files/**'").path
    assert template.kind == "template"
    assert template.template == (
        m.TemplateSegment("literal", "users"),
        m.TemplateSegment("any", variable="id"),
        m.TemplateSegment("literal", "files"),
        m.TemplateSegment("rest"),
    )
    assert _match("{}").path.kind == "any"
    assert _match("prefix: /api").path.location == "routes[0].match.prefix"


def test_header_matchers_parse_into_their_kinds() -> None:
    match = _match(
        """\
        headers:
        - {name: X-Exact, exact_match: v2}
        - {name: x-prefix, prefix_match: Bearer }
        - {name: x-suffix, suffix_match: .json}
        - {name: x-contains, contains_match: gzip}
        - {name: x-regex, safe_regex_match: {regex: 'v[0-9]+'}}
        - {name: x-folded, string_match: {exact: ABC, ignore_case: true}}
        - {name: x-present, present_match: true}
        - {name: x-range, range_match: {start: 1, end: 10}}
        - {name: x-not, exact_match: 'no', invert_match: true}
        - {name: ':authority', exact_match: api.example.com}
        """
    )
    h = match.headers
    assert h[0] == m.HeaderMatcher(
        "x-exact", m.StringMatcher("exact", "v2"), location="routes[0].match.headers[0]"
    )
    assert [x.string.kind if x.string else None for x in h] == [
        "exact",
        "prefix",
        "suffix",
        "contains",
        "regex",
        "exact",
        None,
        None,
        "exact",
        "exact",
    ]
    assert h[1].string is not None and h[1].string.value == "Bearer"
    assert h[4].string is not None and h[4].string.compiled.fullmatch("v12") is not None
    assert h[5].string == m.StringMatcher("exact", "abc", ignore_case=True)
    assert h[6].present is True
    assert h[7].range == (1, 10)
    assert h[8].invert_match is True
    assert h[9].name == ":authority"


def test_query_claim_method_grpc_content_type_and_graphql_matchers_parse() -> None:
    match = _match(
        """\
        methods: [GET, POST]
        query_parameters:
        - {name: page, string_match: {exact: '2'}}
        - {name: debug, present_match: true}
        jwt_claim:
        - {name: tenant.id, exact_match: acme}
        - {path: [scope], exact_match: orders:read}
        - {name: role, present_match: true, invert_match: true}
        grpc: {service: orders.v1.OrderService, method: Get}
        content_type: [application/grpc, Application/GRPC+proto]
        graphql: {operation_type: query, operation_name: Me}
        """
    )
    assert match.methods == frozenset({"GET", "POST"})
    assert match.query_parameters[0] == m.QueryParameterMatcher(
        "page", m.StringMatcher("exact", "2"), location="routes[0].match.query_parameters[0]"
    )
    assert match.query_parameters[1].present is True
    claims = match.jwt_claims
    assert claims[0].path == ("tenant", "id") and claims[0].name == "tenant.id"
    assert claims[1].path == ("scope",)
    assert claims[1].string == m.StringMatcher("exact", "orders:read")
    assert (claims[2].present, claims[2].invert_match) == (True, True)
    assert match.grpc == m.GrpcMatcher(
        "orders.v1.OrderService", "Get", location="routes[0].match.grpc"
    )
    assert match.content_type == ("application/grpc", "application/grpc+proto")
    assert match.graphql == m.GraphqlMatcher(
        "query", m.StringMatcher("exact", "Me"), location="routes[0].match.graphql"
    )
    assert match.needs_claims and match.needs_body


def test_bare_grpc_graphql_and_single_content_type_parse() -> None:
    match = _match("grpc:\ngraphql:\ncontent_type: application/json")
    assert match.grpc == m.GrpcMatcher(location="routes[0].match.grpc")
    assert match.graphql == m.GraphqlMatcher(location="routes[0].match.graphql")
    assert match.content_type == ("application/json",)


def test_actions_parse_into_their_kinds() -> None:
    config = _load(
        """\
        routes:
        - name: split
          match: {prefix: /v1}
          route:
            weighted_clusters:
              clusters:
              - {name: a, weight: 90}
              - {name: b, weight: 10}
            prefix_rewrite: /v2
            host_rewrite_literal: internal
            timeout: 0s
        - match: {path: /healthz}
          direct_response: {status: 200, body: {inline_string: ok}}
        - match: {prefix: /old}
          redirect: {https_redirect: true, response_code: FOUND, prefix_rewrite: /new}
        clusters:
          a: {endpoints: ['127.0.0.1:9000']}
          b: {endpoints: ['127.0.0.1:9001']}
        """
    )
    split, health, old = config.virtual_hosts[0].routes
    assert split.name == "split" and split.label == "split"
    assert split.action == ForwardAction(
        weighted_clusters=(m.WeightedCluster("a", 90), m.WeightedCluster("b", 10)),
        timeout=None,
        prefix_rewrite="/v2",
        host_rewrite="internal",
    )
    assert isinstance(split.action, ForwardAction)
    assert [split.action.pick_cluster(d) for d in (0.0, 0.89, 0.9, 0.99)] == ["a", "a", "b", "b"]
    assert health.action == DirectResponseAction(200, b"ok")
    assert health.label == "routes[1]"
    assert old.action == RedirectAction(302, scheme="https", prefix_rewrite="/new")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("1h", 3600.0),
        ("0s", 0.0),
    ],
)
def test_durations_convert_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_route_timeout_is_in_seconds() -> None:
    config = _load(_route_with("route: {cluster: a, timeout: 1m30s}"))
    action = config.virtual_hosts[0].routes[0].action
    assert isinstance(action, ForwardAction) and action.timeout == 90.0
    default = _load(_route_with("route: {cluster: a}")).virtual_hosts[0].routes[0].action
    assert isinstance(default, ForwardAction) and default.timeout == 15.0


@pytest.mark.parametrize(
    ("value", "size"),
    [("64KiB", 65536), ("10MiB", 10 * 1024 * 1024), (1000, 1000), ("1000", 1000), ("1KB", 1000)],
)
def test_sizes_convert_to_bytes(value: int | str, size: int) -> None:
    assert parse_size(value) == size


def test_listener_limits_parse_sizes_and_durations() -> None:
    config = _load(
        """\
        routes: []
        listeners:
        - name: public
          address: 127.0.0.1:8080
          protocols: [h2c]
          limits: {max_header_bytes: 64KiB, max_body_bytes: 1000, header_timeout: 2s}
        """
    )
    (listener,) = config.listeners
    assert listener.protocols == ("h2c",)
    assert listener.limits == m.ListenerLimits(65536, 1000, 2.0, 60.0)


def test_config_objects_are_immutable() -> None:
    config = load_config_file(EXAMPLES / "seed.yaml")
    route = config.virtual_hosts[0].routes[0]
    targets: list[tuple[Any, str]] = [
        (config, "virtual_hosts"),
        (config.virtual_hosts[0], "routes"),
        (route, "action"),
        (route.match, "headers"),
        (route.match.headers[0], "name"),
        (route.action, "timeout"),
        (config.clusters["admin-service-v2"], "endpoints"),
    ]
    for obj, attr in targets:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, None)
    with pytest.raises(TypeError):
        config.clusters["other"] = config.clusters["admin-service-v2"]  # type: ignore[index]
    assert isinstance(config.virtual_hosts, tuple)
    assert isinstance(route.match.headers, tuple)


def test_cluster_options_weighted_endpoints_pending_limit_and_hash_key() -> None:
    config = load_config(
        {
            "clusters": {
                "c": {
                    "endpoints": ["127.0.0.1:1", {"address": "127.0.0.1:2", "weight": 3}],
                    "max_pending_requests": 10,
                    "idle_timeout": "30s",
                    "lb": "ring_hash",
                    "hash_on": {"header": "X-User"},
                }
            },
            "routes": [],
        }
    )
    cluster = config.clusters["c"]
    assert [e.weight for e in cluster.endpoints] == [1, 3]
    assert (cluster.max_pending_requests, cluster.idle_timeout) == (10, 30.0)
    assert cluster.hash_header == "x-user"


def test_bad_hash_on_is_a_located_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("clusters:\n  c:\n    endpoints: ['127.0.0.1:1']\n    hash_on: cookie\n")
    assert "clusters.c.hash_on: expected client_ip or {header: NAME}" in str(info.value)


def test_domain_with_a_port_is_refused_because_ports_are_ignored() -> None:
    raw = {"virtual_hosts": [{"name": "a", "domains": ["api.test:8080"], "routes": []}]}
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert "virtual_hosts[0].domains[0]: domain 'api.test:8080'" in str(info.value)
    load_config({"virtual_hosts": [{"name": "a", "domains": ["[::1]"], "routes": []}]})


def test_an_endpoint_listed_twice_in_a_cluster_is_located() -> None:
    """The balancers need distinct endpoints: a duplicate is a config error, not a crash
    when the gateway starts."""
    with pytest.raises(ConfigError) as info:
        load_config_text(
            "clusters:\n  c:\n    endpoints: ['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:1']\n"
            "routes: []\n"
        )
    (issue,) = info.value.issues
    assert issue.path == "clusters.c.endpoints[2]"
    assert "already endpoints[0]" in issue.message


def test_apps_as_clusters_lets_routes_name_undeclared_clusters() -> None:
    """For the ASGI middleware a route's cluster names an application, which the config
    does not declare; everything else is still checked."""
    text = "routes:\n- match: {prefix: /}\n  route: {cluster: web-app}\n"
    with pytest.raises(ConfigError, match="unknown cluster 'web-app'"):
        load_config_text(text)
    config = load_config_text(text, apps_as_clusters=True)
    assert dict(config.clusters) == {}
    with pytest.raises(ConfigError, match="prefx"):
        load_config_text(text.replace("prefix", "prefx"), apps_as_clusters=True)
