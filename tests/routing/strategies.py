"""Generated route tables and requests that collide on purpose, and the differential
properties checked on them.

Shared by ``tests/routing/test_differential.py`` (short runs) and
``fuzz/fuzz_router.py`` (long runs). Every choice goes through a :class:`Chooser`,
so the same generators serve two masters:

* :class:`DrawChooser` draws from hypothesis (examples shrink: to the first option of
  a pool, to the low end of a range, to "feature absent");
* :class:`RandomChooser` uses a seeded ``random.Random``, for tables too big for
  hypothesis' choice budget (the ~300-route tables of ``large_scenarios``).

Pools are small so that routes collide: overlapping prefixes, segments from
{a, b, ab, A}, a handful of templates and RE2 regexes, a few header, query and claim
names and values. Requests are drawn from the table's own literals.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

from hypothesis import strategies as st

from gwcore.config import load_config
from gwcore.config import model as m
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

T = TypeVar("T")

# ------------------------------------------------------------------ choosers


class Chooser(Protocol):
    def pick(self, options: Sequence[T]) -> T: ...

    def number(self, low: int, high: int) -> int: ...

    def chance(self, percent: int) -> bool: ...


class DrawChooser:
    """Choices drawn by hypothesis; they shrink to the first option, ``low``, False."""

    def __init__(self, draw: st.DrawFn) -> None:
        self._draw = draw

    def pick(self, options: Sequence[T]) -> T:
        return self._draw(st.sampled_from(tuple(options)))

    def number(self, low: int, high: int) -> int:
        return self._draw(st.integers(low, high))

    def chance(self, percent: int) -> bool:
        return self._draw(st.integers(0, 99)) >= 100 - percent


class RandomChooser:
    """Choices from a seeded ``random.Random`` (no shrinking, no size limit)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, options: Sequence[T]) -> T:
        return options[self._rng.randrange(len(options))]

    def number(self, low: int, high: int) -> int:
        return self._rng.randint(low, high)

    def chance(self, percent: int) -> bool:
        return self._rng.randrange(100) < percent


def repeat(c: Chooser, low: int, high: int, percent: int = 50) -> Iterator[int]:
    """Indexes 0, 1, ...: at least ``low``, at most ``high``, each further one with
    ``percent`` chance. One flag per element (as ``st.lists`` draws them), so that
    hypothesis shrinks a list by deleting elements without disturbing what follows."""
    index = 0
    while index < high and (index < low or c.chance(percent)):
        yield index
        index += 1


# --------------------------------------------------------------------- pools

SEGMENTS = ("a", "b", "ab", "A")
# Path literals of the config: overlapping prefixes, a gRPC-looking path, a
# non-ASCII letter whose lower case is longer than itself.
CONFIG_PATHS = (
    "/",
    "/a",
    "/ab",
    "/a/b",
    "/A",
    "/b",
    "/a/",
    "/ab/a",
    "/a/b/ab",
    "/a.txt",
    "/pkg.Svc",
    "/pkg.Svc/Get",
    "/İ",
    "",
)
PATH_REGEXES = (
    "/a.*",
    "/(a|b)+",
    "(?i)/a/b",
    "/[ab]*",
    "/a/[^/]+",
    ".*b",
    "/ab?",
    "/a/b/?",
    "/[a-z]+/.*",
    r"/pkg\.Svc/.*",
    "/a|/b",
    r"/\p{Lu}.*",
)
TEMPLATES = (
    "/a/{x}",
    "/a/*",
    "/*/b",
    "/a/**",
    "/{x=**}",
    "/a/{v=b/*}",
    "/a/*.txt",
    "/**",
    "/",
    "/a/b",
    "/*",
    "/a/{x}/*",
    "/ab/{x=**}",
    "/*/*.txt",
    "/a/",
    "/{x}/{y}",
    "/A/**",
    "/a/{v=*}.txt",
    "/**.txt",
    "/pkg.Svc/{m}",
)
PATH_KINDS = ("prefix", "prefix", "path", "path_separated_prefix", "safe_regex", "path_template")
METHODS = ("GET", "POST", "PUT", "HEAD", "PURGE")
HEADER_NAMES = ("x-a", "X-A", "x-b", "x-c", "content-type", ":method", ":authority", ":scheme")
HEADER_VALUES = ("a", "1", "A", "ab", "Ab", "aB", "2", "10", "-3", "+7", " 5", "", "a,b")
HEADER_REGEXES = ("a.*", "[0-9]+", "(?i)ab", "", "-?[0-9]")
STRING_KINDS = ("exact", "prefix", "suffix", "contains")
HEADER_KINDS = (
    "exact_match",
    "exact_match",
    "string_match",
    "prefix_match",
    "suffix_match",
    "contains_match",
    "safe_regex_match",
    "present_match",
    "range_match",
)
QUERY_NAMES = ("q", "p", "Q", "operationName")
QUERY_VALUES = ("1", "a", "A", "ab", "", "M")
CLAIM_NAMES = ("tenant.id", "scope", "sub", "roles", "n", "flag", "tenant", "scp", "tenant.tier")
CLAIM_VALUES = ("t1", "adm", "read", "5", "true", "false", "T1", "a", "-1")
CLAIM_KINDS = (
    "exact_match",
    "exact_match",
    "string_match",
    "prefix_match",
    "suffix_match",
    "contains_match",
    "safe_regex_match",
    "present_match",
)
CLAIM_REGEXES = ("t.*", "[0-9]+", "(?i)adm", "true")
GRPC_MATCHERS: tuple[Any, ...] = (
    None,
    {},
    {"service": "pkg.Svc"},
    {"service": "pkg.Svc", "method": "Get"},
    {"service": "a"},
    {"service": "a", "method": "b"},
)
CONTENT_TYPES = (
    "application/json",
    "application/grpc",
    "application/graphql",
    "text/plain",
    "application/grpc+proto",
    "Application/JSON",
)
GRAPHQL_MATCHERS: tuple[Any, ...] = (
    None,
    {"operation_type": "mutation"},
    {"operation_name": "M"},
    {"operation_type": "query"},
    {"operation_type": "mutation", "operation_name": "M"},
    {"operation_name": {"prefix": "m", "ignore_case": True}},
)
DOMAINS = (
    "api.example.com",
    "*.example.com",
    "*.com",
    "api.*",
    "api.example.*",
    "*",
    "example.com",
    "localhost",
    "*-api.example.com",
    "Api.Example.ORG",
    "[::1]",
    "*.api.example.com",
)

# Request-side pools.
REQUEST_SEGMENTS = (*SEGMENTS, "", "AB", "x.txt", "a.txt", "pkg.Svc", "Get", "%61", "a b", "İ", "K")
PATH_TAILS = ("", "", "/", "/a", "b", "/ab/b", ".txt", "/x.txt", "/Get")
WILDCARD_FILL = ("x", "api", "a.b", "", "-api", "x-api")
EXTRA_HOSTS = ("other.org", "", "API.EXAMPLE.COM:443", "[::1]:80", "example.com.", "x.example.com")
PORTS = (":8080", ":", ":80")
REQUEST_METHODS = ("GET", "POST", "HEAD", "PUT", "DELETE", "get")
REQUEST_CONTENT_TYPES = (
    "application/json",
    "application/grpc",
    "application/grpc+proto",
    "application/graphql",
    "text/plain",
    "Application/JSON; charset=utf-8",
    "application/grpc-web",
    "application/vnd.x+json",
)
QUERY_EXTRAS = (
    "%71=1",
    "q=%41",
    "q=a+b",
    "q",
    "query=mutation%20M%20%7B%20x%20%7D",
    "query=%7B%20x%20%7D",
    "operationName=M",
)
GRAPHQL_DOCUMENTS: tuple[tuple[str, str | None], ...] = (
    ("mutation M { x }", "M"),
    ("query Q { x }", None),
    ("mutation M { x } query Q { y }", "Q"),
    ("mutation M { x } query Q { y }", None),
    ("{ x }", None),
    ("mutation m { x }", "m"),
    ("mutation M { x }", "N"),
    ("mutation {", None),
)
SCALAR_CLAIMS: tuple[Any, ...] = (5, 0, -1, True, False, 1.5)


def _json_body(document: str, name: str | None) -> bytes:
    payload: dict[str, Any] = {"query": document}
    if name is not None:
        payload["operationName"] = name
    return json.dumps(payload).encode()


BODIES: tuple[bytes, ...] = (
    b"",
    *(_json_body(doc, name) for doc, name in GRAPHQL_DOCUMENTS),
    b"mutation M { x }",
    b"not json",
    b'{"query": 5}',
    b"\xff",
)


# ------------------------------------------------------------------- tables


class _Ordered(Generic[T]):
    """An insertion-ordered set of literals (so drawn requests replay identically)."""

    def __init__(self) -> None:
        self._items: dict[T, None] = {}

    def add(self, item: T) -> None:
        self._items[item] = None

    def with_pool(self, pool: Iterable[T]) -> tuple[T, ...]:
        return tuple(dict.fromkeys([*self._items, *pool]))


class Literals:
    """The strings a table mentions, so that requests can hit them."""

    def __init__(self) -> None:
        self.paths: _Ordered[str] = _Ordered()
        self.header_names: _Ordered[str] = _Ordered()
        self.header_values: _Ordered[str] = _Ordered()
        self.query_names: _Ordered[str] = _Ordered()
        self.query_values: _Ordered[str] = _Ordered()
        self.claim_paths: _Ordered[tuple[str, ...]] = _Ordered()
        self.claim_values: _Ordered[str] = _Ordered()
        self.domains: _Ordered[str] = _Ordered()
        self.methods: _Ordered[str] = _Ordered()


@dataclass(eq=False)
class GeneratedTable:
    """A generated config: the raw dict (repr'd, to reproduce), its model and literals."""

    raw: dict[str, Any]
    config: m.GatewayConfig
    literals: Literals
    style: _Style

    @cached_property
    def table(self) -> RouteTable:
        return RouteTable(self.config)

    def __repr__(self) -> str:
        return f"load_config({self.raw!r})"


def _random_case(c: Chooser, text: str, percent: int = 40) -> str:
    return "".join(ch.swapcase() if c.chance(percent) else ch for ch in text)


@dataclass(frozen=True)
class _Style:
    """Per-table narrowing of the pools and frequencies. Dense tables pile many routes
    onto one path value, header name or claim with exact values, which is what makes
    the compiler split buckets (by method, exact header value, exact claim value)."""

    hot_paths: tuple[str, ...] = ()
    hot_kind: str = "prefix"
    hot_templates: tuple[str, ...] = ()
    hot_percent: int = 0
    no_path_percent: int = 12
    header_names: tuple[str, ...] = HEADER_NAMES
    claim_names: tuple[str, ...] = CLAIM_NAMES
    exact_percent: int = 0  # header/claim matchers forced to exact values
    header_values: tuple[str, ...] = HEADER_VALUES
    claim_values: tuple[str, ...] = CLAIM_VALUES
    methods_percent: int = 25
    headers_percent: int = 35
    claims_percent: int = 20
    grpc_percent: int = 10


def _style(c: Chooser) -> _Style:
    if not c.chance(60):
        return _Style()
    return _Style(
        hot_paths=tuple(c.pick(CONFIG_PATHS) for _ in repeat(c, 1, 3)),
        hot_kind=c.pick(("prefix", "path_template", "path", "path_separated_prefix")),
        hot_templates=tuple(c.pick(TEMPLATES) for _ in repeat(c, 1, 2)),
        hot_percent=c.pick((50, 90)),
        no_path_percent=c.pick((12, 40)),
        header_names=tuple(c.pick(HEADER_NAMES) for _ in repeat(c, 1, 2)),
        claim_names=tuple(c.pick(CLAIM_NAMES) for _ in repeat(c, 1, 2)),
        exact_percent=c.pick((0, 60, 90)),
        header_values=tuple(c.pick(HEADER_VALUES) for _ in repeat(c, 1, 3)),
        claim_values=tuple(c.pick(CLAIM_VALUES) for _ in repeat(c, 1, 3)),
        methods_percent=c.pick((25, 5, 60)),
        headers_percent=c.pick((35, 70)),
        claims_percent=c.pick((20, 60)),
        grpc_percent=c.pick((10, 30)),
    )


def _config_path(c: Chooser, style: _Style, hot: bool) -> str:
    if hot:
        return c.pick(style.hot_paths)
    if c.chance(60):
        return c.pick(CONFIG_PATHS)
    return "/" + "/".join(c.pick(SEGMENTS) for _ in repeat(c, 0, 3))


def _path_matcher(
    c: Chooser, lit: Literals, style: _Style, match: dict[str, Any], kinds: Sequence[str]
) -> None:
    if c.chance(style.no_path_percent):  # no path condition (maybe a case_sensitive flag)
        if c.chance(10):
            match["case_sensitive"] = False
        return
    hot = style.hot_paths and c.chance(style.hot_percent)
    kind = style.hot_kind if hot else c.pick(kinds)
    if kind == "safe_regex":
        regex = c.pick(PATH_REGEXES)
        match[kind] = {"regex": regex} if c.chance(50) else regex
        return
    if kind == "path_template":
        match[kind] = c.pick(style.hot_templates if hot else TEMPLATES)
        return
    value = _config_path(c, style, bool(hot))
    if kind == "path" and not value:
        value = "/"
    if kind == "path_separated_prefix":
        value = value.rstrip("/")
        if not value.startswith("/"):
            value = "/a"
    lit.paths.add(value)
    if c.chance(25):
        match["case_sensitive"] = False
        value = _random_case(c, value)
    elif c.chance(5):
        match["case_sensitive"] = True
    match[kind] = value


def _value_for(c: Chooser, lit: Literals, style: _Style, name: str) -> str:
    lowered = name.lower()
    if lowered == ":method":
        value = c.pick(METHODS)
    elif lowered == ":authority":
        value = c.pick(("api.example.com", "x.example.com", "API.example.com:8080"))
    elif lowered == ":scheme":
        value = c.pick(("http", "https"))
    elif lowered == "content-type":
        value = c.pick(REQUEST_CONTENT_TYPES)
    else:
        value = c.pick(style.header_values)
    lit.header_values.add(value)
    return value


def _string_match(
    c: Chooser, value: str, regexes: Sequence[str], exact: bool = False
) -> dict[str, Any]:
    if not exact and c.chance(15):
        regex = c.pick(regexes)
        return {"safe_regex": {"regex": regex} if c.chance(50) else regex}
    out: dict[str, Any] = {"exact" if exact else c.pick(STRING_KINDS): value}
    if c.chance(60 if exact else 40):
        out["ignore_case"] = c.chance(80)
    return out


def _header_matcher(c: Chooser, lit: Literals, style: _Style) -> dict[str, Any]:
    name = c.pick(style.header_names)
    if not name.startswith(":"):
        lit.header_names.add(name.lower())
    header: dict[str, Any] = {"name": name}
    exact = c.chance(style.exact_percent)
    kind = c.pick(("exact_match", "string_match") if exact else HEADER_KINDS)
    if kind == "present_match":
        header[kind] = c.chance(60)
    elif kind == "range_match":
        start = c.number(-3, 10)
        header[kind] = {"start": start, "end": start + c.number(1, 8)}
    elif kind == "safe_regex_match":
        regex = c.pick(HEADER_REGEXES)
        header[kind] = {"regex": regex} if c.chance(50) else regex
    elif kind == "string_match":
        header[kind] = _string_match(c, _value_for(c, lit, style, name), HEADER_REGEXES, exact)
    else:
        header[kind] = _value_for(c, lit, style, name)
    if c.chance(5 if exact else 20):
        header["invert_match"] = c.chance(80)
    return header


def _query_matcher(c: Chooser, lit: Literals) -> dict[str, Any]:
    name = c.pick(QUERY_NAMES)
    lit.query_names.add(name)
    if c.chance(30):
        return {"name": name, "present_match": c.chance(60)}
    value = c.pick(QUERY_VALUES)
    lit.query_values.add(value)
    return {"name": name, "string_match": _string_match(c, value, ("a.*", "[0-9]", "(?i)a"))}


def _claim_matcher(c: Chooser, lit: Literals, style: _Style) -> dict[str, Any]:
    name = c.pick(style.claim_names)
    lit.claim_paths.add(tuple(name.split(".")))
    claim: dict[str, Any] = {"path": name.split(".")} if c.chance(20) else {"name": name}
    exact = c.chance(style.exact_percent)
    kind = c.pick(("exact_match", "string_match") if exact else CLAIM_KINDS)
    value = c.pick(style.claim_values)
    lit.claim_values.add(value)
    if kind == "present_match":
        claim[kind] = c.chance(60)
    elif kind == "safe_regex_match":
        claim[kind] = c.pick(CLAIM_REGEXES)
    elif kind == "string_match":
        claim[kind] = _string_match(c, value, CLAIM_REGEXES, exact)
    else:
        claim[kind] = value
    if c.chance(5 if exact else 15):
        claim["invert_match"] = c.chance(80)
    return claim


def route_match(c: Chooser, lit: Literals, style: _Style, kinds: Sequence[str]) -> dict[str, Any]:
    """One route's ``match:`` mapping; records its literals in ``lit``."""
    match: dict[str, Any] = {}
    _path_matcher(c, lit, style, match, kinds)
    if c.chance(style.methods_percent):
        methods = [c.pick(METHODS) for _ in repeat(c, 1, 3)]
        for method in methods:
            lit.methods.add(method)
        match["methods"] = methods
    if c.chance(style.headers_percent):
        match["headers"] = [_header_matcher(c, lit, style) for _ in repeat(c, 1, 3)]
    if c.chance(20):
        match["query_parameters"] = [_query_matcher(c, lit) for _ in repeat(c, 1, 2)]
    if c.chance(style.claims_percent):
        match["jwt_claim"] = [_claim_matcher(c, lit, style) for _ in repeat(c, 1, 2)]
    if c.chance(style.grpc_percent):
        grpc = c.pick(GRPC_MATCHERS)
        if grpc and "service" in grpc:
            lit.paths.add(f"/{grpc['service']}/{grpc.get('method', 'Get')}")
            if c.chance(60):  # the service alone decides the path (indexed by it)
                for key in (*PATH_KINDS, "case_sensitive"):
                    match.pop(key, None)
        match["grpc"] = grpc
    if c.chance(10):
        types = [c.pick(CONTENT_TYPES) for _ in repeat(c, 1, 2)]
        match["content_type"] = types[0] if len(types) == 1 and c.chance(50) else types
    if c.chance(10):
        match["graphql"] = c.pick(GRAPHQL_MATCHERS)
    return match


def _route(
    c: Chooser, lit: Literals, style: _Style, name: str, kinds: Sequence[str]
) -> dict[str, Any]:
    match = route_match(c, lit, style, kinds)
    return {"name": name, "match": match, "direct_response": {"status": 200}}


def generate_table(
    c: Chooser,
    min_routes: int = 1,
    max_routes: int = 30,
    max_vhosts: int = 4,
    kinds: Sequence[str] = PATH_KINDS,
    density: Sequence[int] = (85, 93, 97),
) -> GeneratedTable:
    """A valid config of ``min_routes``..``max_routes`` routes (top level or in virtual hosts)."""
    lit = Literals()
    style = _style(c)
    more = c.pick(density)  # chance of one more route: table sizes vary widely
    raw: dict[str, Any]
    if c.chance(30):
        routes = [
            _route(c, lit, style, f"r{i}", kinds) for i in repeat(c, min_routes, max_routes, more)
        ]
        raw = {"routes": routes}
    else:
        vhost_count = c.number(1, max_vhosts)
        available = list(DOMAINS)
        vhosts = []
        for v in range(vhost_count):
            domains = [available.pop(c.number(0, len(available) - 1)) for _ in repeat(c, 1, 3)]
            for domain in domains:
                lit.domains.add(domain)
            low = min_routes // vhost_count + (v < min_routes % vhost_count)
            high = max(low, max_routes // vhost_count)
            routes = [_route(c, lit, style, f"v{v}r{i}", kinds) for i in repeat(c, low, high, more)]
            vhosts.append({"name": f"vh{v}", "domains": domains, "routes": routes})
        raw = {"virtual_hosts": vhosts}
    return GeneratedTable(raw, load_config(raw), lit, style)


# ----------------------------------------------------------------- requests


@dataclass(frozen=True)
class Probe:
    """A complete request (claims and body given) and which of the two are known up front."""

    request: RouteRequest
    claims_known: bool = True
    body_known: bool = True

    @property
    def partial(self) -> RouteRequest:
        """The request as the router first sees it (unknown claims/body as ``None``)."""
        return replace(
            self.request,
            claims=self.request.claims if self.claims_known else None,
            body=self.request.body if self.body_known else None,
        )


def _request_path(c: Chooser, lit: Literals) -> str:
    if c.chance(40):
        paths = lit.paths.with_pool(()) if c.chance(60) else ()
        path = c.pick(paths or lit.paths.with_pool(CONFIG_PATHS)) + c.pick(PATH_TAILS)
    elif c.chance(4):  # not origin-form
        path = c.pick(("*", "", "a/b", "http://api.example.com/a"))
    else:
        path = "/" + "/".join(c.pick(REQUEST_SEGMENTS) for _ in repeat(c, 0, 4))
    if c.chance(20):
        path = _random_case(c, path, 30)
    if c.chance(35):
        names = lit.query_names.with_pool(QUERY_NAMES)
        values = lit.query_values.with_pool(QUERY_VALUES)
        parts = [
            c.pick(QUERY_EXTRAS) if c.chance(20) else f"{c.pick(names)}={c.pick(values)}"
            for _ in repeat(c, 1, 3)
        ]
        path += "?" + "&".join(parts)
    if c.chance(5):
        path += c.pick(("#f", "#?q=1", "#/a"))
    return path


def _request_host(c: Chooser, lit: Literals) -> str:
    pool = lit.domains.with_pool(()) if c.chance(75) else ()
    host = c.pick(pool or lit.domains.with_pool(EXTRA_HOSTS))
    if "*" in host:
        host = host.replace("*", c.pick(WILDCARD_FILL))
    if c.chance(30):
        host = _random_case(c, host)
    if c.chance(25) and not host.endswith("]"):
        host += c.pick(PORTS)
    return host


def _claim_value(c: Chooser, lit: Literals) -> Any:
    values = lit.claim_values.with_pool(CLAIM_VALUES)
    kind = c.number(0, 6)
    if kind == 0:
        return _random_case(c, c.pick(values), 50) if c.chance(30) else c.pick(values)
    if kind == 1:
        return c.pick(SCALAR_CLAIMS)
    if kind == 2:  # array of scalars (and the odd non-scalar)
        items: list[Any] = []
        for _ in repeat(c, 0, 3):
            items.append(c.pick(values) if c.chance(70) else c.pick((*SCALAR_CLAIMS, None, {})))
        return items
    if kind == 3:  # space-delimited (a scope list, or just a string with spaces)
        return " ".join(c.pick(values) for _ in repeat(c, 0, 3))
    if kind == 4:
        return {"id": c.pick(values)} if c.chance(50) else {}
    if kind == 5:
        return None
    return c.pick(values)


def _claims(c: Chooser, lit: Literals) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if c.chance(15):
        return claims
    for path in lit.claim_paths.with_pool((("sub",), ("tenant", "id"))):
        if c.chance(60):
            _set_claim(claims, path, _claim_value(c, lit))
    return claims


def _headers(c: Chooser, lit: Literals, host_header: str | None) -> list[tuple[str, str]]:
    names = [n for n in lit.header_names.with_pool(("x-a", "x-b", "x-c")) if n != "content-type"]
    values = lit.header_values.with_pool(HEADER_VALUES)
    headers = []
    for _ in repeat(c, 0, 4):
        name = c.pick(names)
        if c.chance(30):
            name = _random_case(c, name, 50)
        value = c.pick(values)
        if c.chance(20):
            value = _random_case(c, value, 50)
        headers.append((name, value))
    if c.chance(55):
        content_type = c.pick(REQUEST_CONTENT_TYPES)
        headers.insert(
            c.number(0, len(headers)), (c.pick(("content-type", "Content-Type")), content_type)
        )
        if c.chance(10):
            headers.append(("content-type", c.pick(REQUEST_CONTENT_TYPES)))
    if host_header is not None:
        headers.insert(c.number(0, len(headers)), (c.pick(("host", "Host")), host_header))
    return headers


def _random_probe(c: Chooser, lit: Literals) -> Probe:
    """A request assembled from the table's literals (and a few others)."""
    method = c.pick(lit.methods.with_pool(REQUEST_METHODS))
    path = _request_path(c, lit)
    host = _request_host(c, lit)
    in_header = c.chance(20)
    headers = _headers(c, lit, host if in_header else None)
    request = RouteRequest(
        method,
        path,
        host="" if in_header else host,
        headers=tuple(headers),
        claims=_claims(c, lit),
        body=c.pick(BODIES),
        scheme=c.pick(("http", "https")),
    )
    return Probe(request, claims_known=c.chance(50), body_known=c.chance(50))


# Candidate texts for conditions a request cannot be built for directly (regexes).
REGEX_SAMPLES = (*HEADER_VALUES, *CLAIM_VALUES, "12", "aX", "abab", "x")


def _satisfying(c: Chooser, matcher: m.StringMatcher | None, pool: Sequence[str]) -> str:
    """A text that (most likely) satisfies ``matcher``."""
    if matcher is None:
        return c.pick(pool)
    if matcher.kind == "regex":
        fits = [v for v in (*pool, *REGEX_SAMPLES) if matcher.compiled.fullmatch(v)]
        return c.pick(fits or pool)
    value = matcher.value
    if matcher.kind == "prefix":
        value += c.pick(("", "x", "1"))
    elif matcher.kind == "suffix":
        value = c.pick(("", "x")) + value
    elif matcher.kind == "contains":
        value = c.pick(("", "x")) + value + c.pick(("", "1"))
    if matcher.ignore_case and c.chance(60):
        value = _random_case(c, value, 50)
    return value


def _template_path(c: Chooser, segments: Sequence[m.TemplateSegment]) -> str:
    parts = []
    for seg in segments:
        if seg.kind == "literal":
            text = seg.text
        elif seg.kind == "any":
            text = c.pick(("a", "b", "x", "A", "a.b"))
        else:
            text = c.pick(("", "a", "a/b", "x.txt", "b/"))
        parts.append(text + seg.suffix)
    return "/" + "/".join(parts)


def _path_for(c: Chooser, route: m.Route, lit: Literals) -> str:
    path = route.match.path
    grpc = route.match.grpc
    if path.kind == "any":
        if grpc is not None and grpc.service is not None:
            return f"/{grpc.service}/{grpc.method or c.pick(('Get', 'x'))}"
        return _request_path(c, lit)
    if path.kind == "template":
        return _template_path(c, path.template)
    if path.kind == "safe_regex":
        candidates = [_request_path(c, lit).partition("?")[0] for _ in range(6)]
        fits = [p for p in candidates if path.compiled.fullmatch(p)]
        return c.pick(fits or candidates)
    value = path.value
    if path.kind == "prefix":
        value += c.pick(PATH_TAILS)
    elif path.kind == "path_separated_prefix":
        value += c.pick(("", "/", "/a", "/ab/b"))
    if not path.case_sensitive and c.chance(60):
        value = _random_case(c, value, 50)
    return value or "/"


def _set_claim(claims: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set a nested claim (not when a parent on the way is already a non-object)."""
    node = claims
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return
        node = child
    node[path[-1]] = value


def _graphql_request(
    c: Chooser, matcher: m.GraphqlMatcher, method: str
) -> tuple[str, bytes | None, str]:
    """(query string addition, body, content type) carrying a matching operation."""
    op_type = matcher.operation_type or c.pick(("query", "mutation"))
    name = _satisfying(c, matcher.operation_name, ("M", "Q")) if matcher.operation_name else "M"
    document = f"{op_type} {name} {{ x }}"
    if method in ("GET", "HEAD"):
        return f"query={quote(document)}&operationName={quote(name)}", None, ""
    if c.chance(20):
        return "", document.encode(), "application/graphql"
    return "", _json_body(document, name if c.chance(70) else None), "application/json"


def _targeted_probe(c: Chooser, table: GeneratedTable) -> Probe:
    """A request built to satisfy one route's conditions (what the scan would then pick
    is up to the routes before it), sometimes with one condition perturbed."""
    lit = table.literals
    vhost = c.pick(table.config.virtual_hosts)
    if not vhost.routes:
        return _random_probe(c, lit)
    route = c.pick(vhost.routes)
    match = route.match
    method = c.pick(sorted(match.methods)) if match.methods else c.pick(REQUEST_METHODS)
    path = _path_for(c, route, lit)
    query: list[str] = []
    for qm in match.query_parameters:
        if qm.present is False:
            continue
        query.append(f"{quote(qm.name)}={quote(_satisfying(c, qm.string, QUERY_VALUES))}")
    headers: list[tuple[str, str]] = []
    for hm in match.headers:
        if hm.name.startswith(":"):
            continue
        if hm.present is not None and hm.present == hm.invert_match:
            continue
        if hm.range is not None:
            value = str(c.number(hm.range[0], min(hm.range[1] - 1, hm.range[0] + 20)))
        else:
            value = _satisfying(c, hm.string, HEADER_VALUES)
        if hm.invert_match:
            value = c.pick(HEADER_VALUES)
        headers.append((_random_case(c, hm.name, 30) if c.chance(30) else hm.name, value))
    claims: dict[str, Any] = {}
    for cm in match.jwt_claims:
        if cm.present is not None and cm.present == cm.invert_match:
            continue
        text = _satisfying(c, cm.string, CLAIM_VALUES)
        if cm.invert_match:
            text = c.pick(CLAIM_VALUES)
        claim: Any = text
        if c.chance(25):
            claim = [c.pick(CLAIM_VALUES), text]
        elif cm.path[-1] in ("scope", "scp") and c.chance(50):
            claim = f"{c.pick(CLAIM_VALUES)} {text}"
        _set_claim(claims, cm.path, claim)
    content_type = ""
    body: bytes = c.pick(BODIES)
    if match.graphql is not None:
        extra, graphql_body, content_type = _graphql_request(c, match.graphql, method)
        if extra:
            query.append(extra)
        if graphql_body is not None:
            body = graphql_body
    if match.content_type:
        content_type = c.pick(match.content_type)
    elif match.grpc is not None:
        content_type = c.pick(("application/grpc", "application/grpc+proto"))
    if content_type:
        if c.chance(20):
            content_type = _random_case(c, content_type, 30) + "; charset=utf-8"
        headers.insert(c.number(0, len(headers)), ("content-type", content_type))
    if query:
        path += "?" + "&".join(query)
    domain = c.pick(vhost.domains).replace("*", c.pick(WILDCARD_FILL))
    host = _random_case(c, domain, 30) if c.chance(30) else domain
    request = RouteRequest(
        method, path, host=host, headers=tuple(headers), claims=claims, body=body
    )
    if c.chance(30):  # a near miss: one part from a random request instead
        other = _random_probe(c, lit).request
        part = c.pick(("method", "path", "headers", "claims", "body", "host"))
        request = replace(request, **{part: getattr(other, part)})
    return Probe(request, claims_known=c.chance(50), body_known=c.chance(50))


def generate_probe(c: Chooser, table: GeneratedTable) -> Probe:
    """A request with its claims and body: aimed at one route, or at the table's literals."""
    if c.chance(50):
        return _targeted_probe(c, table)
    return _random_probe(c, table.literals)


def recase_header_names(c: Chooser, request: RouteRequest) -> RouteRequest:
    """The same request with each header name in a random case."""
    headers = tuple((_random_case(c, name, 50), value) for name, value in request.headers)
    return replace(request, headers=headers)


# ---------------------------------------------------------------- strategies


@dataclass(frozen=True, eq=False)
class Scenario:
    """A table and several requests to route through it."""

    table: GeneratedTable
    probes: tuple[Probe, ...]


@st.composite
def route_tables(draw: st.DrawFn, min_routes: int = 1, max_routes: int = 30) -> GeneratedTable:
    return generate_table(DrawChooser(draw), min_routes, max_routes)


@st.composite
def probes(draw: st.DrawFn, table: GeneratedTable) -> Probe:
    return generate_probe(DrawChooser(draw), table)


@st.composite
def scenarios(
    draw: st.DrawFn, min_routes: int = 1, max_routes: int = 30, max_probes: int = 8
) -> Scenario:
    c = DrawChooser(draw)
    table = generate_table(c, min_routes, max_routes)
    return Scenario(table, tuple(generate_probe(c, table) for _ in repeat(c, 1, max_probes, 75)))


@st.composite
def large_scenarios(draw: st.DrawFn, routes: int = 300, max_probes: int = 30) -> Scenario:
    """A ~``routes``-route table from a seeded RNG (too big to draw choice by choice),
    with regexes over-represented so that one virtual host spans several RE2 sets."""
    seed = draw(st.integers(0, 2**32 - 1))
    kinds = (*PATH_KINDS, "safe_regex", "path_template")
    table = generate_table(
        RandomChooser(random.Random(seed)), routes - 30, routes + 30, 2, kinds, density=(97,)
    )
    c = DrawChooser(draw)
    return Scenario(table, tuple(generate_probe(c, table) for _ in repeat(c, 1, max_probes, 75)))


@dataclass(frozen=True, eq=False)
class Extension:
    """A scenario plus one route to append to virtual host ``vhost`` (an index)."""

    scenario: Scenario
    vhost: int
    route: dict[str, Any]


@st.composite
def extensions(draw: st.DrawFn) -> Extension:
    scenario = draw(scenarios())
    c = DrawChooser(draw)
    vhost = c.number(0, len(scenario.table.config.virtual_hosts) - 1)
    table = scenario.table
    route = _route(c, table.literals, table.style, "appended", PATH_KINDS)
    return Extension(scenario, vhost, route)


@dataclass(frozen=True, eq=False)
class Recased:
    scenario: Scenario
    recased: tuple[RouteRequest, ...]


@st.composite
def recased_scenarios(draw: st.DrawFn) -> Recased:
    scenario = draw(scenarios())
    c = DrawChooser(draw)
    return Recased(scenario, tuple(recase_header_names(c, p.partial) for p in scenario.probes))


# ---------------------------------------------------------------- properties

Summary = tuple[str, str | None, int | None]


def summary(decision: Decision) -> Summary:
    """What must agree: the kind of decision, the virtual host's name, the route index."""
    if isinstance(decision, NoRoute):
        vhost = decision.virtual_host
        return ("NoRoute", vhost.name if vhost is not None else None, None)
    return (type(decision).__name__, decision.virtual_host.name, decision.index)


def _explain(table: GeneratedTable, request: RouteRequest) -> str:
    return f"\n{table!r}\n{request!r}\n{table.table.explain(request)}"


def check_matches_reference(table: GeneratedTable, request: RouteRequest) -> None:
    """The compiled tree answers as the reference scan."""
    got = summary(table.table.match(request))
    want = summary(reference_match(table.config, request))
    assert got == want, f"compiled {got} != reference {want}" + _explain(table, request)


def check_lazy_flow(table: GeneratedTable, probe: Probe) -> None:
    """With claims and/or body unknown, both ask for the same thing at the same route, and
    resuming (possibly twice) ends where the reference ends on the complete request."""
    request = probe.partial
    got: Decision = table.table.match(request)
    want: Decision = reference_match(table.config, request)
    steps: list[str] = []
    for _ in range(3):
        assert summary(got) == summary(want), (
            f"after {steps or 'no resume'}: compiled {summary(got)} != reference {summary(want)}"
            + _explain(table, request)
        )
        if isinstance(got, NeedClaims) and isinstance(want, NeedClaims):
            claims = probe.request.claims
            assert claims is not None
            got, want = got.with_claims(claims), want.with_claims(claims)
            steps.append("with_claims")
        elif isinstance(got, NeedBody) and isinstance(want, NeedBody):
            body = probe.request.body
            assert body is not None
            got, want = got.with_body(body), want.with_body(body)
            steps.append("with_body")
        else:
            break
    assert isinstance(got, Matched | NoRoute), f"still {got!r} after {steps}"
    final = summary(reference_match(table.config, probe.request))
    assert summary(got) == final, (
        f"after {steps}: compiled {summary(got)} != reference on the full request {final}"
        + _explain(table, probe.request)
    )


def check_append_keeps_earlier_winner(extension: Extension, request: RouteRequest) -> None:
    """Appending a route to a virtual host never changes the decision on earlier routes."""
    table = extension.scenario.table
    raw = json.loads(json.dumps(table.raw))
    if "routes" in raw:
        position, routes = 0, raw["routes"]
    else:
        position = extension.vhost
        routes = raw["virtual_hosts"][position]["routes"]
    routes.append(extension.route)
    config = load_config(raw)
    before = table.table.match(request)
    after = RouteTable(config).match(request)
    want = summary(reference_match(config, request))
    assert summary(after) == want, (
        f"compiled {summary(after)} != reference {want} after appending {extension.route!r}"
        + _explain(table, request)
    )
    vhost = config.virtual_hosts[position]
    if isinstance(before, NoRoute) and summary(before)[1] == vhost.name:
        # No route before, in the virtual host that grew: only the new route may win.
        assert isinstance(after, NoRoute) or after.index == len(vhost.routes) - 1, (
            f"no route before, {summary(after)} after appending" + _explain(table, request)
        )
        return
    assert summary(after) == summary(before), (
        f"{summary(before)} became {summary(after)} after appending {extension.route!r}"
        + _explain(table, request)
    )


def check_header_case_irrelevant(
    table: GeneratedTable, request: RouteRequest, recased: RouteRequest
) -> None:
    """Header names are case-insensitive: recasing them never changes the decision."""
    for route in (table.table.match, _bound_reference(table.config)):
        before, after = summary(route(request)), summary(route(recased))
        assert before == after, f"{before} != {after} with {recased.headers!r}" + _explain(
            table, request
        )


def _bound_reference(config: m.GatewayConfig) -> Callable[[RouteRequest], Decision]:
    return lambda request: reference_match(config, request)


def check_explain_agrees(table: GeneratedTable, request: RouteRequest) -> None:
    """``explain(request).decision`` is the decision ``match`` gives."""
    explained = summary(table.table.explain(request).decision)
    matched = summary(table.table.match(request))
    assert explained == matched, f"explain {explained} != match {matched}" + _explain(
        table, request
    )


# Properties by name, each with the strategy it runs on (the fuzz target runs these).
def run_reference(scenario: Scenario) -> None:
    for probe in scenario.probes:
        check_matches_reference(scenario.table, probe.request)


def run_lazy(scenario: Scenario) -> None:
    for probe in scenario.probes:
        check_lazy_flow(scenario.table, probe)


def run_append(extension: Extension) -> None:
    for probe in extension.scenario.probes:
        check_append_keeps_earlier_winner(extension, probe.partial)


def run_header_case(recased: Recased) -> None:
    for probe, request in zip(recased.scenario.probes, recased.recased, strict=True):
        check_header_case_irrelevant(recased.scenario.table, probe.partial, request)


def run_explain(scenario: Scenario) -> None:
    for probe in scenario.probes:
        check_explain_agrees(scenario.table, probe.partial)


def run_large(scenario: Scenario) -> None:
    run_reference(scenario)
    run_lazy(scenario)


PROPERTIES: Mapping[str, tuple[st.SearchStrategy[Any], Callable[[Any], None]]] = {
    "reference": (scenarios(), run_reference),
    "lazy": (scenarios(), run_lazy),
    "append": (extensions(), run_append),
    "header_case": (recased_scenarios(), run_header_case),
    "explain": (scenarios(), run_explain),
    "large": (large_scenarios(), run_large),
}
