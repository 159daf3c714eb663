"""Header value templates (``gwcore.config.templates``) and the header transform keys
of routes and virtual hosts (``request_headers``/``response_headers`` and Envoy's
``*_headers_to_add``/``*_headers_to_remove``)."""

from __future__ import annotations

import itertools
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from real_keys import RSA_JWK, flow

from gwcore.config import ConfigError, ConfigIssue, load_config_text
from gwcore.config import model as m
from gwcore.config.templates import VARIABLES, parse_template, render_template_source


def _lit(text: str) -> m.TemplatePart:
    return m.TemplatePart("literal", text=text)


# ---------------------------------------------------------------- templates


def test_variables_parse_into_their_kinds() -> None:
    assert parse_template("ip=%CLIENT_IP%;id=%REQUEST_ID%;r=%ROUTE_NAME%;100%%") == (
        _lit("ip="),
        m.TemplatePart("client_ip"),
        _lit(";id="),
        m.TemplatePart("request_id"),
        _lit(";r="),
        m.TemplatePart("route"),
        _lit(";100%"),
    )
    assert parse_template("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%") == (
        m.TemplatePart("client_ip"),
    )
    assert parse_template("%CLAIM(tenant.id)%") == (m.TemplatePart("claim", path=("tenant", "id")),)
    assert parse_template("%CLAIM(sub)%") == (m.TemplatePart("claim", path=("sub",)),)
    assert parse_template("%REQ(X-User)%") == (m.TemplatePart("header", name="x-user"),)


def test_literal_text_is_one_part_and_empty_is_none() -> None:
    assert parse_template("no variables") == (_lit("no variables"),)
    assert parse_template("") == ()
    assert parse_template("%%") == (_lit("%"),)
    assert parse_template("a%%b%%%%c") == (_lit("a%b%%c"),)
    assert parse_template("tab\there, ünïcode") == (_lit("tab\there, ünïcode"),)
    assert parse_template("%CLIENT_IP%%REQUEST_ID%") == (
        m.TemplatePart("client_ip"),
        m.TemplatePart("request_id"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("%FOO%", "unknown variable %FOO%"),
        ("%client_ip%", "unknown variable %client_ip%"),
        ("%client_ip%", "did you mean %CLIENT_IP%? variable names are upper-case"),
        ("%REQUEST_I%", "did you mean %REQUEST_ID%?"),
        ("a %CLIENT_IP", "unterminated % at position 2"),
        ("50%", "unterminated %"),
        ("50% off", "unterminated %"),
        ("%CLAIM(a.b%", "unterminated %CLAIM("),
        ("%CLAIM(a)x%", "unterminated %"),
        ("%CLAIM()%", "needs an argument"),
        ("%CLAIM%", "needs an argument"),
        ("%REQ%", "needs an argument"),
        ("%CLAIM(a..b)%", "empty segment"),
        ("%CLAIM(.a)%", "empty segment"),
        ("%REQ(bad name)%", "not a header name"),
        ("%REQ(a?b)%", "not a header name"),
        ("%REQ(:authority)%", "not a header name"),
        ("%CLIENT_IP(x)%", "takes no argument"),
        ("%(x)%", "empty variable name"),
        ("% %", "unterminated %"),
        ("a\r\nb", "control character"),
        ("a\x00b", "control character '\\x00' at position 1"),
        ("a\x7fb", "control character"),
    ],
)
def test_parse_errors_are_specific(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_template(text)
    assert message in str(info.value)


def test_unknown_variable_lists_what_is_known() -> None:
    with pytest.raises(ValueError) as info:
        parse_template("x-%START_TIME%")
    text = str(info.value)
    assert "at position 2" in text
    assert all(variable in text for variable in VARIABLES)
    assert "%% for a literal %" in text


_variables = st.sampled_from(
    [
        m.TemplatePart("client_ip"),
        m.TemplatePart("request_id"),
        m.TemplatePart("route"),
        m.TemplatePart("claim", path=("a",)),
        m.TemplatePart("claim", path=("a", "b_c", "https://x")),
        m.TemplatePart("header", name="x-y"),
    ]
)
_literal_text = st.text(
    st.characters(min_codepoint=0x20, blacklist_characters="\x7f") | st.just("\t"), min_size=1
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_variables, _literal_text.map(_lit)), max_size=6))
def test_parse_reads_back_what_was_written(parts: list[m.TemplatePart]) -> None:
    merged: list[m.TemplatePart] = []
    for part in parts:
        if part.kind == "literal" and merged and merged[-1].kind == "literal":
            merged[-1] = _lit(merged[-1].text + part.text)
        else:
            merged.append(part)
    text = render_template_source(tuple(parts))
    assert parse_template(text) == tuple(merged)
    assert render_template_source(parse_template(text)) == text


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("%()ACEILMNPQRT_.ax- \r")) | st.text())
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    try:
        parts = parse_template(text)
    except ValueError as exc:
        assert str(exc)
        return
    # Literal parts never touch each other, and parsing is stable.
    assert not any(a.kind == b.kind == "literal" for a, b in itertools.pairwise(parts))
    assert parse_template(render_template_source(parts)) == parts


# -------------------------------------------------------------- transforms


def _route(lines: str, policy: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(lines), "    ")
    head = "jwt_providers:\n  p: {issuer: i, jwks: {inline: " + flow({"keys": [RSA_JWK]}) + "}}\n"
    return (
        head
        + "routes:\n  - match: {prefix: /}\n    direct_response: {status: 200}\n"
        + (f"    policy: {policy}\n" if policy else "")
        + body
        + "\n"
    )


def _transforms(lines: str, policy: str = "{jwt: p}") -> m.Route:
    return load_config_text(_route(lines, policy), "gw.yaml").virtual_hosts[0].routes[0]


def _issues(text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "gw.yaml")
    return info.value.issues


def _issue(lines: str, policy: str = "{jwt: p}") -> ConfigIssue:
    issues = _issues(_route(lines, policy))
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def _opt(name: str, value: str, action: m.AppendAction) -> m.HeaderValueOption:
    return m.HeaderValueOption(name, value, action, parse_template(value))


def test_new_style_block_parses_add_set_remove_rename() -> None:
    route = _transforms(
        """\
        request_headers:
          add: {X-Trace: "t-%REQUEST_ID%", x-empty: ""}
          set: {X-Tenant: "%CLAIM(tenant.id)%"}
          remove: [X-Debug, cookie]
          rename: {X-Old: x-new}
        response_headers:
          add:
          - {name: Via, value: gw}
          - {name: via, value: gw2}
          set: {cache-control: no-store}
        """
    )
    assert route.request_headers == m.HeaderTransform(
        add=(
            _opt("x-tenant", "%CLAIM(tenant.id)%", "overwrite_if_exists_or_add"),
            _opt("x-trace", "t-%REQUEST_ID%", "append_if_exists_or_add"),
            m.HeaderValueOption("x-empty", "", "append_if_exists_or_add", ()),
        ),
        remove=("x-debug", "cookie"),
        rename=(("x-old", "x-new"),),
    )
    assert route.response_headers.add == (
        _opt("cache-control", "no-store", "overwrite_if_exists_or_add"),
        _opt("via", "gw", "append_if_exists_or_add"),
        _opt("via", "gw2", "append_if_exists_or_add"),
    )
    assert route.request_headers.add[0].template == (
        m.TemplatePart("claim", path=("tenant", "id")),
    )


def test_envoy_keys_come_first_and_get_templates_too() -> None:
    route = _transforms(
        """\
        request_headers_to_add:
        - header: {key: x-ip, value: "%CLIENT_IP%"}
          append_action: OVERWRITE_IF_EXISTS_OR_ADD
        request_headers_to_remove: [x-a]
        request_headers:
          set: {x-b: b}
          remove: [x-c]
        """
    )
    assert route.request_headers == m.HeaderTransform(
        add=(
            _opt("x-ip", "%CLIENT_IP%", "overwrite_if_exists_or_add"),
            _opt("x-b", "b", "overwrite_if_exists_or_add"),
        ),
        remove=("x-a", "x-c"),
    )
    assert route.request_headers.add[0].template == (m.TemplatePart("client_ip"),)
    assert not route.request_headers.add[0].is_literal and route.request_headers.add[1].is_literal


def test_virtual_hosts_take_both_styles() -> None:
    config = load_config_text(
        textwrap.dedent(
            """\
            virtual_hosts:
            - name: api
              domains: ['*']
              request_headers_to_add: [{header: {key: x-vh, value: "%ROUTE_NAME%"}}]
              response_headers_to_remove: [server]
              request_headers: {set: {x-gw: "1"}}
              response_headers: {rename: {x-a: x-b}}
              routes:
              - match: {prefix: /}
                direct_response: {status: 200}
            """
        ),
        "gw.yaml",
    )
    (vh,) = config.virtual_hosts
    assert vh.request_headers.add == (
        _opt("x-vh", "%ROUTE_NAME%", "append_if_exists_or_add"),
        _opt("x-gw", "1", "overwrite_if_exists_or_add"),
    )
    assert vh.response_headers == m.HeaderTransform(remove=("server",), rename=(("x-a", "x-b"),))
    assert vh.routes[0].request_headers.empty


@pytest.mark.parametrize(
    ("lines", "path", "complaint"),
    [
        ("request_headers: {set: {x-a: '%FOO%'}}", "request_headers.set.x-a", "unknown variable"),
        ("request_headers: {add: {x-a: '50%'}}", "request_headers.add.x-a", "unterminated %"),
        (
            "request_headers_to_add: [{header: {key: x, value: '%REQ(a b)%'}}]",
            "request_headers_to_add[0].header.value",
            "not a header name",
        ),
        (
            "response_headers: {add: [{name: x, value: 'a%CLAIM()%'}]}",
            "response_headers.add[0].value",
            "needs an argument",
        ),
        ("request_headers: {set: {x-a: 5}}", "request_headers.set.x-a", "quote it"),
        ("request_headers: {set: {host: a}}", "request_headers.set.host", "cannot be set"),
        (
            "request_headers: {add: [{name: ':path', value: a}]}",
            "request_headers.add[0].name",
            "cannot be set",
        ),
        (
            "response_headers: {set: {Content-Length: '1'}}",
            "response_headers.set.Content-Length",
            "cannot be set",
        ),
        (
            "request_headers: {set: {transfer-encoding: x}}",
            "request_headers.set.transfer-encoding",
            "cannot be set",
        ),
        ("request_headers: {set: {'a b': x}}", "request_headers.set.a b", "invalid header name"),
        (
            "request_headers: {rename: {host: x}}",
            "request_headers.rename.host",
            "cannot be renamed",
        ),
        (
            "request_headers: {rename: {x: ':path'}}",
            "request_headers.rename.x",
            "cannot be renamed",
        ),
        ("request_headers: {rename: {x: X}}", "request_headers.rename.x", "renamed to itself"),
        (
            "request_headers: {rename: {a: z, b: z}}",
            "request_headers.rename.b",
            "both 'a' and 'b' are renamed to 'z'",
        ),
        ("request_headers: {rename: [a, b]}", "request_headers.rename", "expected a mapping"),
        ("request_headers: {remove: x}", "request_headers.remove", "expected a list"),
        ("request_headers: {remove: ['a b']}", "request_headers.remove[0]", "invalid header"),
        ("request_headers: {ad: {}}", "request_headers.ad", "did you mean 'add'?"),
        ("request_headers: [x]", "request_headers", "expected a mapping"),
        ("request_headers: {set: [{name: a, value: b}]}", "request_headers.set", "mapping"),
        ("request_headers: {add: [{name: a}]}", "request_headers.add[0]", "'value'"),
        ("request_headers: {set: {a: x, A: y}}", "request_headers.set.A", "set twice"),
        (
            "request_headers: {set: {a: x}, add: {A: y}}",
            "request_headers.add.A",
            "both set and added",
        ),
        ('request_headers: {set: {a: "x\\ny"}}', "request_headers.set.a", "control character"),
        ("request_header: {}", "request_header", "did you mean 'request_headers'?"),
    ],
)
def test_bad_transforms_are_located(lines: str, path: str, complaint: str) -> None:
    issue = _issue(lines)
    assert issue.path == f"routes[0].{path}"
    assert issue.line is not None and issue.line >= 6
    assert complaint in issue.message


def test_claim_variables_need_jwt_on_the_route() -> None:
    issue = _issue("request_headers: {set: {x-t: 'u=%CLAIM(sub)%'}}", policy="")
    assert issue.path == "routes[0].request_headers.set.x-t"
    assert "%CLAIM(sub)% needs verified claims" in issue.message
    issue = _issue(
        "response_headers_to_add: [{header: {key: x, value: '%CLAIM(a.b)%'}}]", policy=""
    )
    assert issue.path == "routes[0].response_headers_to_add[0].header.value"
    # With jwt (even allow_missing) it loads.
    route = _transforms(
        "request_headers: {set: {x-t: '%CLAIM(sub)%'}}", "{jwt: {provider: p, allow_missing: true}}"
    )
    assert route.request_headers.add[0].template == (m.TemplatePart("claim", path=("sub",)),)


def test_existing_envoy_header_errors_are_unchanged() -> None:
    issue = _issue("request_headers_to_add: [{header: {key: host, value: a}}]")
    assert issue.path == "routes[0].request_headers_to_add[0].header.key"
    assert issue.message == "header 'host' cannot be set by configuration"
    issue = _issue("request_headers_to_add: [{header: {key: x, value: a}, append: 1}]")
    assert issue.path == "routes[0].request_headers_to_add[0].append"


def test_every_transform_error_is_reported() -> None:
    issues = _issues(
        _route(
            """\
            request_headers:
              set: {host: a, x-b: '%X%'}
              rename: {x: x}
            response_headers_to_add: [{header: {key: 'a b', value: v}}]
            """,
            "{jwt: p}",
        )
    )
    assert [i.path for i in issues] == [
        "routes[0].request_headers.set.host",
        "routes[0].request_headers.set.x-b",
        "routes[0].request_headers.rename.x",
        "routes[0].response_headers_to_add[0].header.key",
    ]
