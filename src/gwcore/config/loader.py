"""Validate a YAML document or a mapping into :class:`GatewayConfig`.

Validation keeps going after the first problem so one run reports every error,
each with its file, line and key path. Nothing here raises anything but
:class:`ConfigError` for a bad config.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from gwcore.config import model as m
from gwcore.config.errors import ConfigError, ConfigIssue
from gwcore.config.patterns import compile_regex, parse_path_template, template_regex
from gwcore.config.source import Located, Position, YamlSyntaxError, parse_yaml
from gwcore.config.templates import parse_template
from gwcore.config.units import parse_duration, parse_size
from gwcore.policy.jwks import (
    ALGORITHMS_BY_KTY,
    HMAC_MIN_BYTES,
    SUPPORTED_ALGORITHMS,
    JwksError,
    JwksKeySet,
)

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


def load_config_file(path: str | Path, *, apps_as_clusters: bool = False) -> m.GatewayConfig:
    """Read and validate a YAML config file. Raises :class:`ConfigError` (located).

    Relative paths inside the config (``jwks: {file: ...}``) are relative to the
    directory of the config file. With ``apps_as_clusters`` (the ASGI middleware) a
    route may name a cluster that ``clusters:`` does not declare: the name is an
    application's, supplied by the caller.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue(source, "", f"cannot read config: {exc.strerror}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(source, "", f"config is not UTF-8: {exc.reason}")]) from None
    return load_config_text(
        text, source, base_dir=Path(path).parent, apps_as_clusters=apps_as_clusters
    )


def load_config_text(
    text: str,
    source: str = "<string>",
    *,
    base_dir: str | Path | None = None,
    apps_as_clusters: bool = False,
) -> m.GatewayConfig:
    """Validate YAML text. ``source`` names it in error messages.

    Relative paths inside the config are relative to ``base_dir`` (default: the
    current directory). ``apps_as_clusters``: as for :func:`load_config_file`.
    """
    try:
        located = parse_yaml(text, source)
    except YamlSyntaxError as exc:
        line, col = exc.position if exc.position else (None, None)
        raise ConfigError([ConfigIssue(source, "", exc.message, line, col)]) from None
    return _build(located, base_dir, apps_as_clusters)


def load_config(
    data: Mapping[str, Any],
    source: str = "<dict>",
    *,
    base_dir: str | Path | None = None,
    apps_as_clusters: bool = False,
) -> m.GatewayConfig:
    """Validate a mapping shaped like the YAML document (no line numbers in errors).

    Relative paths inside the config are relative to ``base_dir`` (default: the
    current directory). ``apps_as_clusters``: as for :func:`load_config_file`.
    """
    return _build(Located(data=data, source=source), base_dir, apps_as_clusters)


# --------------------------------------------------------------------------- cursor


class _Context:
    def __init__(self, located: Located, base_dir: Path) -> None:
        self.located = located
        self.issues: list[ConfigIssue] = []
        # Relative file references (jwks.file) are resolved against this directory.
        self.base_dir = base_dir
        # Names declared under jwt_providers / rate_limits (valid or not: a reference
        # to a declared but invalid entry is not reported a second time), and the
        # entries that validated.
        self.provider_names: list[str] = []
        self.rate_limit_names: list[str] = []
        self.rate_limits: dict[str, m.RateLimit] = {}

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
    node: _Node,
    allowed: Iterable[str],
    required: Iterable[str] = (),
    misplaced: Mapping[str, str] | None = None,
) -> dict[str, _Node] | None:
    """Check a mapping's keys; return its children by key, or None if not a mapping.

    ``misplaced`` maps keys that are valid elsewhere to the error that says where
    they belong (instead of "unknown key").
    """
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
        if misplaced and key in misplaced:
            child.error(misplaced[key])
            continue
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


# Headers the gateway itself manages: configuration may not add, set or rename them.
_MANAGED_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})
_MANAGED_WHY = (
    "pseudo-headers, host, content-length and transfer-encoding are managed by the gateway"
)


def _is_managed(name: str) -> bool:
    return name.startswith(":") or name in _MANAGED_HEADERS


def _target_header(node: _Node, verb: str = "set") -> str | None:
    """A header name that configuration may write (add, set, rename to/from)."""
    name = _header_name(node)
    if name is None:
        return None
    if _is_managed(name):
        node.error(f"header {name!r} cannot be {verb} by configuration ({_MANAGED_WHY})")
        return None
    return name


def _header_value(node: _Node, claims_ok: bool) -> tuple[str, tuple[m.TemplatePart, ...]] | None:
    """A header value and its template (``%CLIENT_IP%``, ``%CLAIM(a.b)%``, ...)."""
    text = _str(node)
    if text is None:
        return None
    try:
        template = parse_template(text)
    except ValueError as exc:
        node.error(f"invalid header value {text!r}: {exc}")
        return None
    if not claims_ok:
        claim = next((p for p in template if p.kind == "claim"), None)
        if claim is not None:
            node.error(
                f"%CLAIM({'.'.join(claim.path)})% needs verified claims, but this route has no "
                "jwt policy (add policy: {jwt: PROVIDER})"
            )
            return None
    return text, template


def _envoy_header_adds(node: _Node, claims_ok: bool) -> list[m.HeaderValueOption] | None:
    """Envoy's ``*_headers_to_add``: a list of ``{header: {key, value}, append_action}``."""
    items = _list(node)
    if items is None:
        return None
    adds: list[m.HeaderValueOption] = []
    ok = True
    for item in items:
        f = _mapping(item, ("header", "append_action", "append"), required=("header",))
        if f is None or "header" not in f:
            ok = False
            continue
        hf = _mapping(f["header"], ("key", "value"), required=("key", "value"))
        if hf is None or "key" not in hf or "value" not in hf:
            ok = False
            continue
        name, value = _header_name(hf["key"]), _header_value(hf["value"], claims_ok)
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
        if _is_managed(name):
            hf["key"].error(f"header {name!r} cannot be set by configuration")
            ok = False
            continue
        adds.append(m.HeaderValueOption(name, value[0], cast(m.AppendAction, action), value[1]))
    return adds if ok else None


def _header_names(node: _Node) -> list[str] | None:
    items = _list(node)
    if items is None:
        return None
    names = [_header_name(item) for item in items]
    if any(n is None for n in names):
        return None
    return cast(list[str], names)


def _string_keyed(node: _Node, what: str) -> list[tuple[str, _Node]] | None:
    """The entries of a mapping whose keys are names (headers, claims, providers...)."""
    if not isinstance(node.value, dict):
        node.error(f"expected a mapping of {what}, got {_describe(node.value)}")
        return None
    out: list[tuple[str, _Node]] = []
    ok = True
    for key in node.value:
        if not isinstance(key, str) or not key:
            node.error(f"expected {what}; keys must be non-empty strings, got {_describe(key)}")
            ok = False
            continue
        out.append((key, node.child(key)))
    return out if ok else None


def _named_values(
    node: _Node, claims_ok: bool, action: m.AppendAction, *, allow_list: bool
) -> list[tuple[_Node, m.HeaderValueOption]] | None:
    """``{name: value, ...}`` (or, with ``allow_list``, ``[{name, value}, ...]``)."""
    entries: list[tuple[_Node, _Node]] = []  # (name node, value node)
    if allow_list and isinstance(node.value, list):
        items = _list(node) or []
        ok = True
        for item in items:
            f = _mapping(item, ("name", "value"), required=("name", "value"))
            if f is None or "name" not in f or "value" not in f:
                ok = False
                continue
            entries.append((f["name"], f["value"]))
        if not ok:
            return None
    else:
        pairs = _string_keyed(
            node,
            "header name to value" + (" (or a list of {name, value})" if allow_list else ""),
        )
        if pairs is None:
            return None
        # The name's own node: its value is the key text, positioned at the value.
        entries = [
            (_Node(key, child.path, child.position, child.ctx), child) for key, child in pairs
        ]
    out: list[tuple[_Node, m.HeaderValueOption]] = []
    ok = True
    for name_node, value_node in entries:
        name = _target_header(name_node)
        value = _header_value(value_node, claims_ok)
        if name is None or value is None:
            ok = False
            continue
        out.append((name_node, m.HeaderValueOption(name, value[0], action, value[1])))
    return out if ok else None


def _renames(node: _Node) -> list[tuple[str, str]] | None:
    pairs = _string_keyed(node, "old header name to new header name")
    if pairs is None:
        return None
    out: list[tuple[str, str]] = []
    targets: dict[str, str] = {}
    ok = True
    for key, child in pairs:
        old = _target_header(_Node(key, child.path, child.position, child.ctx), "renamed")
        new = _target_header(child, "renamed")
        if old is None or new is None:
            ok = False
            continue
        if old == new:
            child.error(f"header {old!r} is renamed to itself")
            ok = False
        elif new in targets:
            child.error(
                f"both {targets[new]!r} and {old!r} are renamed to {new!r}; "
                "the second would replace the first"
            )
            ok = False
        else:
            targets[new] = old
            out.append((old, new))
    return out if ok else None


_TRANSFORM_KEYS = ("add", "set", "remove", "rename")


def _header_transform(
    fields: dict[str, _Node], side: str, claims_ok: bool = True
) -> m.HeaderTransform | None:
    """The ``{side}_headers`` block merged with Envoy's ``{side}_headers_to_add`` and
    ``{side}_headers_to_remove`` (``side`` is ``request`` or ``response``).

    Adds apply in order: the Envoy-style entries, then ``set`` (overwrite), then
    ``add`` (append). ``claims_ok`` false makes ``%CLAIM(...)%`` an error (the route
    verifies no JWT).
    """
    ok = True
    adds: list[m.HeaderValueOption] = []
    removes: list[str] = []
    renames: list[tuple[str, str]] = []
    envoy_add, envoy_remove = f"{side}_headers_to_add", f"{side}_headers_to_remove"
    if envoy_add in fields:
        found = _envoy_header_adds(fields[envoy_add], claims_ok)
        ok &= found is not None
        adds += found or []
    if envoy_remove in fields:
        names = _header_names(fields[envoy_remove])
        ok &= names is not None
        removes += names or []
    block_key = f"{side}_headers"
    if block_key in fields:
        block = _mapping(fields[block_key], _TRANSFORM_KEYS)
        if block is None:
            return None
        sets = added = None
        if "set" in block:
            sets = _named_values(
                block["set"], claims_ok, "overwrite_if_exists_or_add", allow_list=False
            )
            ok &= sets is not None
        if "add" in block:
            added = _named_values(
                block["add"], claims_ok, "append_if_exists_or_add", allow_list=True
            )
            ok &= added is not None
        seen_set: set[str] = set()
        for name_node, option in sets or []:
            if option.name in seen_set:
                name_node.error(f"header {option.name!r} is set twice (names ignore case)")
                ok = False
            seen_set.add(option.name)
        for name_node, option in added or []:
            if option.name in seen_set:
                name_node.error(
                    f"header {option.name!r} is both set and added; set replaces the header "
                    "and add appends a value: use one of them"
                )
                ok = False
        adds += [option for _, option in (sets or [])]
        adds += [option for _, option in (added or [])]
        if "remove" in block:
            names = _header_names(block["remove"])
            ok &= names is not None
            removes += names or []
        if "rename" in block:
            found_renames = _renames(block["rename"])
            ok &= found_renames is not None
            renames += found_renames or []
    if not ok:
        return None
    return m.HeaderTransform(tuple(adds), tuple(removes), tuple(renames))


_TRANSFORM_FIELDS = (
    "request_headers",
    "response_headers",
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
)
_ROUTE_KEYS = (
    "name",
    "match",
    "route",
    "direct_response",
    "redirect",
    "policy",
    *_TRANSFORM_FIELDS,
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
    policy: m.RoutePolicy | None = m.RoutePolicy()
    if "policy" in fields:
        policy = _policy(fields["policy"])
    # %CLAIM(...)% needs a verified token; when the policy is invalid, don't pile on.
    claims_ok = policy is None or policy.jwt is not None
    req = _header_transform(fields, "request", claims_ok)
    resp = _header_transform(fields, "response", claims_ok)
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
    if action is None or policy is None:
        return None
    return m.Route(match, action, name, req, resp, node.path, policy)


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
    fields = _mapping(
        node,
        ("name", "domains", "routes", *_TRANSFORM_FIELDS),
        required=("name", "domains", "routes"),
    )
    if fields is None or not {"name", "domains", "routes"} <= fields.keys():
        return None
    name = _str(fields["name"], allow_empty=False)
    domains = _each(fields["domains"], _domain)
    if domains == ():
        fields["domains"].error("expected at least one domain ('*' for any)")
        domains = None
    routes = _routes(fields["routes"])
    req = _header_transform(fields, "request")
    resp = _header_transform(fields, "response")
    if name is None or domains is None or routes is None or req is None or resp is None:
        return None
    return m.VirtualHost(name, domains, routes, node.path, req, resp)


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
    elif endpoints:
        seen: dict[tuple[str, int], int] = {}
        for index, (host, port, _weight) in enumerate(endpoints):
            if (host, port) in seen:
                fields["endpoints"].child(index).error(
                    f"endpoint {host}:{port} is already endpoints[{seen[host, port]}]; "
                    "give it a weight instead of listing it twice"
                )
                endpoints = None
                break
            seen[host, port] = index
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


# -------------------------------------------------------------------- policy

_HMAC_ALGORITHMS = tuple(HMAC_MIN_BYTES)
# Every algorithm the verifier supports, in the order error messages list them.
_JWT_ORDER = ("HS", "RS", "PS", "ES", "Ed")
_JWT_ALGORITHMS = tuple(
    sorted(SUPPORTED_ALGORITHMS, key=lambda a: (_JWT_ORDER.index(a[:2]), len(a), a))
)
_DEFAULT_ALGORITHMS: tuple[str, ...] = cast(
    tuple[str, ...], m.JwtProvider.__dataclass_fields__["algorithms"].default
)
_MAX_JWKS_BYTES = 1 << 20
_MAX_CLOCK_SKEW = 3600.0
_MAX_TOKEN_BYTES = 64 * 1024
_MAX_CACHE_ENTRIES = 10_000_000
_MAX_REQUIREMENT_DEPTH = 8
_JWT_PROVIDER_KEYS = (
    "issuer",
    "audiences",
    "algorithms",
    "jwks",
    "clock_skew",
    "from",
    "forward",
    "claims_to_headers",
    "required_claims",
    "max_token_bytes",
    "cache_size",
    "realm",
)


def _unknown_name(node: _Node, name: str, known: list[str], what: str, section: str) -> None:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    defined = f"; defined: {', '.join(sorted(known))}" if known else f"; no {section} are defined"
    node.error(f"unknown {what} {name!r}{hint}{defined}")


def _declared_names(node: _Node | None) -> list[str]:
    if node is None or not isinstance(node.value, dict):
        return []
    return [k for k in node.value if isinstance(k, str) and k]


def _named_sections(
    node: _Node, what: str, parse: Callable[[str, _Node], T | None]
) -> dict[str, T] | None:
    """A mapping of NAME to a definition (``jwt_providers``, ``rate_limits``)."""
    pairs = _string_keyed(node, f"{what} name to {what}")
    if pairs is None:
        return None
    out: dict[str, T] = {}
    ok = True
    for key, child in pairs:
        parsed = parse(key, child)
        if parsed is None:
            ok = False
        else:
            out[key] = parsed
    return out if ok else None


def _claim_path_text(node: _Node) -> tuple[str, ...] | None:
    """A claim name where dots separate nested objects: ``tenant.id``."""
    name = _str(node, allow_empty=False)
    if name is None:
        return None
    path = tuple(name.split("."))
    if "" in path:
        node.error(
            f"invalid claim name {name!r}: empty part between dots (use a path list for "
            "claim names that contain dots)"
        )
        return None
    return path


def _claim_path_list(node: _Node) -> tuple[str, ...] | None:
    """A claim path as a list of names, each taken literally (dots and all)."""
    items = _list(node, allow_empty=False)
    if items is None:
        return None
    parts = [_str(item, allow_empty=False) for item in items]
    if any(p is None for p in parts):
        return None
    return tuple(cast(list[str], parts))


def _one_of(node: _Node, fields: dict[str, _Node], keys: tuple[str, ...], what: str) -> str | None:
    present = [k for k in keys if k in fields]
    if len(present) != 1:
        listed = ", ".join(keys[:-1]) + f" or {keys[-1]}"
        got = f"; got {', '.join(present)}" if present else ""
        node.error(f"{what} needs exactly one of {listed}{got}")
        return None
    return present[0]


def _bounded_duration(
    node: _Node, *, allow_zero: bool = True, maximum: float | None = None
) -> float | None:
    seconds = _duration(node, allow_zero=allow_zero)
    if seconds is not None and not math.isfinite(seconds):
        node.error(f"duration {node.value!r} is too large")
        return None
    if seconds is not None and maximum is not None and seconds > maximum:
        node.error(f"expected at most {maximum:g}s, got {node.value!r} ({seconds:g}s)")
        return None
    return seconds


def _str_list(node: _Node, *, single: bool = False, allow_empty: bool = True) -> list[str] | None:
    """A list of non-empty strings (with ``single``, one string is a list of one)."""
    if single and isinstance(node.value, str):
        text = _str(node, allow_empty=False)
        return None if text is None else [text]
    items = _list(node, allow_empty=allow_empty)
    if items is None:
        return None
    values = [_str(item, allow_empty=False) for item in items]
    if any(v is None for v in values):
        return None
    return cast(list[str], values)


# ------------------------------------------------------------------- JWKS


def _json_copy(value: Any, where: str, depth: int = 0) -> Any:
    """A fresh plain-JSON copy of ``value``; ValueError names the first non-JSON part."""
    if depth > 64:
        raise ValueError(f"{where or 'the document'} is nested too deeply")
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}, which JSON cannot represent")
        return value
    if isinstance(value, list):
        return [_json_copy(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where or 'the document'} has a key that is {_describe(key)}")
            out[key] = _json_copy(item, f"{where}.{key}" if where else key, depth + 1)
        return out
    raise ValueError(f"{where or 'the document'} is {_describe(value)}, not a JSON value")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_text(text: str) -> Any:
    """Parse JSON text; ValueError with a short reason (never the text itself)."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ValueError("not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None


def _jwks_problem(document: Any, algorithms: tuple[str, ...] | None) -> str | None:
    """What is wrong with a JWKS document, or None. Never quotes key material."""
    if not isinstance(document, dict):
        return f'the JWKS must be a JSON object {{"keys": [...]}}, got {_describe(document)}'
    keys = document.get("keys")
    if not isinstance(keys, list):
        got = "it has none" if keys is None else f"got {_describe(keys)}"
        return f'the JWKS must have a "keys" list; {got}'
    if not keys:
        return "the JWKS has no keys, so it can verify no token"
    for index, key in enumerate(keys):
        if not isinstance(key, dict):
            return f"keys[{index}] must be a JSON object (a JWK), got {_describe(key)}"
        kty = key.get("kty")
        if not isinstance(kty, str) or not kty:
            return f'keys[{index}] has no "kty" (key type: RSA, EC, OKP or oct)'
    if algorithms is None:
        return None
    allowed = frozenset(algorithms)
    for key in keys:
        fits = ALGORITHMS_BY_KTY.get(key["kty"], frozenset()) & allowed
        alg = key.get("alg")
        if key.get("use", "sig") == "sig" and fits and (alg is None or str(alg) in fits):
            # The shape is right: the key set parser has the last word (key sizes,
            # private material, duplicate kids, curves), exactly as it will at runtime.
            try:
                JwksKeySet.parse(document, algorithms)
            except JwksError as exc:
                return str(exc)
            return None
    types_held = ", ".join(sorted({str(key["kty"]) for key in keys}))
    return (
        f"no key in the JWKS can verify {', '.join(algorithms)} tokens (it holds {types_held} "
        "keys; RS*/PS* need RSA keys, ES* EC keys, EdDSA OKP keys, HS* oct keys, and a key's "
        "alg and use, when given, must fit)"
    )


def _jwks_inline(node: _Node, algorithms: tuple[str, ...] | None) -> m.JwksSource | None:
    value = node.value
    try:
        if isinstance(value, str):
            if len(value.encode("utf-8", "surrogatepass")) > _MAX_JWKS_BYTES:
                raise ValueError("the inline JWKS is bigger than 1 MiB")
            document = _json_text(value)
        elif isinstance(value, dict):
            document = _json_copy(value, "")
        else:
            node.error(
                "expected the JWKS itself, as a mapping {keys: [...]} or as JSON text, got "
                + _describe(value)
            )
            return None
    except ValueError as exc:
        node.error(f"invalid inline JWKS: {exc}")
        return None
    problem = _jwks_problem(document, algorithms)
    if problem is not None:
        node.error(f"invalid inline JWKS: {problem}")
        return None
    return m.JwksSource("inline", document=document)


def _jwks_file(node: _Node, algorithms: tuple[str, ...] | None) -> m.JwksSource | None:
    name = _str(node, allow_empty=False)
    if name is None:
        return None
    if "\0" in name:
        node.error("a file name cannot contain a NUL character")
        return None
    path = Path(name)
    if not path.is_absolute():
        path = node.ctx.base_dir / path
    shown = str(path)
    try:
        if not path.exists():
            node.error(f"JWKS file {shown} does not exist")
            return None
        if not path.is_file():
            node.error(f"JWKS file {shown} is not a regular file")
            return None
        with path.open("rb") as stream:
            data = stream.read(_MAX_JWKS_BYTES + 1)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        node.error(f"cannot read JWKS file {shown}: {reason}")
        return None
    if len(data) > _MAX_JWKS_BYTES:
        node.error(f"JWKS file {shown} is bigger than 1 MiB; a key set is a few KiB")
        return None
    try:
        document = _json_text(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        node.error(f"JWKS file {shown} is not UTF-8: {exc.reason} at byte {exc.start}")
        return None
    except ValueError as exc:
        node.error(f"JWKS file {shown} is {exc}")
        return None
    problem = _jwks_problem(document, algorithms)
    if problem is not None:
        node.error(f"JWKS file {shown}: {problem}")
        return None
    return m.JwksSource("file", document=document, path=shown)


def _jwks_uri(node: _Node) -> str | None:
    text = _str(node, allow_empty=False)
    if text is None:
        return None
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        node.error(f"URI {text!r} contains spaces or control characters")
        return None
    try:
        parts = urlsplit(text)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as exc:
        node.error(f"invalid URI {text!r}: {exc}")
        return None
    if parts.scheme not in ("https", "http"):
        node.error(f"expected an https:// URI (http:// is accepted for tests), got {text!r}")
        return None
    if not host:
        node.error(f"URI {text!r} has no host")
        return None
    if parts.username is not None or parts.password is not None:
        node.error(f"URI {text!r} must not carry credentials (user:password@)")
        return None
    if parts.fragment:
        node.error(f"URI {text!r} must not have a fragment (#...)")
        return None
    return text


_REMOTE_JWKS_DURATIONS = {
    # key: (default, zero allowed)
    "cache_duration": (300.0, False),
    "timeout": (5.0, False),
    "max_stale": (3600.0, True),
    "retry_interval": (10.0, False),
    "refetch_cooldown": (30.0, False),
}


def _jwks_remote(node: _Node) -> m.JwksSource | None:
    fields = _mapping(node, ("uri", *_REMOTE_JWKS_DURATIONS, "unavailable_status"), ("uri",))
    if fields is None:
        return None
    ok = True
    uri = _jwks_uri(fields["uri"]) if "uri" in fields else None
    ok &= uri is not None
    durations: dict[str, float] = {}
    for key, (default, zero_ok) in _REMOTE_JWKS_DURATIONS.items():
        if key not in fields:
            durations[key] = default
            continue
        seconds = _bounded_duration(fields[key], allow_zero=zero_ok)
        if seconds is None:
            ok = False
        else:
            durations[key] = seconds
    status = 503
    if "unavailable_status" in fields:
        found = _int(fields["unavailable_status"], 500, 599)
        ok &= found is not None
        status = found or status
    if not ok or uri is None:
        return None
    return m.JwksSource(
        "remote",
        uri=uri,
        cache_duration=durations["cache_duration"],
        timeout=durations["timeout"],
        max_stale=durations["max_stale"],
        retry_interval=durations["retry_interval"],
        refetch_cooldown=durations["refetch_cooldown"],
        unavailable_status=status,
    )


def _jwks(node: _Node, algorithms: tuple[str, ...] | None) -> m.JwksSource | None:
    fields = _mapping(node, ("inline", "file", "remote"))
    if fields is None:
        return None
    kind = _one_of(
        node,
        fields,
        ("inline", "file", "remote"),
        "jwks (the provider's signing keys: the key set itself, a JSON file or a URI)",
    )
    if kind == "inline":
        return _jwks_inline(fields[kind], algorithms)
    if kind == "file":
        return _jwks_file(fields[kind], algorithms)
    if kind == "remote":
        if algorithms and all(a in _HMAC_ALGORITHMS for a in algorithms):
            fields[kind].error(
                f"{', '.join(algorithms)} verify with a shared secret, which a remote JWKS "
                "cannot supply (a secret published at a URL has leaked): use inline or file"
            )
            return None
        return _jwks_remote(fields[kind])
    return None


# ------------------------------------------------------------- JWT providers


def _algorithms(node: _Node) -> tuple[str, ...] | None:
    items = _list(node, allow_empty=False)
    if items is None:
        return None
    out: list[str] = []
    ok = True
    for item in items:
        text = _str(item, allow_empty=False)
        if text is None:
            ok = False
        elif text.lower() == "none":
            item.error(
                "the none algorithm is never accepted: an unsigned token proves nothing "
                "about who made it"
            )
            ok = False
        elif text not in _JWT_ALGORITHMS:
            folded = {a.lower(): a for a in _JWT_ALGORITHMS}
            close = [folded[text.lower()]] if text.lower() in folded else []
            close = close or difflib.get_close_matches(text, _JWT_ALGORITHMS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            item.error(
                f"unknown JWT algorithm {text!r}{hint}; expected one of "
                f"{', '.join(_JWT_ALGORITHMS)}"
            )
            ok = False
        elif text in out:
            item.error(f"algorithm {text!r} is listed twice")
            ok = False
        else:
            out.append(text)
    if not ok:
        return None
    hmac = [a for a in out if a in _HMAC_ALGORITHMS]
    public = [a for a in out if a not in _HMAC_ALGORITHMS]
    if hmac and public:
        node.error(
            f"{', '.join(hmac)} (a shared secret) cannot be mixed with {', '.join(public)} "
            "(public keys) in one provider: a verifier that accepts both can be tricked into "
            "using a public key as an HMAC secret (key confusion); use two providers"
        )
        return None
    return tuple(out)


def _token_source(node: _Node) -> m.TokenSource | None:
    fields = _mapping(node, ("header", "prefix", "query", "cookie"))
    if fields is None:
        return None
    kind = _one_of(node, fields, ("header", "query", "cookie"), "a token source")
    if kind is None:
        return None
    if "prefix" in fields and kind != "header":
        fields["prefix"].error(f"prefix applies to a header token source, not {kind}")
        return None
    if kind == "header":
        name = _header_name(fields["header"])
        prefix = ""
        if "prefix" in fields:
            found = _str(fields["prefix"], allow_empty=False)
            if found is not None and not set(found) <= _TOKEN_CHARS:
                fields["prefix"].error(
                    f"prefix {found!r} must be an authentication scheme like Bearer (one "
                    "word; the token follows it after a space)"
                )
                found = None
            if found is None:
                return None
            prefix = found
        if name is None:
            return None
        if name.startswith(":"):
            fields["header"].error(f"a token cannot come from the pseudo-header {name!r}")
            return None
        return m.TokenSource("header", name, prefix)
    child = fields[kind]
    text = _str(child, allow_empty=False)
    if text is None:
        return None
    if kind == "cookie" and not set(text) <= _TOKEN_CHARS:
        child.error(f"invalid cookie name {text!r}: cookie names are HTTP tokens")
        return None
    return m.TokenSource(cast(m.TokenSourceKind, kind), text)


def _claim_to_header(node: _Node) -> m.ClaimToHeader | None:
    fields = _mapping(node, ("claim", "path", "header"), required=("header",))
    if fields is None:
        return None
    kind = _one_of(node, fields, ("claim", "path"), "claims_to_headers entry")
    path = None
    if kind == "claim":
        path = _claim_path_text(fields["claim"])
    elif kind == "path":
        path = _claim_path_list(fields["path"])
    header = _target_header(fields["header"]) if "header" in fields else None
    if path is None or header is None:
        return None
    return m.ClaimToHeader(path, header)


def _realm(node: _Node) -> str | None:
    text = _str(node, allow_empty=False)
    if text is None:
        return None
    bad = next((ch for ch in text if ch in '"\\' or not " " <= ch <= "~"), None)
    if bad is not None:
        node.error(
            f"realm {text!r} cannot contain {bad!r}: it is sent inside a quoted string in "
            "WWW-Authenticate (printable ASCII without quotes or backslashes)"
        )
        return None
    return text


def _jwt_provider(name: str, node: _Node) -> m.JwtProvider | None:
    fields = _mapping(node, _JWT_PROVIDER_KEYS, required=("issuer", "jwks"))
    if fields is None:
        return None
    values: dict[str, Any] = {}
    ok = True

    def put(key: str, value: Any) -> None:
        nonlocal ok
        if value is None:
            ok = False
        else:
            values[key] = value

    issuer = _str(fields["issuer"], allow_empty=False) if "issuer" in fields else None
    ok &= issuer is not None
    algorithms: tuple[str, ...] | None = _DEFAULT_ALGORITHMS
    if "algorithms" in fields:
        algorithms = _algorithms(fields["algorithms"])
        put("algorithms", algorithms)
    jwks = _jwks(fields["jwks"], algorithms) if "jwks" in fields else None
    ok &= jwks is not None
    if "audiences" in fields:
        audiences = _str_list(fields["audiences"], single=True)
        put("audiences", None if audiences is None else tuple(audiences))
    if "clock_skew" in fields:
        put("clock_skew", _bounded_duration(fields["clock_skew"], maximum=_MAX_CLOCK_SKEW))
    if "from" in fields:
        sources = _each(fields["from"], _token_source)
        if sources == ():
            fields["from"].error(
                "expected at least one token source (the default is the Authorization header "
                "with the Bearer scheme)"
            )
            sources = None
        put("sources", sources)
    if "forward" in fields:
        put("forward", _bool(fields["forward"]))
    if "claims_to_headers" in fields:
        copies = _each(fields["claims_to_headers"], _claim_to_header)
        if copies:
            seen: dict[str, str] = {}
            for index, copy in enumerate(copies):
                claim = ".".join(copy.path)
                if copy.header in seen:
                    fields["claims_to_headers"].child(index).error(
                        f"header {copy.header!r} already receives claim {seen[copy.header]!r}"
                    )
                    copies = None
                    break
                seen[copy.header] = claim
        put("claims_to_headers", copies)
    if "required_claims" in fields:
        required = _str_list(fields["required_claims"])
        put("required_claims", None if required is None else tuple(dict.fromkeys(required)))
    if "max_token_bytes" in fields:
        size = _size(fields["max_token_bytes"])
        if size is not None and not 1 <= size <= _MAX_TOKEN_BYTES:
            fields["max_token_bytes"].error(
                f"max_token_bytes must be between 1 and 64KiB (65536), got {size}"
            )
            size = None
        put("max_token_bytes", size)
    if "cache_size" in fields:
        put("cache_size", _int(fields["cache_size"], 0, _MAX_CACHE_ENTRIES))
    if "realm" in fields:
        put("realm", _realm(fields["realm"]))
    if not ok or issuer is None or jwks is None:
        return None
    return m.JwtProvider(name=name, issuer=issuer, jwks=jwks, location=node.path, **values)


def _jwt_providers(node: _Node) -> dict[str, m.JwtProvider] | None:
    providers = _named_sections(node, "JWT provider", _jwt_provider)
    if providers is None:
        return None
    by_issuer: dict[str, str] = {}
    for name, provider in providers.items():
        if provider.issuer in by_issuer:
            node.child(name).child("issuer").error(
                f"issuer {provider.issuer!r} is already used by provider "
                f"{by_issuer[provider.issuer]!r}: a token is verified by the provider whose "
                "issuer equals its iss claim, so issuers must be unique"
            )
            return None
        by_issuer[provider.issuer] = name
    return providers


# ---------------------------------------------------------------- rate limits

_RATE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*([smh])\s*")
_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE_FORMS = "like 100/s, 30/m or 1000/h (or a plain number: per second)"
_TOKEN_BUCKET_KEYS = ("rate", "burst")
_SLIDING_WINDOW_KEYS = ("limit", "window")
_RATE_LIMIT_KEYS = (
    "algorithm",
    *_TOKEN_BUCKET_KEYS,
    *_SLIDING_WINDOW_KEYS,
    "key",
    "max_keys",
    "missing_key",
)
_MAX_RATE_KEYS = 10_000_000


def _rate(node: _Node) -> float | None:
    """Tokens per second from ``100/s``, ``30/m``, ``1000/h`` or a plain number."""
    value = node.value
    per_second: float
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        node.error(f"expected a rate {_RATE_FORMS}, got {_describe(value)}")
        return None
    if isinstance(value, str):
        found = _RATE.fullmatch(value)
        if found is None:
            node.error(f"invalid rate {value!r}: expected a rate {_RATE_FORMS}")
            return None
        per_second = float(found.group(1)) / _RATE_UNITS[found.group(2)]
    else:
        try:
            per_second = float(value)
        except OverflowError:
            per_second = math.inf
    if not math.isfinite(per_second) or per_second <= 0:
        node.error(f"the rate must be a positive number, got {value!r}")
        return None
    return per_second


_KEY_PARTS = ("client_ip", "route")


def _rate_key_part(node: _Node) -> m.RateKeyPart | None:
    if isinstance(node.value, str):
        choice = _choice(node, _KEY_PARTS)
        return None if choice is None else m.RateKeyPart(cast(m.RateKeyKind, choice))
    if not isinstance(node.value, dict):
        node.error(
            "expected a key part: client_ip, route, {claim: NAME}, {claim_path: [...]} or "
            f"{{header: NAME}}, got {_describe(node.value)}"
        )
        return None
    fields = _mapping(node, ("claim", "claim_path", "header"))
    if fields is None:
        return None
    kind = _one_of(node, fields, ("claim", "claim_path", "header"), "a key part")
    if kind == "header":
        name = _header_name(fields["header"])
        if name is not None and name.startswith(":"):
            fields["header"].error(f"key on a regular header, not the pseudo-header {name!r}")
            name = None
        return None if name is None else m.RateKeyPart("header", name=name)
    path = None
    if kind == "claim":
        path = _claim_path_text(fields["claim"])
    elif kind == "claim_path":
        path = _claim_path_list(fields["claim_path"])
    return None if path is None else m.RateKeyPart("claim", path=path)


def _rate_limit(name: str, node: _Node) -> m.RateLimit | None:
    fields = _mapping(node, _RATE_LIMIT_KEYS, required=("algorithm",))
    if fields is None:
        return None
    ok = True
    algorithm = (
        _choice(fields["algorithm"], ("token_bucket", "sliding_window"))
        if "algorithm" in fields
        else None
    )
    ok &= algorithm is not None
    own, other, other_name = {
        "token_bucket": (_TOKEN_BUCKET_KEYS, _SLIDING_WINDOW_KEYS, "sliding_window"),
        "sliding_window": (_SLIDING_WINDOW_KEYS, _TOKEN_BUCKET_KEYS, "token_bucket"),
    }.get(algorithm or "", ((), (), ""))
    for key in other:
        if key in fields:
            fields[key].error(f"{key} applies to {other_name}, not {algorithm}")
            ok = False
    for key in own:
        if key not in fields:
            node.error(f"missing required key {key!r} ({algorithm} needs {' and '.join(own)})")
            ok = False
    values: dict[str, Any] = {}
    parsers: dict[str, Callable[[_Node], Any]] = {
        "rate": _rate,
        "burst": lambda n: _int(n, 1, 1_000_000_000),
        "limit": lambda n: _int(n, 1, 1_000_000_000),
        "window": lambda n: _bounded_duration(n, allow_zero=False),
        "max_keys": lambda n: _int(n, 1, _MAX_RATE_KEYS),
        "missing_key": lambda n: _choice(n, ("skip", "shared")),
        "key": lambda n: _each(n, _rate_key_part),
    }
    for key, parse in parsers.items():
        if key in fields and key not in other:
            value = parse(fields[key])
            if value is None:
                ok = False
            else:
                values[key] = value
    if not ok or algorithm is None:
        return None
    return m.RateLimit(
        name=name,
        algorithm=cast(m.RateAlgorithm, algorithm),
        location=node.path,
        **values,
    )


# ------------------------------------------------------------- requirements


def _claim_values(node: _Node) -> tuple[tuple[str, ...], m.ClaimMode] | None:
    """A claim's required values: ``v``, ``[v, w]`` (all), ``{any: [...]}``, ``{all: [...]}``."""
    value = node.value
    if isinstance(value, str):
        text = _str(node, allow_empty=False)
        return None if text is None else ((text,), "all")
    if isinstance(value, list):
        values = _str_list(node, allow_empty=False)
        return None if values is None else (tuple(dict.fromkeys(values)), "all")
    if isinstance(value, dict):
        fields = _mapping(node, ("any", "all"))
        if fields is None:
            return None
        mode = _one_of(node, fields, ("any", "all"), "a claim condition")
        if mode is None:
            return None
        values = _str_list(fields[mode], single=True, allow_empty=False)
        if values is None:
            return None
        return tuple(dict.fromkeys(values)), cast(m.ClaimMode, mode)
    hint = " (quote it to make it a string)" if isinstance(value, bool | int | float) else ""
    node.error(
        "expected the required value(s): a string, a list (all of them), {any: [...]} or "
        f"{{all: [...]}}, got {_describe(value)}{hint}"
    )
    return None


def _claim_requirement_item(node: _Node) -> m.ClaimRequirement | None:
    """``{claim: a.b | path: [...], any: [...] | all: [...] | equals: v}``."""
    fields = _mapping(node, ("claim", "path", "any", "all", "equals"))
    if fields is None:
        return None
    which = _one_of(node, fields, ("claim", "path"), "a claim requirement")
    path = None
    if which == "claim":
        path = _claim_path_text(fields["claim"])
    elif which == "path":
        path = _claim_path_list(fields["path"])
    mode = _one_of(node, fields, ("any", "all", "equals"), "a claim requirement")
    values: list[str] | None = None
    if mode == "equals":
        text = _str(fields["equals"], allow_empty=False)
        values = None if text is None else [text]
    elif mode is not None:
        values = _str_list(fields[mode], single=True, allow_empty=False)
    if path is None or mode is None or values is None:
        return None
    return m.ClaimRequirement(
        path,
        tuple(dict.fromkeys(values)),
        "any" if mode == "any" else "all",
        node.path,
    )


def _claim_requirements(node: _Node) -> tuple[m.ClaimRequirement, ...] | None:
    if isinstance(node.value, list):
        found = _each(node, _claim_requirement_item)
    else:
        pairs = _string_keyed(
            node,
            "claim name to required values (or a list of {claim, any | all | equals})",
        )
        if pairs is None:
            return None
        parsed: list[m.ClaimRequirement | None] = []
        for key, child in pairs:
            path = _claim_path_text(_Node(key, child.path, child.position, child.ctx))
            values = _claim_values(child)
            if path is None or values is None:
                parsed.append(None)
            else:
                parsed.append(m.ClaimRequirement(path, values[0], values[1], child.path))
        found = None if None in parsed else tuple(cast(list[m.ClaimRequirement], parsed))
    if found == ():
        node.error("expected at least one claim")
        return None
    return found


def _requirement(node: _Node, depth: int = 1) -> m.Requirement | None:
    fields = _mapping(node, ("claims", "any", "all"))
    if fields is None:
        return None
    if not node.value:
        node.error("an empty requirement always holds; give claims, any or all")
        return None
    ok = True
    claims: tuple[m.ClaimRequirement, ...] | None = ()
    if "claims" in fields:
        claims = _claim_requirements(fields["claims"])
        ok &= claims is not None
    nested: dict[str, tuple[m.Requirement, ...]] = {"any": (), "all": ()}
    for key in ("any", "all"):
        if key not in fields:
            continue
        if depth >= _MAX_REQUIREMENT_DEPTH:
            fields[key].error(f"requirements nest at most {_MAX_REQUIREMENT_DEPTH} levels deep")
            ok = False
            continue
        items = _list(fields[key], allow_empty=False)
        if items is None:
            ok = False
            continue
        rules = [_requirement(item, depth + 1) for item in items]
        if any(r is None for r in rules):
            ok = False
        else:
            nested[key] = tuple(cast(list[m.Requirement], rules))
    if not ok or claims is None:
        return None
    return m.Requirement(claims, nested["all"], nested["any"], node.path)


# ------------------------------------------------------------------ policy


def _jwt_requirement(node: _Node) -> m.JwtRequirement | None:
    allow_missing: bool | None = False
    name_node = node
    if isinstance(node.value, dict):
        fields = _mapping(node, ("provider", "allow_missing"), required=("provider",))
        if fields is None or "provider" not in fields:
            return None
        if "allow_missing" in fields:
            allow_missing = _bool(fields["allow_missing"])
        name_node = fields["provider"]
    elif not isinstance(node.value, str):
        node.error(
            "expected a JWT provider name or {provider: NAME, allow_missing: true}, got "
            + _describe(node.value)
        )
        return None
    name = _str(name_node, allow_empty=False)
    if name is None or allow_missing is None:
        return None
    known = node.ctx.provider_names
    if name not in known:
        _unknown_name(name_node, name, known, "JWT provider", "jwt_providers")
        return None
    return m.JwtRequirement(name, allow_missing, node.path)


def _rate_limit_refs(node: _Node, has_jwt: bool, top_level: bool) -> tuple[str, ...] | None:
    items = [node] if isinstance(node.value, str) else _list(node)
    if items is None:
        return None
    names: list[str] = []
    ok = True
    ctx = node.ctx
    for item in items:
        name = _str(item, allow_empty=False)
        if name is None:
            ok = False
            continue
        if name not in ctx.rate_limit_names:
            _unknown_name(item, name, ctx.rate_limit_names, "rate limit", "rate_limits")
            ok = False
            continue
        if name in names:
            item.error(f"rate limit {name!r} is listed twice")
            ok = False
            continue
        names.append(name)
        limit = ctx.rate_limits.get(name)
        claim = next((p for p in limit.key if p.kind == "claim"), None) if limit else None
        if claim is not None and not has_jwt:
            claim_name = ".".join(claim.path)
            if top_level:
                item.error(
                    f"rate limit {name!r} keys on claim {claim_name!r}, but the top-level "
                    "policy applies before any JWT is verified; use it on routes with jwt"
                )
            else:
                item.error(
                    f"rate limit {name!r} keys on claim {claim_name!r}, but this route verifies "
                    "no JWT (add jwt: PROVIDER to its policy)"
                )
            ok = False
    return tuple(names) if ok else None


_POLICY_KEYS = ("jwt", "require", "rate_limit")


def _policy(node: _Node, *, top_level: bool = False) -> m.RoutePolicy | None:
    if top_level:
        misplaced = {
            key: f"{key} belongs on routes (a route's policy: {key}: ...); the top-level policy "
            "applies to every request, before the route's policy, and only takes rate_limit"
            for key in ("jwt", "require")
        }
        fields = _mapping(node, ("rate_limit",), misplaced=misplaced)
    else:
        fields = _mapping(node, _POLICY_KEYS)
    if fields is None:
        return None
    ok = not (top_level and isinstance(node.value, dict) and {"jwt", "require"} & node.value.keys())
    jwt = None
    if "jwt" in fields:
        jwt = _jwt_requirement(fields["jwt"])
        ok &= jwt is not None
    require: m.Requirement | None = m.Requirement()
    if "require" in fields:
        require = _requirement(fields["require"])
        if "jwt" not in fields:
            fields["require"].error(
                "require needs jwt: name the provider whose claims it checks "
                "(policy: {jwt: PROVIDER, require: ...})"
            )
            ok = False
    # A jwt naming an unknown provider was reported; don't also flag claim keys.
    has_jwt = "jwt" in fields
    rate_limits: tuple[str, ...] | None = ()
    if "rate_limit" in fields:
        rate_limits = _rate_limit_refs(fields["rate_limit"], has_jwt, top_level)
    if not ok or require is None or rate_limits is None:
        return None
    return m.RoutePolicy(jwt, require, rate_limits, node.path)


# ---------------------------------------------------------- gateway-wide keys


def _network(node: _Node) -> m.IpNetwork | None:
    text = _str(node, allow_empty=False)
    if text is None:
        return None
    try:
        return ipaddress.ip_network(text.strip())
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        node.error(
            f"{text!r} is not an IP address or network (expected e.g. 10.0.0.0/8, "
            "192.0.2.7 or 2001:db8::/32)"
        )
        return None
    node.error(
        f"{text!r} has host bits set after the /{network.prefixlen} prefix; "
        f"did you mean {str(network)!r}?"
    )
    return None


def _trusted_proxies(node: _Node) -> tuple[m.IpNetwork, ...] | None:
    items = _list(node)
    if items is None:
        return None
    out: list[m.IpNetwork] = []
    ok = True
    for item in items:
        network = _network(item)
        if network is None:
            ok = False
        elif network not in out:
            out.append(network)
    return tuple(out) if ok else None


_NORMALIZATION_KEYS = ("decode_unreserved", "merge_slashes", "remove_dot_segments")


def _path_normalization(node: _Node) -> m.PathNormalization | None:
    if isinstance(node.value, bool):
        flag = node.value
        return m.PathNormalization(flag, flag, flag)
    if not isinstance(node.value, dict):
        node.error(
            "expected true, false or a mapping of decode_unreserved, merge_slashes and "
            f"remove_dot_segments to true/false, got {_describe(node.value)}"
        )
        return None
    fields = _mapping(node, _NORMALIZATION_KEYS)
    if fields is None:
        return None
    flags = {key: _bool(child) for key, child in fields.items()}
    if any(v is None for v in flags.values()):
        return None
    return m.PathNormalization(**cast(dict[str, bool], flags))


def _untrusted_headers(node: _Node) -> tuple[str, ...] | None:
    items = _list(node)
    if items is None:
        return None
    out: list[str] = []
    ok = True
    for item in items:
        name = _header_name(item)
        if name is None:
            ok = False
        elif _is_managed(name):
            item.error(
                f"header {name!r} cannot be removed from requests: the gateway needs it "
                "(pseudo-headers, host, content-length and transfer-encoding)"
            )
            ok = False
        elif name not in out:
            out.append(name)
    return tuple(out) if ok else None


def _tracing(node: _Node) -> tuple[bool, bool] | None:
    """(enabled, sampled): ``true``/``false``, or ``{enabled: bool, sampled: bool}``."""
    if isinstance(node.value, dict):
        fields = _mapping(node, ("enabled", "sampled"))
        if fields is None:
            return None
        enabled = _bool(fields["enabled"]) if "enabled" in fields else True
        sampled = _bool(fields["sampled"]) if "sampled" in fields else False
        if enabled is None or sampled is None:
            return None
        return enabled, sampled
    if not isinstance(node.value, bool):
        node.error(
            "expected true, false or {enabled: true|false, sampled: true|false}, "
            f"got {_describe(node.value)}"
        )
        return None
    return node.value, False


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


_TOP_LEVEL_KEYS = (
    "listeners",
    "clusters",
    "routes",
    "virtual_hosts",
    "jwt_providers",
    "rate_limits",
    "policy",
    "trusted_proxies",
    "path_normalization",
    "untrusted_request_headers",
    "tracing",
)


def _build(
    located: Located, base_dir: str | Path | None = None, apps_as_clusters: bool = False
) -> m.GatewayConfig:
    ctx = _Context(located, Path(base_dir) if base_dir is not None else Path.cwd())
    root = _Node(located.data, "", located.root, ctx)
    if located.data is None:
        root.error("the config is empty; expected a mapping with routes or virtual_hosts")
        raise ConfigError(ctx.issues)
    fields = _mapping(root, _TOP_LEVEL_KEYS)
    if fields is None:
        raise ConfigError(ctx.issues)

    # Named policy parts first: routes refer to them by name.
    ctx.provider_names = _declared_names(fields.get("jwt_providers"))
    ctx.rate_limit_names = _declared_names(fields.get("rate_limits"))
    providers: dict[str, m.JwtProvider] | None = {}
    if "jwt_providers" in fields and fields["jwt_providers"].value is not None:
        providers = _jwt_providers(fields["jwt_providers"])
    rate_limits: dict[str, m.RateLimit] | None = {}
    if "rate_limits" in fields and fields["rate_limits"].value is not None:
        rate_limits = _named_sections(fields["rate_limits"], "rate limit", _rate_limit)
    ctx.rate_limits = dict(rate_limits or {})
    global_policy: m.RoutePolicy | None = m.RoutePolicy()
    if "policy" in fields:
        global_policy = _policy(fields["policy"], top_level=True)
    trusted: tuple[m.IpNetwork, ...] | None = ()
    if "trusted_proxies" in fields:
        trusted = _trusted_proxies(fields["trusted_proxies"])
    normalization: m.PathNormalization | None = m.PathNormalization()
    if "path_normalization" in fields:
        normalization = _path_normalization(fields["path_normalization"])
    untrusted: tuple[str, ...] | None = ()
    if "untrusted_request_headers" in fields:
        untrusted = _untrusted_headers(fields["untrusted_request_headers"])
    tracing: tuple[bool, bool] | None = (True, False)
    if "tracing" in fields:
        tracing = _tracing(fields["tracing"])

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

    if vhosts is not None and clusters is not None and not apps_as_clusters:
        _check_references(root, vhosts, clusters)
    policy_parts = (providers, rate_limits, global_policy, trusted, normalization, untrusted)
    if ctx.issues or vhosts is None or clusters is None or listeners is None:
        if not ctx.issues:  # defensive: every None above reported an issue
            root.error("invalid config")
        raise ConfigError(ctx.issues)
    if any(part is None for part in policy_parts) or tracing is None:
        root.error("invalid config")  # defensive: unreachable, every None reported an issue
        raise ConfigError(ctx.issues)
    assert providers is not None and rate_limits is not None and global_policy is not None
    assert trusted is not None and normalization is not None and untrusted is not None
    return m.GatewayConfig(
        virtual_hosts=vhosts,
        clusters=types.MappingProxyType(clusters),
        listeners=listeners,
        source=located.source,
        jwt_providers=types.MappingProxyType(providers),
        rate_limits=types.MappingProxyType(rate_limits),
        trusted_proxies=trusted,
        global_policy=global_policy,
        path_normalization=normalization,
        untrusted_request_headers=untrusted,
        tracing=tracing[0],
        trace_sampled=tracing[1],
    )
