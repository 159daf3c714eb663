"""Typed, immutable configuration objects.

Everything here is produced by :mod:`gwcore.config.loader` after validation, so
every value is already checked: names referenced by routes exist, regexes
compiled, durations converted to seconds. The objects are frozen, slotted
dataclasses and may be shared freely between threads or compiled route tables.

Field names follow Envoy's route configuration vocabulary where Envoy has one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

StringMatchKind = Literal["exact", "prefix", "suffix", "contains", "regex"]
PathMatchKind = Literal["any", "path", "prefix", "path_separated_prefix", "safe_regex", "template"]
LbPolicy = Literal["round_robin", "least_request", "random", "ring_hash"]
UpstreamProtocol = Literal["http1", "http2"]
ListenerProtocol = Literal["http1", "h2c"]
AppendAction = Literal["append_if_exists_or_add", "add_if_absent", "overwrite_if_exists_or_add"]


@dataclass(frozen=True, slots=True)
class StringMatcher:
    """Envoy's ``StringMatcher``: one comparison of a string value.

    ``regex`` matchers must match the *whole* value (RE2 full match). ``ignore_case``
    applies to every kind but ``regex`` (use ``(?i)`` inside the regex instead).
    ``compiled`` holds the RE2 object for ``regex`` matchers and is ``None`` otherwise.
    """

    kind: StringMatchKind
    value: str
    ignore_case: bool = False
    compiled: Any = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        text = f"{self.kind} {self.value!r}"
        return text + " (ignore case)" if self.ignore_case else text


@dataclass(frozen=True, slots=True)
class HeaderMatcher:
    """A condition on one request header (Envoy's ``HeaderMatcher``).

    Exactly one of ``string``, ``present`` and ``range`` is set. ``name`` is
    lower-case. A request header with several values matches when any one value
    matches; with ``invert_match`` it matches when no value matches. An absent
    header never satisfies a ``string`` or ``range`` matcher, inverted or not.
    ``present`` with ``invert_match`` means the opposite presence.
    ``range`` is Envoy's ``range_match``: an integer value in ``[start, end)``.
    """

    name: str
    string: StringMatcher | None = None
    present: bool | None = None
    range: tuple[int, int] | None = None
    invert_match: bool = False
    location: str = ""

    def describe(self) -> str:
        if self.present is not None:
            want = self.present != self.invert_match
            return f"header {self.name} {'present' if want else 'absent'}"
        if self.range is not None:
            cond = f"in [{self.range[0]}, {self.range[1]})"
        else:
            assert self.string is not None
            cond = self.string.describe()
        return f"header {self.name} {'not ' if self.invert_match else ''}{cond}"


@dataclass(frozen=True, slots=True)
class QueryParameterMatcher:
    """A condition on one query parameter (Envoy's ``QueryParameterMatcher``).

    Parameter names are compared exactly (case-sensitive) after percent-decoding.
    Exactly one of ``string`` and ``present`` is set; with several values of the
    parameter, any one matching is enough. ``present: false`` means the parameter
    must be absent.
    """

    name: str
    string: StringMatcher | None = None
    present: bool | None = None
    location: str = ""

    def describe(self) -> str:
        if self.present is not None:
            return f"query parameter {self.name} {'present' if self.present else 'absent'}"
        assert self.string is not None
        return f"query parameter {self.name} {self.string.describe()}"


@dataclass(frozen=True, slots=True)
class ClaimMatcher:
    """A condition on one *verified* JWT claim.

    ``path`` walks nested objects (``tenant.id`` is ``("tenant", "id")``). A string,
    integer or boolean claim is compared as text (booleans as ``true``/``false``);
    an array claim matches when any scalar element matches; the ``scope`` and ``scp``
    claims, when strings, are space-delimited lists (RFC 8693), so each scope counts
    as an element. Exactly one of ``string`` and ``present`` is set; semantics of
    ``invert_match`` and absence are as for :class:`HeaderMatcher`.
    """

    path: tuple[str, ...]
    string: StringMatcher | None = None
    present: bool | None = None
    invert_match: bool = False
    location: str = ""

    @property
    def name(self) -> str:
        return ".".join(self.path)

    def describe(self) -> str:
        if self.present is not None:
            want = self.present != self.invert_match
            return f"claim {self.name} {'present' if want else 'absent'}"
        assert self.string is not None
        return f"claim {self.name} {'not ' if self.invert_match else ''}{self.string.describe()}"


@dataclass(frozen=True, slots=True)
class TemplateSegment:
    """One segment of a ``path_template``.

    ``kind`` is ``literal`` (``text`` must equal the segment), ``any`` (``*``: one
    non-empty segment), or ``rest`` (``**``: zero or more characters including
    ``/``; only last). Variables (``{v}``, ``{v=*}``, ``{v=a/*}``, ``{v=**}``) are
    expanded into these kinds with ``variable`` set on each segment they cover.
    ``suffix`` is literal text that must end the segment (only on the last one,
    e.g. ``*.m4s``).
    """

    kind: Literal["literal", "any", "rest"]
    text: str = ""
    suffix: str = ""
    variable: str | None = None


@dataclass(frozen=True, slots=True)
class PathMatcher:
    """How a route matches the request path (query string excluded).

    ``prefix`` is a plain string prefix (``/api`` matches ``/apix``);
    ``path_separated_prefix`` matches the prefix itself or the prefix followed by
    ``/``; ``path`` is exact; ``safe_regex`` and ``template`` must match the whole
    path. ``case_sensitive`` applies to ``path``, ``prefix`` and
    ``path_separated_prefix``. ``any`` matches every path.
    """

    kind: PathMatchKind = "any"
    value: str = ""
    case_sensitive: bool = True
    template: tuple[TemplateSegment, ...] = ()
    compiled: Any = field(default=None, compare=False, repr=False)
    location: str = ""

    def describe(self) -> str:
        if self.kind == "any":
            return "any path"
        text = f"{self.kind} {self.value!r}"
        return text if self.case_sensitive else text + " (case-insensitive)"


@dataclass(frozen=True, slots=True)
class GrpcMatcher:
    """Matches gRPC requests: ``content-type`` is ``application/grpc`` or
    ``application/grpc+<codec>``. With ``service`` (and ``method``) set, the path
    must be ``/<service>/<method>``."""

    service: str | None = None
    method: str | None = None
    location: str = ""

    def describe(self) -> str:
        if self.service is None:
            return "gRPC request"
        return f"gRPC {self.service}/{self.method or '*'}"


GraphqlOperationType = Literal["query", "mutation", "subscription"]


@dataclass(frozen=True, slots=True)
class GraphqlMatcher:
    """Matches a GraphQL request by the type and/or name of its selected operation.

    The operation comes from the request body (``application/json`` with ``query``
    and ``operationName``, or ``application/graphql``), or for ``GET`` from the
    ``query``/``operationName`` query parameters. A request whose document does not
    parse, or whose operation cannot be selected unambiguously, does not match.
    """

    operation_type: GraphqlOperationType | None = None
    operation_name: StringMatcher | None = None
    location: str = ""

    def describe(self) -> str:
        parts: list[str] = []
        if self.operation_type:
            parts.append(self.operation_type)
        if self.operation_name:
            parts.append(f"named {self.operation_name.describe()}")
        return "GraphQL " + (" ".join(parts) if parts else "request")


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """Everything a request must satisfy for a route to be chosen (all must hold)."""

    path: PathMatcher = PathMatcher()
    methods: frozenset[str] | None = None
    headers: tuple[HeaderMatcher, ...] = ()
    query_parameters: tuple[QueryParameterMatcher, ...] = ()
    jwt_claims: tuple[ClaimMatcher, ...] = ()
    grpc: GrpcMatcher | None = None
    content_type: tuple[str, ...] = ()
    graphql: GraphqlMatcher | None = None

    @property
    def needs_claims(self) -> bool:
        return bool(self.jwt_claims)

    @property
    def needs_body(self) -> bool:
        return self.graphql is not None


TemplateVariable = Literal["client_ip", "request_id", "route", "claim", "header", "literal"]


@dataclass(frozen=True, slots=True)
class TemplatePart:
    """One piece of a header value template.

    ``literal`` parts carry ``text``; the others are filled in per request:
    ``%CLIENT_IP%`` (``client_ip``), ``%REQUEST_ID%`` (``request_id``),
    ``%ROUTE_NAME%`` (``route``: the route's name, empty when it has none),
    ``%CLAIM(tenant.id)%`` (``claim`` with ``path=("tenant", "id")``: a verified
    claim; a scalar as text, an array joined with ``,``, absent or an object gives
    an empty string) and ``%REQ(x-user)%`` (``header``: the first value of a request
    header, ``name`` lower-case). ``%%`` is a literal ``%``.
    """

    kind: TemplateVariable
    text: str = ""
    name: str = ""
    path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HeaderValueOption:
    """One header to add or set (Envoy's ``HeaderValueOption``).

    ``template`` is ``value`` parsed into parts; a value with no ``%`` variables is
    one literal part. When the template expands to an empty string the header is
    not added (as Envoy does).
    """

    name: str
    value: str
    append_action: AppendAction = "append_if_exists_or_add"
    template: tuple[TemplatePart, ...] = ()

    @property
    def is_literal(self) -> bool:
        return all(p.kind == "literal" for p in self.template)


@dataclass(frozen=True, slots=True)
class HeaderTransform:
    """Headers to change on a request or a response, applied in this order:
    ``remove`` (names), ``rename`` (``(old, new)`` pairs: every value of ``old``
    moves to ``new``, replacing ``new``), then ``add`` (options in order; ``set`` in
    config is an ``add`` with ``overwrite_if_exists_or_add``)."""

    add: tuple[HeaderValueOption, ...] = ()
    remove: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove or self.rename)


@dataclass(frozen=True, slots=True)
class WeightedCluster:
    name: str
    weight: int


@dataclass(frozen=True, slots=True)
class ForwardAction:
    """Send the request upstream (Envoy's ``route:`` action).

    Exactly one of ``cluster`` and ``weighted_clusters`` is set. ``timeout`` is the
    whole-request timeout in seconds (``None``: no timeout).
    """

    cluster: str | None = None
    weighted_clusters: tuple[WeightedCluster, ...] = ()
    timeout: float | None = 15.0
    prefix_rewrite: str | None = None
    host_rewrite: str | None = None

    @property
    def total_weight(self) -> int:
        return sum(c.weight for c in self.weighted_clusters)

    def pick_cluster(self, draw: float) -> str:
        """The cluster for a uniform ``draw`` in ``[0, 1)`` (the caller's random source).

        For a single ``cluster`` the draw is ignored.
        """
        if self.cluster is not None:
            return self.cluster
        point = draw * self.total_weight
        for wc in self.weighted_clusters:
            if point < wc.weight:
                return wc.name
            point -= wc.weight
        return next(wc.name for wc in reversed(self.weighted_clusters) if wc.weight > 0)


@dataclass(frozen=True, slots=True)
class DirectResponseAction:
    """Answer locally with ``status`` and ``body``."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain"


@dataclass(frozen=True, slots=True)
class RedirectAction:
    """Answer with a redirect (Envoy's ``RedirectAction``).

    Unset parts of the location are taken from the request. ``prefix_rewrite``
    replaces the part of the path the route's prefix matched; ``path_redirect``
    replaces the whole path.
    """

    response_code: int = 301
    scheme: str | None = None
    host: str | None = None
    port: int | None = None
    path: str | None = None
    prefix_rewrite: str | None = None
    strip_query: bool = False


RouteAction = ForwardAction | DirectResponseAction | RedirectAction


# --------------------------------------------------------------------- policy

TokenSourceKind = Literal["header", "query", "cookie"]
JwksKind = Literal["inline", "file", "remote"]
RateAlgorithm = Literal["token_bucket", "sliding_window"]
RateKeyKind = Literal["client_ip", "route", "claim", "header"]
ClaimMode = Literal["all", "any"]


@dataclass(frozen=True, slots=True)
class TokenSource:
    """Where a JWT is looked for in a request.

    ``header``: the header ``name`` (lower-case); when ``prefix`` is set (``Bearer``)
    the value must start with that scheme, compared case-insensitively (RFC 7235),
    followed by whitespace and the token. ``query``: the query parameter ``name``.
    ``cookie``: the cookie ``name``.
    """

    kind: TokenSourceKind
    name: str
    prefix: str = ""


BEARER = TokenSource("header", "authorization", "Bearer")


@dataclass(frozen=True, slots=True)
class JwksSource:
    """Where a provider's signing keys come from.

    ``inline`` and ``file`` keys are loaded with the config: ``document`` holds the
    parsed JWKS JSON (``{"keys": [...]}``) and ``path`` the file it came from.
    ``remote`` keys are fetched from ``uri`` by the adapter (a ``FetchJwks`` action):
    they are fresh for ``cache_duration`` seconds after a fetch; when a refresh fails
    the last good keys keep serving for ``max_stale`` more seconds, after which
    requests needing them get ``unavailable_status``. A failed fetch is retried no
    sooner than ``retry_interval``; a token whose ``kid`` is unknown triggers a
    refetch at most once per ``refetch_cooldown``. ``timeout`` bounds one fetch.
    """

    kind: JwksKind
    document: Mapping[str, Any] | None = None
    path: str | None = None
    uri: str | None = None
    cache_duration: float = 300.0
    timeout: float = 5.0
    max_stale: float = 3600.0
    retry_interval: float = 10.0
    refetch_cooldown: float = 30.0
    unavailable_status: int = 503


@dataclass(frozen=True, slots=True)
class ClaimToHeader:
    """Copy a verified claim (``path`` into nested objects) into request header ``header``."""

    path: tuple[str, ...]
    header: str


@dataclass(frozen=True, slots=True)
class JwtProvider:
    """A JWT issuer the gateway trusts (Envoy's ``JwtProvider``).

    ``algorithms`` is an allowlist (``none`` is never accepted). ``audiences``
    empty means the ``aud`` claim is not checked; otherwise the token's ``aud`` must
    contain one of them. ``clock_skew`` seconds of leeway apply to ``exp``, ``nbf``
    and ``iat``. ``required_claims`` must be present. ``forward: false`` removes the
    token's header (or query parameter) before the request goes upstream.
    ``claims_to_headers`` copies claims into upstream request headers; client-sent
    copies of those headers are always removed. ``max_token_bytes`` bounds the token
    size; ``cache_size`` bounds the verified-token cache; ``realm`` goes into
    ``WWW-Authenticate``.
    """

    name: str
    issuer: str
    jwks: JwksSource
    audiences: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    clock_skew: float = 60.0
    sources: tuple[TokenSource, ...] = (BEARER,)
    forward: bool = False
    claims_to_headers: tuple[ClaimToHeader, ...] = ()
    required_claims: tuple[str, ...] = ("exp",)
    max_token_bytes: int = 8192
    cache_size: int = 4096
    realm: str = "gwcore"
    location: str = ""


@dataclass(frozen=True, slots=True)
class JwtRequirement:
    """A route needs a valid token from ``provider``. With ``allow_missing`` a request
    without any token passes (unauthenticated); a token that is present but invalid
    is still rejected."""

    provider: str
    allow_missing: bool = False
    location: str = ""


@dataclass(frozen=True, slots=True)
class ClaimRequirement:
    """A verified claim must hold ``values``: with ``mode`` ``all`` every value, with
    ``any`` at least one. The claim (at ``path``) is read as a set of strings: a
    scalar is one element (booleans as ``true``/``false``), an array its scalar
    elements, and ``scope``/``scp`` strings are split on spaces."""

    path: tuple[str, ...]
    values: tuple[str, ...]
    mode: ClaimMode = "all"
    location: str = ""

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Requirement:
    """An authorization rule over verified claims. It holds when every entry of
    ``claims`` holds, every rule of ``all_of`` holds, and (when ``any_of`` is not
    empty) at least one rule of ``any_of`` holds. An empty requirement always holds."""

    claims: tuple[ClaimRequirement, ...] = ()
    all_of: tuple[Requirement, ...] = ()
    any_of: tuple[Requirement, ...] = ()
    location: str = ""

    @property
    def empty(self) -> bool:
        return not (self.claims or self.all_of or self.any_of)


@dataclass(frozen=True, slots=True)
class RateKeyPart:
    """One component of a rate-limit key: the client IP, the route's label, a
    verified claim (``path``) or a request header (``name``, lower-case)."""

    kind: RateKeyKind
    name: str = ""
    path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A named rate limit.

    ``token_bucket``: ``rate`` tokens per second refill a bucket of ``burst`` tokens.
    ``sliding_window``: at most ``limit`` requests in any ``window`` seconds
    (a sliding-window counter). Each distinct ``key`` value gets its own state; at
    most ``max_keys`` are kept (least recently used are evicted). When a key part is
    missing (no such claim or header), ``missing_key`` decides: ``skip`` (the limit
    does not apply) or ``shared`` (all such requests share one bucket).
    """

    name: str
    algorithm: RateAlgorithm
    key: tuple[RateKeyPart, ...] = (RateKeyPart("client_ip"),)
    rate: float = 0.0
    burst: int = 0
    limit: int = 0
    window: float = 0.0
    max_keys: int = 100_000
    missing_key: Literal["skip", "shared"] = "skip"
    location: str = ""


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """What a route (or the whole gateway) enforces: a JWT ``jwt`` requirement,
    an authorization ``require`` rule (needs ``jwt``), and named ``rate_limits``."""

    jwt: JwtRequirement | None = None
    require: Requirement = Requirement()
    rate_limits: tuple[str, ...] = ()
    location: str = ""

    @property
    def empty(self) -> bool:
        return self.jwt is None and self.require.empty and not self.rate_limits


@dataclass(frozen=True, slots=True)
class PathNormalization:
    """How request paths are normalized before routing and policy (the normalized
    path is also what goes upstream): ``decode_unreserved`` percent-decodes
    RFC 3986 unreserved characters (``%41`` -> ``A``, ``%2E`` -> ``.``; ``%2F`` is
    kept), ``merge_slashes`` turns ``//`` into ``/``, ``remove_dot_segments``
    resolves ``.`` and ``..`` (RFC 3986 §5.2.4; never above ``/``)."""

    decode_unreserved: bool = True
    merge_slashes: bool = True
    remove_dot_segments: bool = True

    @property
    def enabled(self) -> bool:
        return self.decode_unreserved or self.merge_slashes or self.remove_dot_segments


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of a virtual host's route list: conditions and what to do."""

    match: RouteMatch
    action: RouteAction
    name: str | None = None
    request_headers: HeaderTransform = HeaderTransform()
    response_headers: HeaderTransform = HeaderTransform()
    location: str = ""
    policy: RoutePolicy = RoutePolicy()

    @property
    def label(self) -> str:
        """The route's name, or its config location when it has none."""
        return self.name or self.location


@dataclass(frozen=True, slots=True)
class VirtualHost:
    """A named group of routes chosen by the request's host (authority)."""

    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    location: str = ""
    request_headers: HeaderTransform = HeaderTransform()
    response_headers: HeaderTransform = HeaderTransform()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One upstream address; ``weight`` is its share for the load balancer."""

    host: str
    port: int
    weight: int = 1

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Cluster:
    """A named set of upstream endpoints and how to talk to them."""

    name: str
    endpoints: tuple[Endpoint, ...]
    protocol: UpstreamProtocol = "http1"
    lb: LbPolicy = "round_robin"
    max_connections_per_host: int = 64
    connect_timeout: float = 1.0
    location: str = ""
    max_pending_requests: int = 1024
    idle_timeout: float = 60.0
    hash_header: str | None = None  # ring_hash key: this header, else the client IP


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    max_header_bytes: int = 65536
    max_body_bytes: int = 10 * 1024 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    host: str
    port: int
    protocols: tuple[ListenerProtocol, ...] = ("http1", "h2c")
    limits: ListenerLimits = ListenerLimits()
    location: str = ""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """A whole validated gateway configuration.

    ``virtual_hosts`` is never empty when routes were given: a top-level ``routes:``
    list becomes one virtual host named ``default`` with domains ``["*"]``.
    ``source`` names the file the config came from (``<dict>`` for a mapping).
    """

    virtual_hosts: tuple[VirtualHost, ...] = ()
    clusters: Mapping[str, Cluster] = field(default_factory=dict)
    listeners: tuple[Listener, ...] = ()
    source: str = "<dict>"
    jwt_providers: Mapping[str, JwtProvider] = field(default_factory=dict)
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    trusted_proxies: tuple[IpNetwork, ...] = ()
    # Applies to every request (before the route's own policy); only rate limits.
    global_policy: RoutePolicy = RoutePolicy()
    path_normalization: PathNormalization = PathNormalization()
    # Request headers removed from every client request before anything else.
    untrusted_request_headers: tuple[str, ...] = ()
    # Propagate a valid W3C traceparent/tracestate; start one when absent or invalid,
    # with the sampled flag set when ``trace_sampled`` (W3C's default is not sampled).
    tracing: bool = True
    trace_sampled: bool = False

    @property
    def route_count(self) -> int:
        """How many routes all virtual hosts hold together."""
        return sum(len(vh.routes) for vh in self.virtual_hosts)
