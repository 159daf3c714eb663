"""Matcher semantics: one place that says what each matcher means.

Both the reference scan and the compiled tree call these functions for the
conditions they do not answer from an index, so the two can only disagree on
*which* routes they consider — exactly what the differential tests check.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from gwcore.config import model as m
from gwcore.config.claims import claim_values
from gwcore.routing.request import RequestView


def string_matches(matcher: m.StringMatcher, value: str) -> bool:
    """Envoy ``StringMatcher`` semantics (regex: whole value). ``ignore_case`` compares
    with Python's Unicode ``str.lower()`` (Envoy folds ASCII only; the two differ only
    for non-ASCII letters such as the Kelvin sign or dotted capital I)."""
    kind = matcher.kind
    if kind == "regex":
        return matcher.compiled.fullmatch(value) is not None
    if matcher.ignore_case:
        value = value.lower()
    if kind == "exact":
        return value == matcher.value
    if kind == "prefix":
        return value.startswith(matcher.value)
    if kind == "suffix":
        return value.endswith(matcher.value)
    return matcher.value in value


def _int_in_range(value: str, bounds: tuple[int, int]) -> bool:
    text = value.strip()
    body = text[1:] if text[:1] in "+-" else text
    if not body.isascii() or not body.isdigit():
        return False
    return bounds[0] <= int(text) < bounds[1]


def values_match(
    values: list[str],
    string: m.StringMatcher | None,
    present: bool | None,
    rng: tuple[int, int] | None,
    invert: bool,
) -> bool:
    """Shared semantics of header and claim conditions over a list of values.

    Presence: ``present`` xor ``invert``. Otherwise an absent value fails, inverted
    or not; a present one matches when any value matches (none, when inverted).
    """
    if present is not None:
        return bool(values) == (present != invert)
    if not values:
        return False
    if rng is not None:
        hit = any(_int_in_range(v, rng) for v in values)
    else:
        assert string is not None
        hit = any(string_matches(string, v) for v in values)
    return hit != invert


def header_matches(matcher: m.HeaderMatcher, view: RequestView) -> bool:
    values = view.header_values(matcher.name)
    return values_match(
        values, matcher.string, matcher.present, matcher.range, matcher.invert_match
    )


def query_matches(matcher: m.QueryParameterMatcher, view: RequestView) -> bool:
    values = view.query_values(matcher.name)
    if matcher.present is not None:
        return bool(values) == matcher.present
    assert matcher.string is not None
    return any(string_matches(matcher.string, v) for v in values)


def claim_matches(matcher: m.ClaimMatcher, claims: Mapping[str, Any]) -> bool:
    values = claim_values(claims, matcher.path)
    if matcher.present is not None:
        return (values is not None) == (matcher.present != matcher.invert_match)
    if values is None:
        return False
    # A present claim with no comparable value (an object, null) never matches a
    # string condition, and so always matches an inverted one.
    assert matcher.string is not None
    hit = any(string_matches(matcher.string, v) for v in values)
    return hit != matcher.invert_match


def path_matches(matcher: m.PathMatcher, path: str) -> bool:
    """The plain meaning of a path matcher (used by the reference scan)."""
    kind = matcher.kind
    if kind == "any":
        return True
    if kind in ("safe_regex", "template"):
        return matcher.compiled.fullmatch(path) is not None
    subject = path if matcher.case_sensitive else path.lower()
    if kind == "path":
        return subject == matcher.value
    if kind == "prefix":
        return subject.startswith(matcher.value)
    return subject == matcher.value or subject.startswith(matcher.value + "/")


def is_grpc_content_type(content_type: str | None) -> bool:
    return content_type is not None and (
        content_type == "application/grpc" or content_type.startswith("application/grpc+")
    )


def grpc_matches(matcher: m.GrpcMatcher, view: RequestView) -> bool:
    if not is_grpc_content_type(view.content_type):
        return False
    if matcher.service is None:
        return True
    service, sep, method = view.path[1:].partition("/")
    if not view.path.startswith("/") or not sep or not method or "/" in method:
        return False
    return service == matcher.service and (matcher.method is None or method == matcher.method)


def graphql_matches(matcher: m.GraphqlMatcher, view: RequestView) -> bool:
    op = view.graphql_operation()
    if op is None:
        return False
    op_type, op_name = op
    if matcher.operation_type is not None and op_type != matcher.operation_type:
        return False
    if matcher.operation_name is not None:
        return op_name is not None and string_matches(matcher.operation_name, op_name)
    return True


def graphql_needs_body(view: RequestView) -> bool:
    """A GraphQL operation comes from the body unless the method is GET/HEAD."""
    return view.method not in ("GET", "HEAD")


class Verdict(Enum):
    MATCH = "match"
    NEED_CLAIMS = "need_claims"
    NEED_BODY = "need_body"


# A failed condition is reported as the matcher object (or a short tag for
# conditions that are not objects), so that explain() can describe it.
Failure = (
    m.PathMatcher
    | m.HeaderMatcher
    | m.QueryParameterMatcher
    | m.ClaimMatcher
    | m.GrpcMatcher
    | m.GraphqlMatcher
    | str
)


def evaluate_route(
    match: m.RouteMatch, view: RequestView, *, check_path: bool = True
) -> Verdict | Failure:
    """Check one route's conditions in a fixed order; the first failure is returned.

    Order: path, methods, headers, query parameters, gRPC, content type, then the
    lazy ones: JWT claims (``NEED_CLAIMS`` while ``view.claims`` is None), then
    GraphQL (``NEED_BODY`` while the body is needed and ``view.body`` is None).
    ``check_path=False`` skips the path when an index has already decided it.
    """
    if check_path and not path_matches(match.path, view.path):
        return match.path
    if match.methods is not None and view.method not in match.methods:
        return "methods"
    for header in match.headers:
        if not header_matches(header, view):
            return header
    for query in match.query_parameters:
        if not query_matches(query, view):
            return query
    if match.grpc is not None and not grpc_matches(match.grpc, view):
        return match.grpc
    if match.content_type and view.content_type not in match.content_type:
        return "content_type"
    if match.jwt_claims:
        claims = view.claims
        if claims is None:
            return Verdict.NEED_CLAIMS
        for claim in match.jwt_claims:
            if not claim_matches(claim, claims):
                return claim
    if match.graphql is not None:
        if view.body is None and graphql_needs_body(view):
            return Verdict.NEED_BODY
        if not graphql_matches(match.graphql, view):
            return match.graphql
    return Verdict.MATCH
