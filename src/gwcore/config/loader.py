"""Validate a YAML document or a mapping into :class:`GatewayConfig`.

Validation keeps going after the first problem so one run reports every error,
each with its file, line and key path. Nothing here raises anything but
:class:`ConfigError` for a bad config.
"""

from __future__ import annotations

import difflib
import ipaddress
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from gwcore.config import model as m
from gwcore.config.errors import ConfigError, ConfigIssue
from gwcore.config.patterns import compile_regex, parse_path_template, template_regex
from gwcore.config.source import Located, Position, YamlSyntaxError, parse_yaml
from gwcore.config.units import parse_duration, parse_size

T = TypeVar("T")

_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
_PSEUDO_HEADERS = frozenset({":method", ":path", ":authority", ":scheme"})
_REDIRECT_CODES = {
    "MOVED_PERMANENTLY": 301,
    "FOUND": 302,
    "SEE_OTHER": 303,
    "TEMPORARY_REDIRECT": 307,
    "PERMANENT_REDIRECT": 308,
}


def load_config_file(path: str | Path) -> m.GatewayConfig:
    """Read and validate a YAML config file. Raises :class:`ConfigError` (located)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue(source, "", f"cannot read config: {exc.strerror}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(source, "", f"config is not UTF-8: {exc.reason}")]) from None
    return load_config_text(text, source)


def load_config_text(text: str, source: str = "<string>") -> m.GatewayConfig:
    """Validate YAML text. ``source`` names it in error messages."""
    try:
        located = parse_yaml(text, source)
    except YamlSyntaxError as exc:
        line, col = exc.position if exc.position else (None, None)
        raise ConfigError([ConfigIssue(source, "", exc.message, line, col)]) from None
    return _build(located)


def load_config(data: Mapping[str, Any], source: str = "<dict>") -> m.GatewayConfig:
    """Validate a mapping shaped like the YAML document (no line numbers in errors)."""
    return _build(Located(data=data, source=source))


# --------------------------------------------------------------------------- cursor


class _Context:
    def __init__(self, located: Located) -> None:
        self.located = located
        self.issues: list[ConfigIssue] = []

    def report(self, path: str, position: Position | None, message: str) -> None:
        line, col = position if position else (None, None)
        self.issues.append(ConfigIssue(self.located.source, path, message, line, col))


@dataclass(slots=True)
class _Node:
    """A value in the document with its key path and position."""

    value: Any
    path: str
    position: Position | None
    ctx: _Context

    def child(self, key: str | int) -> _Node:
        where = self.ctx.located.positions.get(id(self.value), {})
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
        else:
            path = f"{self.path}.{key}" if self.path else key
        return _Node(self.value[key], path, where.get(key, self.position), self.ctx)

    def error(self, message: str) -> None:
        self.ctx.report(self.path, self.position, message)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _mapping(
    node: _Node, allowed: Iterable[str], required: Iterable[str] = ()
) -> dict[str, _Node] | None:
    """Check a mapping's keys; return its children by key, or None if not a mapping."""
    if not isinstance(node.value, dict):
        node.error(f"expected a mapping, got {_describe(node.value)}")
        return None
    allowed = list(allowed)
    out: dict[str, _Node] = {}
    for key in node.value:
        if not isinstance(key, str):
            node.error(f"keys must be strings, got {_describe(key)}")
            continue
        child = node.child(key)
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            child.error(f"unknown key {key!r}{hint}; expected one of: {', '.join(allowed)}")
            continue
        out[key] = child
    for key in required:
        if key not in node.value:
            node.error(f"missing required key {key!r}")
    return out


def _list(node: _Node, *, allow_empty: bool = True) -> list[_Node] | None:
    if not isinstance(node.value, list):
        node.error(f"expected a list, got {_describe(node.value)}")
        return None
    if not node.value and not allow_empty:
        node.error("expected a non-empty list")
        return None
    return [node.child(i) for i in range(len(node.value))]


def _str(node: _Node, *, allow_empty: bool = True) -> str | None:
    if not isinstance(node.value, str):
        hint = ""
        if isinstance(node.value, bool | int | float):
            hint = " (quote it to make it a string)"
        node.error(f"expected a string, got {_describe(node.value)}{hint}")
        return None
    if not allow_empty and not node.value:
        node.error("expected a non-empty string")
        return None
    return node.value


def _bool(node: _Node) -> bool | None:
    if not isinstance(node.value, bool):
        node.error(f"expected true or false, got {_describe(node.value)}")
        return None
    return node.value


def _int(node: _Node, low: int, high: int | None = None) -> int | None:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int):
        node.error(f"expected an integer, got {_describe(value)}")
        return None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        node.error(f"expected an integer {bound}, got {value}")
        return None
    return value


def _duration(node: _Node, *, allow_zero: bool = True) -> float | None:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, str):
        hint = " (add a unit, e.g. '5s' or '500ms')" if isinstance(value, int | float) else ""
        node.error(f"expected a duration like 500ms, 2s or 1m30s, got {_describe(value)}{hint}")
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        node.error(str(exc))
        return None
    if not allow_zero and seconds <= 0:
        node.error("expected a duration greater than zero")
        return None
    return seconds


def _size(node: _Node) -> int | None:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | str):
        node.error(f"expected a size like 65536, 64KiB or 10MiB, got {_describe(value)}")
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        node.error(str(exc))
        return None


def _choice(node: _Node, choices: Iterable[str]) -> str | None:
    choices = list(choices)
    text = _str(node)
    if text is None:
        return None
    if text not in choices:
        close = difflib.get_close_matches(text, choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        node.error(f"expected one of {', '.join(choices)}; got {text!r}{hint}")
        return None
    return text


def _header_name(node: _Node) -> str | None:
    name = _str(node, allow_empty=False)
    if name is None:
        return None
    lowered = name.lower()
    if lowered in _PSEUDO_HEADERS:
        return lowered
    if not set(name) <= _TOKEN_CHARS:
        node.error(f"invalid header name {name!r}: header names are HTTP tokens")
        return None
    return lowered


# ------------------------------------------------------------------- string matchers

_STRING_MATCH_KEYS = ("exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case")
# Envoy's legacy per-kind keys on HeaderMatcher.
_LEGACY_HEADER_KEYS = {
    "exact_match": "exact",
    "prefix_match": "prefix",
    "suffix_match": "suffix",
    "contains_match": "contains",
    "safe_regex_match": "regex",
}


def _regex_from(node: _Node) -> str | None:
    """Envoy's ``{regex: "..."}`` form, or a plain string."""
    if isinstance(node.value, dict):
        fields = _mapping(node, ("regex", "google_re2"), required=("regex",))
        if fields is None or "regex" not in fields:
            return None
        return _str(fields["regex"])
    return _str(node)


def _compiled_string_matcher(
    node: _Node, kind: m.StringMatchKind, value: str, ignore_case: bool
) -> m.StringMatcher | None:
    if kind == "regex":
        if ignore_case:
            node.error("ignore_case does not apply to safe_regex; use (?i) in the regex")
            return None
        try:
            compiled = compile_regex(value)
        except ValueError as exc:
            node.error(str(exc))
            return None
        return m.StringMatcher("regex", value, False, compiled)
    return m.StringMatcher(kind, value.lower() if ignore_case else value, ignore_case)


def _string_matcher(node: _Node) -> m.StringMatcher | None:
    """Envoy's ``StringMatcher``: one of exact/prefix/suffix/contains/safe_regex."""
    fields = _mapping(node, _STRING_MATCH_KEYS)
    if fields is None:
        return None
    kinds = [k for k in ("exact", "prefix", "suffix", "contains", "safe_regex") if k in fields]
    if len(kinds) != 1:
        node.error(
            "expected exactly one of exact, prefix, suffix, contains, safe_regex"
            + (f"; got {', '.join(kinds)}" if kinds else "")
        )
        return None
    ignore_case = False
    if "ignore_case" in fields:
        flag = _bool(fields["ignore_case"])
        if flag is None:
            return None
        ignore_case = flag
    key = kinds[0]
    if key == "safe_regex":
        pattern = _regex_from(fields[key])
        if pattern is None:
            return None
        return _compiled_string_matcher(fields[key], "regex", pattern, ignore_case)
    text = _str(fields[key])
    if text is None:
        return None
    return _compiled_string_matcher(fields[key], cast(m.StringMatchKind, key), text, ignore_case)


def _value_condition(
    node: _Node, fields: dict[str, _Node], keys: Iterable[str], what: str
) -> tuple[m.StringMatcher | None, bool | None, tuple[int, int] | None] | None:
    """Exactly one value condition among ``keys``: (string, present, range)."""
    present_keys = [k for k in keys if k in fields]
    if len(present_keys) != 1:
        listed = ", ".join(keys)
        got = f"; got {', '.join(present_keys)}" if present_keys else ""
        node.error(f"{what} needs exactly one of {listed}{got}")
        return None
    key = present_keys[0]
    child = fields[key]
    if key == "present_match":
        flag = _bool(child)
        return None if flag is None else (None, flag, None)
    if key == "string_match":
        sm = _string_matcher(child)
        return None if sm is None else (sm, None, None)
    if key == "range_match":
        rf = _mapping(child, ("start", "end"), required=("start", "end"))
        if rf is None or "start" not in rf or "end" not in rf:
            return None
        start, end = _int(rf["start"], -(1 << 63)), _int(rf["end"], -(1 << 63))
        if start is None or end is None:
            return None
        if start >= end:
            child.error(f"range_match needs start < end, got [{start}, {end})")
            return None
        return (None, None, (start, end))
    kind = _LEGACY_HEADER_KEYS[key]
    if kind == "regex":
        pattern = _regex_from(child)
        if pattern is None:
            return None
        sm = _compiled_string_matcher(child, "regex", pattern, False)
    else:
        text = _str(child)
        if text is None:
            return None
        sm = _compiled_string_matcher(child, cast(m.StringMatchKind, kind), text, False)
    return None if sm is None else (sm, None, None)


_HEADER_CONDITIONS = (*_LEGACY_HEADER_KEYS, "present_match", "string_match", "range_match")


def _header_matcher(node: _Node) -> m.HeaderMatcher | None:
    fields = _mapping(node, ("name", *_HEADER_CONDITIONS, "invert_match"), required=("name",))
    if fields is None or "name" not in fields:
        return None
    name = _header_name(fields["name"])
    cond = _value_condition(node, fields, _HEADER_CONDITIONS, f"header matcher {name or ''}")
    invert = _bool(fields["invert_match"]) if "invert_match" in fields else False
    if name is None or cond is None or invert is None:
        return None
    string, present, rng = cond
    return m.HeaderMatcher(name, string, present, rng, invert, node.path)


def _query_matcher(node: _Node) -> m.QueryParameterMatcher | None:
    keys = ("string_match", "present_match")
    fields = _mapping(node, ("name", *keys), required=("name",))
    if fields is None or "name" not in fields:
        return None
    name = _str(fields["name"], allow_empty=False)
    cond = _value_condition(node, fields, keys, f"query parameter matcher {name or ''}")
    if name is None or cond is None:
        return None
    return m.QueryParameterMatcher(name, cond[0], cond[1], node.path)


def _claim_matcher(node: _Node) -> m.ClaimMatcher | None:
    keys = (*_LEGACY_HEADER_KEYS, "present_match", "string_match")
    fields = _mapping(node, ("name", "path", *keys, "invert_match"))
    if fields is None:
        return None
    path: tuple[str, ...] | None = None
    if ("name" in fields) == ("path" in fields):
        node.error("a jwt_claim matcher needs exactly one of name (e.g. 'tenant.id') or path")
    elif "name" in fields:
        name = _str(fields["name"], allow_empty=False)
        if name is not None:
            path = tuple(name.split("."))
            if "" in path:
                fields["name"].error(f"invalid claim name {name!r}: empty part between dots")
                path = None
    else:
        items = _list(fields["path"], allow_empty=False)
        if items is not None:
            parts = [_str(i, allow_empty=False) for i in items]
            if all(p is not None for p in parts):
                path = tuple(cast(list[str], parts))
    cond = _value_condition(node, fields, keys, "jwt_claim matcher")
    invert = _bool(fields["invert_match"]) if "invert_match" in fields else False
    if path is None or cond is None or invert is None:
        return None
    return m.ClaimMatcher(path, cond[0], cond[1], invert, node.path)


# ------------------------------------------------------------------------ path


_PATH_KEYS = ("prefix", "path", "path_separated_prefix", "safe_regex", "path_template")


def _path_matcher(node: _Node, fields: dict[str, _Node]) -> m.PathMatcher | None:
    kinds = [k for k in _PATH_KEYS if k in fields]
    case_sensitive = True
    if "case_sensitive" in fields:
        flag = _bool(fields["case_sensitive"])
        if flag is None:
            return None
        case_sensitive = flag
    if not kinds:
        return m.PathMatcher("any", case_sensitive=case_sensitive, location=node.path)
    if len(kinds) > 1:
        node.error(f"a route matches the path at most one way; got {', '.join(kinds)}")
        return None
    key = kinds[0]
    child = fields[key]
    if key == "safe_regex":
        pattern = _regex_from(child)
        if pattern is None:
            return None
        if not case_sensitive:
            fields["case_sensitive"].error(
                "case_sensitive does not apply to safe_regex; use (?i) in the regex"
            )
            return None
        try:
            compiled = compile_regex(pattern)
        except ValueError as exc:
            child.error(str(exc))
            return None
        return m.PathMatcher("safe_regex", pattern, True, compiled=compiled, location=child.path)
    text = _str(child)
    if text is None:
        return None
    if "?" in text or "#" in text:
        child.error(
            f"{text!r} contains '?' or '#', but paths are matched without the query string; "
            "use query_parameters"
        )
        return None
    if key == "path_template":
        if not case_sensitive:
            fields["case_sensitive"].error("case_sensitive does not apply to path_template")
            return None
        try:
            segments = parse_path_template(text)
            compiled = compile_regex(template_regex(segments))
        except ValueError as exc:
            child.error(str(exc))
            return None
        return m.PathMatcher(
            "template", text, True, template=segments, compiled=compiled, location=child.path
        )
    if key == "path_separated_prefix" and (not text.startswith("/") or text.endswith("/")):
        child.error(f"path_separated_prefix {text!r} must start with '/' and not end with '/'")
        return None
    if key == "path" and not text:
        child.error("path must not be empty (use prefix: '/' to match every path)")
        return None
    kind = cast(m.PathMatchKind, key)
    value = text if case_sensitive else text.lower()
    return m.PathMatcher(kind, value, case_sensitive, location=child.path)


# ----------------------------------------------------------------------- routes

_MATCH_KEYS = (
    *_PATH_KEYS,
    "case_sensitive",
    "methods",
    "headers",
    "query_parameters",
    "jwt_claim",
    "grpc",
    "content_type",
    "graphql",
)


def _each(node: _Node | None, parse: Callable[[_Node], T | None]) -> tuple[T, ...] | None:
    if node is None:
        return ()
    items = _list(node)
    if items is None:
        return None
    parsed = [parse(item) for item in items]
    if any(p is None for p in parsed):
        return None
    return tuple(cast(list[T], parsed))


def _methods(node: _Node) -> frozenset[str] | None:
    items = _list(node, allow_empty=False)
    if items is None:
        return None
    out: set[str] = set()
    ok = True
    for item in items:
        method = _str(item, allow_empty=False)
        if method is None:
            ok = False
            continue
        if not set(method) <= _TOKEN_CHARS:
            item.error(f"invalid method {method!r}: methods are HTTP tokens")
            ok = False
        elif method.upper() in _STANDARD_METHODS and method != method.upper():
            item.error(f"methods are case-sensitive; did you mean {method.upper()!r}?")
            ok = False
        out.add(method)
    return frozenset(out) if ok else None


def _grpc(node: _Node) -> m.GrpcMatcher | None:
    if node.value is None:
        return m.GrpcMatcher(location=node.path)
    fields = _mapping(node, ("service", "method"))
    if fields is None:
        return None
    service = _str(fields["service"], allow_empty=False) if "service" in fields else None
    method = _str(fields["method"], allow_empty=False) if "method" in fields else None
    if ("service" in fields and service is None) or ("method" in fields and method is None):
        return None
    if method is not None and service is None:
        node.error("grpc.method needs grpc.service")
        return None
    for value, child_key in ((service, "service"), (method, "method")):
        if value is not None and ("/" in value or "?" in value):
            fields[child_key].error(f"{child_key} {value!r} must not contain '/' or '?'")
            return None
    return m.GrpcMatcher(service, method, node.path)


def _content_types(node: _Node) -> tuple[str, ...] | None:
    values = [node] if isinstance(node.value, str) else _list(node, allow_empty=False)
    if values is None:
        return None
    out = []
    for item in values:
        text = _str(item, allow_empty=False)
        if text is None:
            return None
        if ";" in text or "/" not in text:
            item.error(f"expected a media type like application/json (no parameters), got {text!r}")
            return None
        out.append(text.strip().lower())
    return tuple(out)


def _graphql(node: _Node) -> m.GraphqlMatcher | None:
    if node.value is None:
        return m.GraphqlMatcher(location=node.path)
    fields = _mapping(node, ("operation_type", "operation_name"))
    if fields is None:
        return None
    op_type = None
    if "operation_type" in fields:
        op_type = _choice(fields["operation_type"], ("query", "mutation", "subscription"))
        if op_type is None:
            return None
    op_name = None
    if "operation_name" in fields:
        child = fields["operation_name"]
        if isinstance(child.value, str):
            op_name = m.StringMatcher("exact", child.value)
        else:
            op_name = _string_matcher(child)
            if op_name is None:
                return None
    return m.GraphqlMatcher(cast(m.GraphqlOperationType | None, op_type), op_name, node.path)


def _route_match(node: _Node) -> m.RouteMatch | None:
    fields = _mapping(node, _MATCH_KEYS)
    if fields is None:
        return None
    path = _path_matcher(node, fields)
    methods = _methods(fields["methods"]) if "methods" in fields else None
    headers = _each(fields.get("headers"), _header_matcher)
    queries = _each(fields.get("query_parameters"), _query_matcher)
    claims = _each(fields.get("jwt_claim"), _claim_matcher)
    grpc = _grpc(fields["grpc"]) if "grpc" in fields else None
    content_type = _content_types(fields["content_type"]) if "content_type" in fields else ()
    graphql = _graphql(fields["graphql"]) if "graphql" in fields else None
    failed = (
        path is None
        or ("methods" in fields and methods is None)
        or headers is None
        or queries is None
        or claims is None
        or ("grpc" in fields and grpc is None)
        or content_type is None
        or ("graphql" in fields and graphql is None)
    )
    if failed:
        return None
    assert path is not None and headers is not None and queries is not None
    assert claims is not None and content_type is not None
    return m.RouteMatch(path, methods, headers, queries, claims, grpc, content_type, graphql)


def _weighted_clusters(node: _Node) -> tuple[m.WeightedCluster, ...] | None:
    items_node = node
    if isinstance(node.value, dict):
        fields = _mapping(node, ("clusters", "total_weight"), required=("clusters",))
        if fields is None or "clusters" not in fields:
            return None
        items_node = fields["clusters"]
    items = _list(items_node, allow_empty=False)
    if items is None:
        return None
    out = []
    for item in items:
        f = _mapping(item, ("name", "weight"), required=("name", "weight"))
        if f is None or "name" not in f or "weight" not in f:
            return None
        name, weight = _str(f["name"], allow_empty=False), _int(f["weight"], 0)
        if name is None or weight is None:
            return None
        out.append(m.WeightedCluster(name, weight))
    if sum(w.weight for w in out) <= 0:
        node.error("weighted_clusters needs at least one cluster with a weight above zero")
        return None
    return tuple(out)


_REWRITABLE = ("prefix", "path", "path_separated_prefix")
_ROUTE_ACTION_KEYS = (
    "cluster",
    "weighted_clusters",
    "timeout",
    "prefix_rewrite",
    "host_rewrite_literal",
)


def _forward_action(node: _Node, path: m.PathMatcher | None) -> m.ForwardAction | None:
    misplaced = [
        k
        for k in ("direct_response", "redirect")
        if isinstance(node.value, dict) and k in node.value
    ]
    if misplaced:
        node.child(misplaced[0]).error(
            f"{misplaced[0]} belongs beside route:, not inside it (as in Envoy)"
        )
        return None
    fields = _mapping(node, _ROUTE_ACTION_KEYS)
    if fields is None:
        return None
    if ("cluster" in fields) == ("weighted_clusters" in fields):
        node.error("route needs exactly one of cluster or weighted_clusters")
        return None
    cluster = weighted = None
    if "cluster" in fields:
        cluster = _str(fields["cluster"], allow_empty=False)
        if cluster is None:
            return None
    else:
        weighted = _weighted_clusters(fields["weighted_clusters"])
        if weighted is None:
            return None
    timeout: float | None = 15.0
    if "timeout" in fields:
        timeout = _duration(fields["timeout"])
        if timeout is None:
            return None
        timeout = timeout or None  # Envoy: 0s disables the timeout
    prefix_rewrite = None
    if "prefix_rewrite" in fields:
        prefix_rewrite = _str(fields["prefix_rewrite"])
        if prefix_rewrite is None:
            return None
        if path is not None and path.kind not in _REWRITABLE:
            fields["prefix_rewrite"].error(
                "prefix_rewrite needs a prefix, path or path_separated_prefix match"
            )
            return None
    host_rewrite = None
    if "host_rewrite_literal" in fields:
        host_rewrite = _str(fields["host_rewrite_literal"], allow_empty=False)
        if host_rewrite is None:
            return None
    return m.ForwardAction(cluster, weighted or (), timeout, prefix_rewrite, host_rewrite)


def _direct_response(node: _Node) -> m.DirectResponseAction | None:
    fields = _mapping(node, ("status", "body", "content_type"), required=("status",))
    if fields is None or "status" not in fields:
        return None
    status = _int(fields["status"], 200, 599)
    body = b""
    if "body" in fields:
        child = fields["body"]
        text: str | None
        if isinstance(child.value, dict):
            bf = _mapping(child, ("inline_string",), required=("inline_string",))
            text = _str(bf["inline_string"]) if bf and "inline_string" in bf else None
        else:
            text = _str(child)
        if text is None:
            return None
        body = text.encode("utf-8")
    content_type = "text/plain"
    if "content_type" in fields:
        ct = _str(fields["content_type"], allow_empty=False)
        if ct is None:
            return None
        content_type = ct
    if status is None:
        return None
    return m.DirectResponseAction(status, body, content_type)


def _redirect(node: _Node, path: m.PathMatcher | None) -> m.RedirectAction | None:
    keys = (
        "response_code",
        "scheme_redirect",
        "https_redirect",
        "host_redirect",
        "port_redirect",
        "path_redirect",
        "prefix_rewrite",
        "strip_query",
    )
    fields = _mapping(node, keys)
    if fields is None:
        return None
    ok = True
    code = 301
    if "response_code" in fields:
        child = fields["response_code"]
        if isinstance(child.value, str):
            choice = _choice(child, _REDIRECT_CODES)
            ok &= choice is not None
            code = _REDIRECT_CODES.get(choice or "", 301)
        elif not isinstance(child.value, int) or child.value not in (301, 302, 303, 307, 308):
            child.error(f"expected one of 301, 302, 303, 307, 308, got {_describe(child.value)}")
            ok = False
        else:
            code = child.value
    scheme = None
    if "scheme_redirect" in fields and "https_redirect" in fields:
        node.error("use one of scheme_redirect or https_redirect")
        ok = False
    elif "scheme_redirect" in fields:
        scheme = _choice(fields["scheme_redirect"], ("http", "https"))
        ok &= scheme is not None
    elif "https_redirect" in fields:
        flag = _bool(fields["https_redirect"])
        ok &= flag is not None
        scheme = "https" if flag else None
    host = _str(fields["host_redirect"], allow_empty=False) if "host_redirect" in fields else None
    ok &= host is not None or "host_redirect" not in fields
    port = _int(fields["port_redirect"], 1, 65535) if "port_redirect" in fields else None
    ok &= port is not None or "port_redirect" not in fields
    if "path_redirect" in fields and "prefix_rewrite" in fields:
        node.error("use one of path_redirect or prefix_rewrite")
        ok = False
    new_path = _str(fields["path_redirect"]) if "path_redirect" in fields else None
    ok &= new_path is not None or "path_redirect" not in fields
    prefix = None
    if "prefix_rewrite" in fields:
        prefix = _str(fields["prefix_rewrite"])
        ok &= prefix is not None
        if path is not None and path.kind not in _REWRITABLE:
            fields["prefix_rewrite"].error(
                "prefix_rewrite needs a prefix, path or path_separated_prefix match"
            )
            ok = False
    strip = _bool(fields["strip_query"]) if "strip_query" in fields else False
    ok &= strip is not None
    if not ok:
        return None
    return m.RedirectAction(code, scheme, host, port, new_path, prefix, bool(strip))


def _header_transform(
    fields: dict[str, _Node], add_key: str, remove_key: str
) -> m.HeaderTransform | None:
    adds: list[m.HeaderValueOption] = []
    removes: list[str] = []
    ok = True
    if add_key in fields:
        for item in _list(fields[add_key]) or []:
            f = _mapping(item, ("header", "append_action", "append"), required=("header",))
            if f is None or "header" not in f:
                ok = False
                continue
            hf = _mapping(f["header"], ("key", "value"), required=("key", "value"))
            if hf is None or "key" not in hf or "value" not in hf:
                ok = False
                continue
            name, value = _header_name(hf["key"]), _str(hf["value"])
            action: str | None = "append_if_exists_or_add"
            if "append_action" in f and "append" in f:
                item.error("use one of append_action or append")
                ok = False
            elif "append_action" in f:
                action = _choice(
                    f["append_action"],
                    ("APPEND_IF_EXISTS_OR_ADD", "ADD_IF_ABSENT", "OVERWRITE_IF_EXISTS_OR_ADD"),
                )
                action = action.lower() if action else None
            elif "append" in f:
                flag = _bool(f["append"])
                action = (
                    None
                    if flag is None
                    else ("append_if_exists_or_add" if flag else "overwrite_if_exists_or_add")
                )
            if name is None or value is None or action is None:
                ok = False
                continue
            if name.startswith(":") or name in ("host", "content-length", "transfer-encoding"):
                hf["key"].error(f"header {name!r} cannot be set by configuration")
                ok = False
                continue
            adds.append(m.HeaderValueOption(name, value, cast(m.AppendAction, action)))
        ok &= add_key not in fields or isinstance(fields[add_key].value, list)
    if remove_key in fields:
        items = _list(fields[remove_key])
        ok &= items is not None
        for item in items or []:
            name = _header_name(item)
            if name is None:
                ok = False
            else:
                removes.append(name)
    return m.HeaderTransform(tuple(adds), tuple(removes)) if ok else None


_ROUTE_KEYS = (
    "name",
    "match",
    "route",
    "direct_response",
    "redirect",
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
)


def _route(node: _Node) -> m.Route | None:
    fields = _mapping(node, _ROUTE_KEYS, required=("match",))
    if fields is None or "match" not in fields:
        return None
    name = _str(fields["name"], allow_empty=False) if "name" in fields else None
    match = _route_match(fields["match"])
    actions = [k for k in ("route", "direct_response", "redirect") if k in fields]
    if len(actions) != 1:
        node.error(
            "a route needs exactly one action: route, direct_response or redirect"
            + (f"; got {', '.join(actions)}" if actions else "")
        )
        return None
    req = _header_transform(fields, "request_headers_to_add", "request_headers_to_remove")
    resp = _header_transform(fields, "response_headers_to_add", "response_headers_to_remove")
    # Validate the action even when the match is invalid, so one run reports both.
    path = match.path if match is not None else None
    kind = actions[0]
    action: m.RouteAction | None
    if kind == "route":
        action = _forward_action(fields["route"], path)
    elif kind == "direct_response":
        action = _direct_response(fields["direct_response"])
    else:
        action = _redirect(fields["redirect"], path)
    if match is None or req is None or resp is None or ("name" in fields and name is None):
        return None
    if action is None:
        return None
    return m.Route(match, action, name, req, resp, node.path)


def _routes(node: _Node) -> tuple[m.Route, ...] | None:
    items = _list(node)
    if items is None:
        return None
    routes = [_route(item) for item in items]
    if any(r is None for r in routes):
        return None
    return tuple(cast(list[m.Route], routes))


def _domain(node: _Node) -> str | None:
    text = _str(node, allow_empty=False)
    if text is None:
        return None
    domain = text.lower()
    if domain != "*" and (domain.count("*") > 1 or ("*" in domain[1:-1])):
        node.error(f"domain {text!r}: a wildcard may only start or end a domain ('*.x', 'x.*')")
        return None
    if any(c.isspace() or c in "/?#@" for c in domain):
        node.error(f"domain {text!r} is not a host name")
        return None
    host, colon, port = domain.rpartition(":")
    if colon and port.isdigit() and not host.endswith(":"):
        node.error(
            f"domain {text!r}: domains are matched without the port (the Host's port is "
            f"ignored); write {host!r}"
        )
        return None
    return domain


def _virtual_host(node: _Node) -> m.VirtualHost | None:
    fields = _mapping(node, ("name", "domains", "routes"), required=("name", "domains", "routes"))
    if fields is None or not {"name", "domains", "routes"} <= fields.keys():
        return None
    name = _str(fields["name"], allow_empty=False)
    domains = _each(fields["domains"], _domain)
    if domains == ():
        fields["domains"].error("expected at least one domain ('*' for any)")
        domains = None
    routes = _routes(fields["routes"])
    if name is None or domains is None or routes is None:
        return None
    return m.VirtualHost(name, domains, routes, node.path)


# ------------------------------------------------------------------ clusters


def _host_port(node: _Node, what: str) -> tuple[str, int] | None:
    text = _str(node, allow_empty=False)
    if text is None:
        return None
    host, sep, port_text = text.rpartition(":")
    if not sep or not (port_text.isascii() and port_text.isdigit()) or not host:
        node.error(f"expected {what} as host:port (or [v6]:port), got {text!r}")
        return None
    port = int(port_text)
    if not 0 < port < 65536:
        node.error(f"port {port} is out of range 1-65535")
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            node.error(f"{host!r} is not an IPv6 address")
            return None
    elif ":" in host:
        node.error(f"an IPv6 address needs brackets: [{host}]:{port}")
        return None
    return host, port


def _endpoint(node: _Node) -> tuple[str, int, int] | None:
    """``"host:port"`` or ``{address: "host:port", weight: N}``."""
    if isinstance(node.value, dict):
        fields = _mapping(node, ("address", "weight"), required=("address",))
        if fields is None or "address" not in fields:
            return None
        address = _host_port(fields["address"], "an endpoint")
        weight = _int(fields["weight"], 1, 1_000_000) if "weight" in fields else 1
        if address is None or weight is None:
            return None
        return (*address, weight)
    address = _host_port(node, "an endpoint")
    return None if address is None else (*address, 1)


def _hash_on(node: _Node) -> tuple[str | None] | None:
    """``client_ip`` (the default) or ``{header: NAME}``: the ring_hash key."""
    if node.value == "client_ip":
        return (None,)
    if isinstance(node.value, dict):
        fields = _mapping(node, ("header",), required=("header",))
        if fields is None or "header" not in fields:
            return None
        name = _header_name(fields["header"])
        return None if name is None else (name,)
    node.error(f"expected client_ip or {{header: NAME}}, got {_describe(node.value)}")
    return None


def _cluster(name: str, node: _Node) -> m.Cluster | None:
    keys = (
        "endpoints",
        "protocol",
        "lb",
        "max_connections_per_host",
        "max_pending_requests",
        "connect_timeout",
        "idle_timeout",
        "hash_on",
    )
    fields = _mapping(node, keys, required=("endpoints",))
    if fields is None or "endpoints" not in fields:
        return None
    endpoints = _each(fields["endpoints"], _endpoint)
    if endpoints == ():
        fields["endpoints"].error("expected at least one endpoint")
        endpoints = None
    protocol = _choice(fields["protocol"], ("http1", "http2")) if "protocol" in fields else "http1"
    lb = (
        _choice(fields["lb"], ("round_robin", "least_request", "random", "ring_hash"))
        if "lb" in fields
        else "round_robin"
    )
    max_conn = (
        _int(fields["max_connections_per_host"], 1, 1_000_000)
        if "max_connections_per_host" in fields
        else 64
    )
    connect_timeout = (
        _duration(fields["connect_timeout"], allow_zero=False)
        if "connect_timeout" in fields
        else 1.0
    )
    max_pending = (
        _int(fields["max_pending_requests"], 1, 1_000_000)
        if "max_pending_requests" in fields
        else 1024
    )
    idle_timeout = (
        _duration(fields["idle_timeout"], allow_zero=False) if "idle_timeout" in fields else 60.0
    )
    hash_on = _hash_on(fields["hash_on"]) if "hash_on" in fields else (None,)
    if endpoints is None or protocol is None or lb is None or max_conn is None:
        return None
    if connect_timeout is None or max_pending is None or idle_timeout is None or hash_on is None:
        return None
    return m.Cluster(
        name,
        tuple(m.Endpoint(h, p, w) for h, p, w in endpoints),
        cast(m.UpstreamProtocol, protocol),
        cast(m.LbPolicy, lb),
        max_conn,
        connect_timeout,
        node.path,
        max_pending_requests=max_pending,
        idle_timeout=idle_timeout,
        hash_header=hash_on[0],
    )


def _clusters(node: _Node) -> dict[str, m.Cluster] | None:
    if not isinstance(node.value, dict):
        node.error(f"expected a mapping of cluster name to cluster, got {_describe(node.value)}")
        return None
    out: dict[str, m.Cluster] = {}
    ok = True
    for key in node.value:
        if not isinstance(key, str) or not key:
            node.error(f"cluster names must be non-empty strings, got {_describe(key)}")
            ok = False
            continue
        cluster = _cluster(key, node.child(key))
        if cluster is None:
            ok = False
        else:
            out[key] = cluster
    return out if ok else None


# ----------------------------------------------------------------- listeners


def _listener(node: _Node) -> m.Listener | None:
    fields = _mapping(
        node, ("name", "address", "protocols", "limits"), required=("name", "address")
    )
    if fields is None or "name" not in fields or "address" not in fields:
        return None
    name = _str(fields["name"], allow_empty=False)
    address = _host_port(fields["address"], "an address")
    protocols: tuple[str, ...] | None = ("http1", "h2c")
    if "protocols" in fields:
        protocols = _each(fields["protocols"], lambda n: _choice(n, ("http1", "h2c")))
        if protocols == ():
            fields["protocols"].error("expected at least one protocol")
            protocols = None
    limits: m.ListenerLimits | None = m.ListenerLimits()
    if "limits" in fields:
        limits = _limits(fields["limits"])
    if name is None or address is None or protocols is None or limits is None:
        return None
    return m.Listener(
        name,
        address[0],
        address[1],
        cast(tuple[m.ListenerProtocol, ...], protocols),
        limits,
        node.path,
    )


def _limits(node: _Node) -> m.ListenerLimits | None:
    keys = ("max_header_bytes", "max_body_bytes", "header_timeout", "idle_timeout")
    fields = _mapping(node, keys)
    if fields is None:
        return None
    base = m.ListenerLimits()
    values: dict[str, Any] = {}
    for key, child in fields.items():
        value = _size(child) if key.endswith("bytes") else _duration(child, allow_zero=False)
        if value is not None:
            values[key] = value
    if len(values) != len(fields):  # report every bad limit, not just the first
        return None
    return m.ListenerLimits(
        values.get("max_header_bytes", base.max_header_bytes),
        values.get("max_body_bytes", base.max_body_bytes),
        values.get("header_timeout", base.header_timeout),
        values.get("idle_timeout", base.idle_timeout),
    )


# ------------------------------------------------------------------ document


def _check_references(
    root: _Node, vhosts: tuple[m.VirtualHost, ...], clusters: Mapping[str, m.Cluster]
) -> None:
    known = sorted(clusters)
    for vh in vhosts:
        for route in vh.routes:
            action = route.action
            if not isinstance(action, m.ForwardAction):
                continue
            names = (
                [action.cluster] if action.cluster else [w.name for w in action.weighted_clusters]
            )
            where = "route.cluster" if action.cluster else "route.weighted_clusters"
            for name in names:
                if name is not None and name not in clusters:
                    close = difflib.get_close_matches(name, known, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    defined = (
                        f"; defined: {', '.join(known)}" if known else "; no clusters are defined"
                    )
                    position = _position_of(root, f"{route.location}.{where}")
                    root.ctx.report(
                        f"{route.location}.{where}",
                        position,
                        f"unknown cluster {name!r}{hint}{defined}",
                    )


def _position_of(root: _Node, path: str) -> Position | None:
    """Best-effort position of a key path like ``routes[2].route.cluster``."""
    node = root
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        key: str | int = int(part[1:-1]) if part.startswith("[") else part
        try:
            node = node.child(key)
        except (KeyError, IndexError, TypeError):
            break
    return node.position


def _check_domains(vh_nodes: list[_Node], vhosts: tuple[m.VirtualHost, ...]) -> None:
    seen: dict[str, str] = {}
    for node, vh in zip(vh_nodes, vhosts, strict=True):
        for domain in vh.domains:
            if domain in seen:
                node.child("domains").error(
                    f"domain {domain!r} is already used by virtual host {seen[domain]!r}"
                )
            else:
                seen[domain] = vh.name


def _build(located: Located) -> m.GatewayConfig:
    ctx = _Context(located)
    root = _Node(located.data, "", located.root, ctx)
    if located.data is None:
        root.error("the config is empty; expected a mapping with routes or virtual_hosts")
        raise ConfigError(ctx.issues)
    fields = _mapping(root, ("listeners", "clusters", "routes", "virtual_hosts"))
    if fields is None:
        raise ConfigError(ctx.issues)

    vhosts: tuple[m.VirtualHost, ...] | None = ()
    if "routes" in fields and "virtual_hosts" in fields:
        root.error(
            "use either top-level routes (one virtual host for every domain) or virtual_hosts"
        )
        vhosts = None
    elif "routes" in fields:
        routes = _routes(fields["routes"])
        vhosts = None if routes is None else (m.VirtualHost("default", ("*",), routes, ""),)
    elif "virtual_hosts" in fields:
        vh_nodes = _list(fields["virtual_hosts"]) or []
        parsed = [_virtual_host(n) for n in vh_nodes]
        if all(v is not None for v in parsed) and isinstance(fields["virtual_hosts"].value, list):
            vhosts = tuple(cast(list[m.VirtualHost], parsed))
            _check_domains(vh_nodes, vhosts)
            names = [v.name for v in vhosts]
            for node, name in zip(vh_nodes, names, strict=True):
                if names.count(name) > 1:
                    node.child("name").error(f"virtual host name {name!r} is used more than once")
        else:
            vhosts = None

    clusters: dict[str, m.Cluster] | None = {}
    if "clusters" in fields and fields["clusters"].value is not None:
        clusters = _clusters(fields["clusters"])

    listeners: tuple[m.Listener, ...] | None = ()
    if "listeners" in fields:
        listeners = _each(fields["listeners"], _listener)
        if listeners:
            names = [ln.name for ln in listeners]
            for i, name in enumerate(names):
                if names.index(name) != i:
                    fields["listeners"].child(i).error(
                        f"listener name {name!r} is used more than once"
                    )

    if vhosts is not None and clusters is not None:
        _check_references(root, vhosts, clusters)
    if ctx.issues or vhosts is None or clusters is None or listeners is None:
        if not ctx.issues:  # defensive: every None above reported an issue
            root.error("invalid config")
        raise ConfigError(ctx.issues)
    return m.GatewayConfig(
        virtual_hosts=vhosts,
        clusters=types.MappingProxyType(clusters),
        listeners=listeners,
        source=located.source,
    )
