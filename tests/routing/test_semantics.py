"""What each matcher means, checked on both the compiled table and the reference scan."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from gwcore.config import load_config
from gwcore.routing import (
    Decision,
    Matched,
    NeedBody,
    NeedClaims,
    NoRoute,
    RouteRequest,
    RouteTable,
    reference_match,
)

Router = Callable[[dict[str, Any], RouteRequest], Decision]


def _compiled(raw: dict[str, Any], request: RouteRequest) -> Decision:
    return RouteTable(load_config(raw)).match(request)


def _reference(raw: dict[str, Any], request: RouteRequest) -> Decision:
    return reference_match(load_config(raw), request)


@pytest.fixture(params=[_compiled, _reference], ids=["compiled", "reference"])
def route(request: pytest.FixtureRequest) -> Router:
    return request.param  # type: ignore[no-any-return]


def _table(*matches: dict[str, Any]) -> dict[str, Any]:
    return {
        "routes": [
            {"name": f"r{i}", "match": match, "direct_response": {"status": 200}}
            for i, match in enumerate(matches)
        ]
    }


def _winner(decision: Decision) -> str | None:
    if isinstance(decision, Matched):
        return decision.route.name
    assert isinstance(decision, NoRoute), decision
    return None


def _req(path: str = "/", method: str = "GET", **kw: Any) -> RouteRequest:
    return RouteRequest(method, path, **kw)


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/api", "r0"), ("/apix", "r0"), ("/api/v1", "r0"), ("/ap", None), ("/API", None)],
)
def test_prefix_is_a_plain_string_prefix(route: Router, path: str, expected: str | None) -> None:
    assert _winner(route(_table({"prefix": "/api"}), _req(path))) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/api", "r0"), ("/api/", "r0"), ("/api/v1?x=1", "r0"), ("/apix", None), ("/ap", None)],
)
def test_path_separated_prefix_respects_segment_boundaries(
    route: Router, path: str, expected: str | None
) -> None:
    assert _winner(route(_table({"path_separated_prefix": "/api"}), _req(path))) == expected


def test_exact_path_ignores_query_and_fragment(route: Router) -> None:
    table = _table({"path": "/users"})
    assert _winner(route(table, _req("/users?id=3"))) == "r0"
    assert _winner(route(table, _req("/users#top"))) == "r0"
    assert _winner(route(table, _req("/users/"))) is None


def test_case_insensitive_prefix_and_path(route: Router) -> None:
    table = _table(
        {"prefix": "/API", "case_sensitive": False}, {"path": "/X", "case_sensitive": False}
    )
    assert _winner(route(table, _req("/api/v1"))) == "r0"
    assert _winner(route(table, _req("/x"))) == "r1"


def test_regex_matches_the_whole_path_without_query(route: Router) -> None:
    table = _table({"safe_regex": {"regex": "/items/[0-9]+"}}, {"safe_regex": "/b.*"})
    assert _winner(route(table, _req("/items/42?page=2"))) == "r0"
    assert _winner(route(table, _req("/items/42/x"))) is None
    assert _winner(route(table, _req("/x/items/42"))) is None
    assert _winner(route(table, _req("/bee"))) == "r1"


@pytest.mark.parametrize(
    ("template", "path", "matches"),
    [
        ("/users/{id}/posts/{post}", "/users/7/posts/9", True),
        ("/users/{id}/posts/{post}", "/users/7/posts", False),
        ("/users/{id}/posts/{post}", "/users//posts/9", False),
        ("/users/*", "/users/7", True),
        ("/users/*", "/users/7/8", False),
        ("/users/**", "/users/", True),
        ("/users/**", "/users/7/8/9", True),
        ("/users/**", "/users", False),
        ("/files/{path=**}", "/files/a/b.txt", True),
        ("/v/{x=a/*}/end", "/v/a/b/end", True),
        ("/v/{x=a/*}/end", "/v/b/b/end", False),
        ("/videos/*/*.m4s", "/videos/1/seg.m4s", True),
        ("/videos/*/*.m4s", "/videos/1/seg.mp4", False),
        ("/**.mpd", "/content/123/manifest.mpd", True),
        ("/", "/", True),
        ("/", "/a", False),
    ],
)
def test_path_template(route: Router, template: str, path: str, matches: bool) -> None:
    decision = route(_table({"path_template": template}), _req(path))
    assert (_winner(decision) == "r0") is matches


def test_no_path_condition_matches_every_path(route: Router) -> None:
    assert _winner(route(_table({}), _req("*", method="OPTIONS"))) == "r0"


# ------------------------------------------------------------- first match


def test_first_match_wins_in_declaration_order(route: Router) -> None:
    table = _table({"prefix": "/"}, {"path": "/exact"})
    assert _winner(route(table, _req("/exact"))) == "r0"
    table = _table({"path": "/exact"}, {"prefix": "/"})
    assert _winner(route(table, _req("/exact"))) == "r0"
    assert _winner(route(table, _req("/other"))) == "r1"


def test_methods(route: Router) -> None:
    table = _table({"prefix": "/", "methods": ["POST", "PUT"]}, {"prefix": "/"})
    assert _winner(route(table, _req("/", method="PUT"))) == "r0"
    assert _winner(route(table, _req("/", method="GET"))) == "r1"
    assert _winner(route(table, _req("/", method="put"))) == "r1"  # methods are case-sensitive


# ---------------------------------------------------------------- headers


def test_header_names_are_case_insensitive(route: Router) -> None:
    table = _table({"headers": [{"name": "X-API-Version", "exact_match": "v2"}]})
    assert _winner(route(table, _req(headers=[("x-api-VERSION", "v2")]))) == "r0"
    assert _winner(route(table, _req(headers=[("x-api-version", "V2")]))) is None


def test_any_of_several_header_values_matches(route: Router) -> None:
    table = _table({"headers": [{"name": "x-a", "exact_match": "2"}]})
    assert _winner(route(table, _req(headers=[("x-a", "1"), ("X-A", "2")]))) == "r0"


def test_inverted_header_means_no_value_matches_and_absent_fails(route: Router) -> None:
    table = _table({"headers": [{"name": "x-a", "exact_match": "1", "invert_match": True}]})
    assert _winner(route(table, _req(headers=[("x-a", "2")]))) == "r0"
    assert _winner(route(table, _req(headers=[("x-a", "2"), ("x-a", "1")]))) is None
    assert _winner(route(table, _req())) is None


def test_present_match_false_requires_absence(route: Router) -> None:
    table = _table({"headers": [{"name": "x-debug", "present_match": False}]})
    assert _winner(route(table, _req())) == "r0"
    assert _winner(route(table, _req(headers=[("x-debug", "")]))) is None
    inverted = _table(
        {"headers": [{"name": "x-debug", "present_match": True, "invert_match": True}]}
    )
    assert _winner(route(inverted, _req())) == "r0"


@pytest.mark.parametrize(
    ("matcher", "value", "expected"),
    [
        ({"prefix_match": "ab"}, "abc", True),
        ({"suffix_match": "bc"}, "abc", True),
        ({"contains_match": "b"}, "abc", True),
        ({"safe_regex_match": {"regex": "a.c"}}, "abc", True),
        ({"safe_regex_match": {"regex": "a"}}, "abc", False),  # whole value
        ({"string_match": {"exact": "ABC", "ignore_case": True}}, "abc", True),
        ({"string_match": {"prefix": "AB", "ignore_case": True}}, "abc", True),
        ({"string_match": {"suffix": "x"}}, "abc", False),
        ({"string_match": {"safe_regex": {"regex": "[a-c]+"}}}, "abc", True),
        ({"range_match": {"start": 1, "end": 10}}, "9", True),
        ({"range_match": {"start": 1, "end": 10}}, "10", False),
        ({"range_match": {"start": -5, "end": 0}}, "-3", True),
        ({"range_match": {"start": 1, "end": 10}}, "x", False),
        ({"exact_match": ""}, "", True),
    ],
)
def test_header_string_matchers(
    route: Router, matcher: dict[str, Any], value: str, expected: bool
) -> None:
    table = _table({"headers": [{"name": "x-a", **matcher}]})
    assert (_winner(route(table, _req(headers=[("x-a", value)]))) == "r0") is expected


def test_pseudo_headers_can_be_matched(route: Router) -> None:
    table = _table({"headers": [{"name": ":method", "exact_match": "PATCH"}]})
    assert _winner(route(table, _req(method="PATCH"))) == "r0"
    assert _winner(route(table, _req(method="GET"))) is None


# ------------------------------------------------------------ query params


def test_query_parameters(route: Router) -> None:
    table = _table(
        {"query_parameters": [{"name": "debug", "present_match": True}]},
        {"query_parameters": [{"name": "v", "string_match": {"exact": "a b"}}]},
        {"query_parameters": [{"name": "gone", "present_match": False}]},
    )
    assert _winner(route(table, _req("/?debug"))) == "r0"
    assert _winner(route(table, _req("/?v=a%20b&gone=1"))) == "r1"
    assert _winner(route(table, _req("/?x=1"))) == "r2"
    assert _winner(route(table, _req("/?gone=1"))) is None


# --------------------------------------------------------------- claims


def test_claim_routing_asks_for_claims_only_when_the_earliest_route_needs_them(
    route: Router,
) -> None:
    table = _table(
        {"prefix": "/public"},
        {"prefix": "/admin", "jwt_claim": [{"name": "role", "exact_match": "admin"}]},
        {"prefix": "/"},
    )
    assert _winner(route(table, _req("/public/x"))) == "r0"
    pending = route(table, _req("/admin/x"))
    assert isinstance(pending, NeedClaims)
    assert pending.route.name == "r1"
    assert _winner(pending.with_claims({"role": "admin"})) == "r1"
    assert _winner(pending.with_claims({"role": "user"})) == "r2"
    assert _winner(pending.with_claims({})) == "r2"


def test_claim_paths_arrays_scope_and_scalars(route: Router) -> None:
    table = _table(
        {"jwt_claim": [{"name": "tenant.id", "exact_match": "t1"}]},
        {"jwt_claim": [{"name": "roles", "exact_match": "ops"}]},
        {"jwt_claim": [{"name": "scope", "exact_match": "admin:write"}]},
        {"jwt_claim": [{"name": "level", "exact_match": "3"}]},
        {"jwt_claim": [{"name": "beta", "exact_match": "true"}]},
        {"jwt_claim": [{"path": ["https://example.com/team"], "exact_match": "red"}]},
        {"jwt_claim": [{"name": "sub", "present_match": False}]},
    )

    def winner(claims: dict[str, Any]) -> str | None:
        return _winner(route(table, _req(claims=claims)))

    assert winner({"tenant": {"id": "t1"}, "sub": "u"}) == "r0"
    assert winner({"roles": ["dev", "ops"], "sub": "u"}) == "r1"
    assert winner({"scope": "read admin:write", "sub": "u"}) == "r2"
    assert winner({"level": 3, "sub": "u"}) == "r3"
    assert winner({"beta": True, "sub": "u"}) == "r4"
    assert winner({"https://example.com/team": "red", "sub": "u"}) == "r5"
    assert winner({}) == "r6"
    assert winner({"sub": "u", "tenant": "t1"}) is None


# ----------------------------------------------------------- gRPC, content type


def test_grpc_matchers(route: Router) -> None:
    table = _table(
        {"grpc": {"service": "pkg.Users", "method": "Get"}},
        {"grpc": {"service": "pkg.Users"}},
        {"grpc": {}},
        {"content_type": "application/json"},
    )
    grpc = [("content-type", "application/grpc+proto")]
    assert _winner(route(table, _req("/pkg.Users/Get", "POST", headers=grpc))) == "r0"
    assert _winner(route(table, _req("/pkg.Users/List", "POST", headers=grpc))) == "r1"
    assert _winner(route(table, _req("/pkg.Other/List", "POST", headers=grpc))) == "r2"
    json_ct = [("Content-Type", "Application/JSON; charset=utf-8")]
    assert _winner(route(table, _req("/pkg.Users/Get", "POST", headers=json_ct))) == "r3"
    assert _winner(route(table, _req("/pkg.Users/Get", "POST"))) is None


# ----------------------------------------------------------------- GraphQL


def _gql(query: str, name: str | None = None) -> bytes:
    return json.dumps({"query": query, "operationName": name}).encode()


def test_graphql_routing_asks_for_the_body(route: Router) -> None:
    table = _table(
        {"graphql": {"operation_type": "mutation"}},
        {"graphql": {"operation_type": "query", "operation_name": "Me"}},
        {"prefix": "/"},
    )
    headers = [("content-type", "application/json")]
    pending = route(table, _req("/graphql", "POST", headers=headers))
    assert isinstance(pending, NeedBody)
    assert _winner(pending.with_body(_gql("mutation { x }"))) == "r0"
    assert _winner(pending.with_body(_gql("query Me { me }"))) == "r1"
    assert _winner(pending.with_body(_gql("query A { a } mutation B { b }", "B"))) == "r0"
    assert _winner(pending.with_body(_gql("query A { a } mutation B { b }"))) == "r2"
    assert _winner(pending.with_body(b"not json")) == "r2"
    assert _winner(pending.with_body(_gql("query {"))) == "r2"
    get = _req("/graphql?query=query%20Me%20%7B%20me%20%7D")
    assert _winner(route(table, get)) == "r1"  # GET needs no body


# ------------------------------------------------------------ virtual hosts


def _vhosts() -> dict[str, Any]:
    def vh(name: str, *domains: str) -> dict[str, Any]:
        return {
            "name": name,
            "domains": list(domains),
            "routes": [{"name": name, "match": {}, "direct_response": {"status": 200}}],
        }

    return {
        "virtual_hosts": [
            vh("catchall", "*"),
            vh("prefix", "api.*"),
            vh("short-suffix", "*.com"),
            vh("suffix", "*.example.com"),
            vh("exact", "api.example.com"),
        ]
    }


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.example.com", "exact"),
        ("API.Example.COM:8443", "exact"),
        ("www.example.com", "suffix"),
        ("example.com", "short-suffix"),
        ("api.example.org", "prefix"),
        ("api.", "catchall"),  # a wildcard never matches an empty string
        ("other.org", "catchall"),
        ("[::1]:8080", "catchall"),
    ],
)
def test_virtual_host_choice_by_domain_specificity(route: Router, host: str, expected: str) -> None:
    assert _winner(route(_vhosts(), _req(host=host))) == expected


def test_host_header_used_when_no_authority_given(route: Router) -> None:
    assert _winner(route(_vhosts(), _req(headers=[("Host", "api.example.com:80")]))) == "exact"


def test_no_virtual_host_is_no_route(route: Router) -> None:
    raw = {"virtual_hosts": [{"name": "only", "domains": ["a.test"], "routes": []}]}
    decision = route(raw, _req(host="b.test"))
    assert decision == NoRoute(None)


# ------------------------------------------------------------------ explain


def test_explain_names_the_first_failed_condition_of_each_route() -> None:
    raw = _table(
        {"prefix": "/admin"},
        {"headers": [{"name": "x-api-version", "exact_match": "v2"}]},
        {"prefix": "/"},
        {"prefix": "/never"},
    )
    text = str(RouteTable(load_config(raw)).explain(_req("/x", headers=[("x-api-version", "v1")])))
    assert "routes[0] 'r0': no: prefix '/admin' [routes[0].match.prefix]: path '/x'" in text
    assert "header x-api-version exact 'v2'" in text and "has 'v1'" in text
    assert "routes[2] 'r2': MATCHED" in text
    assert "routes[3] 'r3': not reached" in text


def test_weighted_cluster_pick_follows_the_draw() -> None:
    raw = {
        "clusters": {"a": {"endpoints": ["127.0.0.1:1"]}, "b": {"endpoints": ["127.0.0.1:2"]}},
        "routes": [
            {
                "match": {"prefix": "/"},
                "route": {
                    "weighted_clusters": {
                        "clusters": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}]
                    }
                },
            }
        ],
    }
    decision = RouteTable(load_config(raw)).match(_req())
    assert isinstance(decision, Matched)
    action = decision.route.action
    assert [action.pick_cluster(d) for d in (0.0, 0.5, 0.89, 0.9, 0.999)] == [  # type: ignore[union-attr]
        "a",
        "a",
        "a",
        "b",
        "b",
    ]
