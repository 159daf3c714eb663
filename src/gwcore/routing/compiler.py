"""The compiled route table: a decision tree that answers like the linear scan.

How it stays first-match-exact
------------------------------
Every route of a virtual host is placed in exactly one *bucket*, chosen by how
it matches the path:

* ``path`` / ``prefix`` / ``path_separated_prefix`` -> a dict keyed by the value
  (one dict per kind and case sensitivity). Prefixes are probed once per distinct
  prefix length, separated prefixes once per ``/`` in the path, exact paths once.
* ``path_template`` -> a trie over path segments (literal children, ``*`` child,
  ``**`` tail), walked depth first.
* ``safe_regex`` (and templates with an in-segment suffix) -> RE2 sets, one pass
  answers every regex of a chunk.
* a ``grpc`` service without a path matcher -> indexed as the path
  ``/<service>/<method>`` or the separated prefix ``/<service>``.
* no path condition -> the *any* bucket.

Each probe is exact for the path (a bucket is reached only when its routes' path
condition holds), so the candidates are: the union of the reached buckets. Inside
a bucket, routes can be further split on a discriminating condition — method,
an exact header value, an exact claim value — giving dict lookups instead of
scans; a split only ever narrows to routes that *may* match (the unconstrained
ones stay in ``rest``). The candidates are then checked in declaration order with
the full remaining conditions (``evaluate_route`` minus the path), so the first
that passes is exactly the linear scan's winner.

The tests in ``tests/routing/test_differential.py`` check this claim against
``gwcore.routing.reference`` on generated tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gwcore.config import model as m
from gwcore.config.claims import claim_values
from gwcore.config.patterns import PATH_SEGMENT_CHARS, new_regex_set, template_regex
from gwcore.routing.decision import Decision, Matched, NeedBody, NeedClaims, NoRoute
from gwcore.routing.domains import DomainIndex
from gwcore.routing.matchers import Verdict, evaluate_route
from gwcore.routing.reference import Explanation, explain
from gwcore.routing.request import RequestView, RouteRequest

_REST_CHARS = PATH_SEGMENT_CHARS + "/"
# Buckets larger than this are split on a discriminating condition.
_SPLIT_MIN = 4
_MAX_SPLIT_DEPTH = 4
# RE2 sets hold at most this many patterns, keeping each set's DFA small.
_REGEX_CHUNK = 64

IdList = tuple[int, ...]


# ----------------------------------------------------------------- buckets


@dataclass(slots=True)
class _Split:
    """Routes of a bucket divided by one condition that can be answered by lookup."""

    kind: str  # "method" | "header" | "claim"
    key: Any  # header name or claim path
    exact: dict[str, _Bucket]
    folded: dict[str, _Bucket]  # ignore_case header values, keys lower-case
    rest: _Bucket | None
    constrained: IdList  # every id in exact/folded, sorted (used when claims are unknown)


@dataclass(slots=True)
class _Bucket:
    ids: IdList
    split: _Split | None = None

    def collect(self, view: RequestView, out: list[IdList]) -> None:
        split = self.split
        if split is None:
            out.append(self.ids)
            return
        if split.rest is not None:
            split.rest.collect(view, out)
        kind = split.kind
        if kind == "method":
            child = split.exact.get(view.method)
            if child is not None:
                child.collect(view, out)
            return
        if kind == "header":
            values = view.header_values(split.key)
        else:
            claims = view.claims
            if claims is None:  # not verified yet: every claim route stays possible
                out.append(split.constrained)
                return
            values = claim_values(claims, split.key) or []
        for value in values:
            child = split.exact.get(value)
            if child is not None:
                child.collect(view, out)
            if split.folded:
                child = split.folded.get(value.lower())
                if child is not None:
                    child.collect(view, out)


def _discriminators(match: m.RouteMatch) -> Iterable[tuple[tuple[str, Any], str, bool]]:
    """(key, value, folded) conditions of a route that a dict lookup can decide."""
    if match.methods is not None:
        for method in match.methods:
            yield ("method", None), method, False
    for header in match.headers:
        sm = header.string
        if sm is not None and sm.kind == "exact" and not header.invert_match:
            yield ("header", header.name), sm.value, sm.ignore_case
    for claim in match.jwt_claims:
        sm = claim.string
        if sm is not None and sm.kind == "exact" and not sm.ignore_case and not claim.invert_match:
            yield ("claim", claim.path), sm.value, False


def _build_bucket(
    ids: Sequence[int], routes: Sequence[m.Route], used: frozenset[tuple[str, Any]], depth: int
) -> _Bucket:
    bucket = _Bucket(tuple(ids))
    if len(ids) <= _SPLIT_MIN or depth >= _MAX_SPLIT_DEPTH:
        return bucket
    counts: Counter[tuple[str, Any]] = Counter()
    for i in ids:
        counts.update({key for key, _, _ in _discriminators(routes[i].match)} - used)
    if not counts:
        return bucket
    key, count = counts.most_common(1)[0]
    if count < 2:
        return bucket
    exact: dict[str, list[int]] = {}
    folded: dict[str, list[int]] = {}
    rest: list[int] = []
    for i in ids:
        # Index each route under its first condition on the key; it is a necessary one.
        found = next(((v, f) for k, v, f in _discriminators(routes[i].match) if k == key), None)
        if found is None:
            rest.append(i)
        elif key[0] == "method":
            for method in routes[i].match.methods or ():
                exact.setdefault(method, []).append(i)
        else:
            value, fold = found
            (folded if fold else exact).setdefault(value, []).append(i)
    used = used | {key}
    constrained = sorted({i for lst in (*exact.values(), *folded.values()) for i in lst})
    bucket.split = _Split(
        kind=key[0],
        key=key[1],
        exact={v: _build_bucket(lst, routes, used, depth + 1) for v, lst in exact.items()},
        folded={v: _build_bucket(lst, routes, used, depth + 1) for v, lst in folded.items()},
        rest=_build_bucket(rest, routes, used, depth + 1) if rest else None,
        constrained=tuple(constrained),
    )
    return bucket


# ------------------------------------------------------------------- trie


@dataclass(slots=True)
class _TrieNode:
    literal: dict[str, _TrieNode] = field(default_factory=dict)
    any: _TrieNode | None = None
    rest: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    rest_bucket: _Bucket | None = None
    end_bucket: _Bucket | None = None

    def insert(self, segments: Sequence[m.TemplateSegment], route_id: int) -> None:
        node = self
        for seg in segments:
            if seg.kind == "rest":
                node.rest.append(route_id)
                return
            if seg.kind == "any":
                node.any = node.any or _TrieNode()
                node = node.any
            else:
                node = node.literal.setdefault(seg.text, _TrieNode())
        node.end.append(route_id)

    def freeze(self, routes: Sequence[m.Route]) -> None:
        if self.rest:
            self.rest_bucket = _build_bucket(self.rest, routes, frozenset(), 0)
        if self.end:
            self.end_bucket = _build_bucket(self.end, routes, frozenset(), 0)
        for child in self.literal.values():
            child.freeze(routes)
        if self.any is not None:
            self.any.freeze(routes)

    def walk(self, segments: list[str], index: int, view: RequestView, out: list[IdList]) -> None:
        if index == len(segments):
            if self.end_bucket is not None:
                self.end_bucket.collect(view, out)
            return
        if self.rest_bucket is not None:
            remaining = "/".join(segments[index:])
            if not remaining.strip(_REST_CHARS):
                self.rest_bucket.collect(view, out)
        segment = segments[index]
        child = self.literal.get(segment)
        if child is not None:
            child.walk(segments, index + 1, view, out)
        if self.any is not None and segment and not segment.strip(PATH_SEGMENT_CHARS):
            self.any.walk(segments, index + 1, view, out)


def _is_trie_template(segments: Sequence[m.TemplateSegment]) -> bool:
    return all(not seg.suffix for seg in segments)


# ------------------------------------------------------------ virtual host


class _VirtualHostTable:
    """The compiled form of one virtual host's route list."""

    def __init__(self, vhost: m.VirtualHost) -> None:
        self.vhost = vhost
        routes = vhost.routes
        self.routes = routes
        self.matches = tuple(r.match for r in routes)
        keyed: dict[tuple[str, bool], dict[str, list[int]]] = {}
        any_ids: list[int] = []
        trie = _TrieNode()
        regexes: list[tuple[str, int]] = []
        for i, route in enumerate(routes):
            path = route.match.path
            kind = path.kind
            grpc = route.match.grpc
            if kind == "any" and grpc is not None and grpc.service is not None:
                if grpc.method is not None:
                    kind, value = "path", f"/{grpc.service}/{grpc.method}"
                else:
                    kind, value = "path_separated_prefix", f"/{grpc.service}"
                keyed.setdefault((kind, True), {}).setdefault(value, []).append(i)
            elif kind == "any":
                any_ids.append(i)
            elif kind == "safe_regex":
                regexes.append((path.value, i))
            elif kind == "template":
                if _is_trie_template(path.template):
                    trie.insert(path.template, i)
                else:
                    regexes.append((template_regex(path.template), i))
            else:
                keyed.setdefault((kind, path.case_sensitive), {}).setdefault(path.value, []).append(
                    i
                )

        def buckets(kind: str, case_sensitive: bool) -> dict[str, _Bucket]:
            return {
                value: _build_bucket(ids, routes, frozenset(), 0)
                for value, ids in keyed.get((kind, case_sensitive), {}).items()
            }

        self.exact = buckets("path", True)
        self.exact_ci = buckets("path", False)
        self.prefix = buckets("prefix", True)
        self.prefix_ci = buckets("prefix", False)
        self.prefix_lengths = sorted({len(p) for p in self.prefix})
        self.prefix_ci_lengths = sorted({len(p) for p in self.prefix_ci})
        self.separated = buckets("path_separated_prefix", True)
        self.separated_ci = buckets("path_separated_prefix", False)
        self.any = _build_bucket(any_ids, routes, frozenset(), 0) if any_ids else None
        trie.freeze(routes)
        self.trie = trie if (trie.literal or trie.any or trie.rest or trie.end) else None
        self.regex_sets: list[tuple[Any, list[_Bucket]]] = []
        for start in range(0, len(regexes), _REGEX_CHUNK):
            chunk = regexes[start : start + _REGEX_CHUNK]
            regex_set = new_regex_set()
            for pattern, _ in chunk:
                regex_set.Add(pattern)
            regex_set.Compile()
            self.regex_sets.append((regex_set, [_Bucket((i,)) for _, i in chunk]))
        self.needs_lower = bool(self.exact_ci or self.prefix_ci or self.separated_ci)

    def candidates(self, view: RequestView) -> IdList:
        """Sorted ids of the routes whose path condition holds (and may match otherwise)."""
        out: list[IdList] = []
        path = view.path
        size = len(path)
        bucket = self.exact.get(path)
        if bucket is not None:
            bucket.collect(view, out)
        for length in self.prefix_lengths:
            if length > size:
                break
            bucket = self.prefix.get(path[:length])
            if bucket is not None:
                bucket.collect(view, out)
        if self.separated:
            self._separated(self.separated, path, view, out)
        if self.needs_lower:
            lowered = path.lower()
            bucket = self.exact_ci.get(lowered)
            if bucket is not None:
                bucket.collect(view, out)
            # Lower-casing may lengthen the path ('İ' -> 'i̇'): bound by the lowered size.
            for length in self.prefix_ci_lengths:
                if length > len(lowered):
                    break
                bucket = self.prefix_ci.get(lowered[:length])
                if bucket is not None:
                    bucket.collect(view, out)
            if self.separated_ci:
                self._separated(self.separated_ci, lowered, view, out)
        if self.trie is not None and path[:1] == "/":
            self.trie.walk(path[1:].split("/"), 0, view, out)
        for regex_set, regex_buckets in self.regex_sets:
            hits = regex_set.Match(path)
            if hits:
                for hit in hits:
                    regex_buckets[hit].collect(view, out)
        if self.any is not None:
            self.any.collect(view, out)
        if not out:
            return ()
        if len(out) == 1:
            return out[0]
        return tuple(sorted(set().union(*out)))

    @staticmethod
    def _separated(
        table: dict[str, _Bucket], path: str, view: RequestView, out: list[IdList]
    ) -> None:
        bucket = table.get(path)
        if bucket is not None:
            bucket.collect(view, out)
        slash = path.find("/", 1)
        while slash >= 0:
            bucket = table.get(path[:slash])
            if bucket is not None:
                bucket.collect(view, out)
            slash = path.find("/", slash + 1)

    def decide(self, view: RequestView, ids: IdList, start: int) -> Decision:
        matches = self.matches
        for position in range(start, len(ids)):
            index = ids[position]
            verdict = evaluate_route(matches[index], view, check_path=False)
            if verdict is Verdict.MATCH:
                return Matched(self.routes[index], self.vhost, index)
            if verdict is Verdict.NEED_CLAIMS:
                return NeedClaims(
                    self.routes[index], self.vhost, index, _ClaimsResume(self, view, ids, position)
                )
            if verdict is Verdict.NEED_BODY:
                return NeedBody(
                    self.routes[index], self.vhost, index, _BodyResume(self, view, ids, position)
                )
        return NoRoute(self.vhost)


@dataclass(frozen=True, slots=True)
class _ClaimsResume:
    table: _VirtualHostTable
    view: RequestView
    ids: IdList
    position: int

    def __call__(self, claims: Mapping[str, Any]) -> Decision:
        view = RequestView(self.view.request.with_claims(claims))
        view.body = self.view.body
        return self.table.decide(view, self.ids, self.position)


@dataclass(frozen=True, slots=True)
class _BodyResume:
    table: _VirtualHostTable
    view: RequestView
    ids: IdList
    position: int

    def __call__(self, body: bytes) -> Decision:
        view = RequestView(self.view.request.with_body(body))
        view.claims = self.view.claims
        return self.table.decide(view, self.ids, self.position)


# ------------------------------------------------------------------- table


class RouteTable:
    """A compiled, immutable route table: ``match`` a request, ``explain`` a decision.

    Answers exactly as :func:`gwcore.routing.reference.reference_match` (first match
    in declaration order within the request's virtual host), with lookups instead
    of scans. Safe to share; compiling is done once, in the constructor.
    """

    __slots__ = ("_domains", "_tables", "config")

    def __init__(self, config: m.GatewayConfig) -> None:
        self.config = config
        self._domains = DomainIndex(config.virtual_hosts)
        self._tables = {id(vh): _VirtualHostTable(vh) for vh in config.virtual_hosts}

    def match(self, request: RouteRequest) -> Decision:
        """Route ``request``: :class:`Matched`, :class:`NoRoute`, or a request for more.

        :class:`NeedClaims` / :class:`NeedBody` are answered only when the earliest
        route that can still match depends on them; continue with their
        ``with_claims`` / ``with_body``. Claims must be verified ones.
        """
        view = RequestView(request)
        vhost = self._domains.select(view.host)
        if vhost is None:
            return NoRoute(None)
        table = self._tables[id(vhost)]
        return table.decide(view, table.candidates(view), 0)

    def explain(self, request: RouteRequest) -> Explanation:
        """Every route of the chosen virtual host with its verdict, in order.

        Diagnostic, not for the request path: it runs the reference scan so it can
        say which condition of each route failed.
        """
        return explain(self.config, request)
