"""Header value templates and header transforms (request and response).

A template is text with Envoy-style variables, parsed once at config load by
:func:`parse_template` and expanded per request by :func:`render`:

==========================================  =============================================
``%CLIENT_IP%``                             the client address (alias:
                                            ``%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%``)
``%REQUEST_ID%``                            the request id
``%ROUTE_NAME%``                            the route's name (empty when it has none)
``%CLAIM(tenant.id)%``                      a verified claim (path split on ``.``)
``%REQ(x-user)%``                           the first value of a request header
``%%``                                      a literal ``%``
==========================================  =============================================

Expanded values are made header-safe: control characters (C0, including CR, LF, NUL,
and DEL; tab is kept) are removed and surrounding spaces stripped, so nothing a client
controls (a claim, a header) can inject a header line. Claims are JSON text, sent as
UTF-8; the other parts are wire text (one character per byte, as codecs decode header
values), and any character above U+00FF in them is sent as UTF-8 too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gwcore.config import model as m
from gwcore.config.templates import parse_template

__all__ = [
    "TemplateContext",
    "apply_transform",
    "claim_text",
    "header_value",
    "parse_template",
    "render",
    "sanitize_value",
]

# C0 controls but tab, and DEL: removed from every rendered value.
_CONTROLS = dict.fromkeys([*range(0x09), *range(0x0A, 0x20), 0x7F])


@dataclass(frozen=True, slots=True)
class TemplateContext:
    """What templates can refer to for one request.

    ``claims`` are the verified JWT claims (``None`` when unauthenticated); ``headers``
    are the client's request headers (as received, lower-case names).
    """

    client_ip: str = ""
    request_id: str = ""
    route: str = ""
    claims: Mapping[str, Any] | None = None
    headers: Sequence[tuple[str, str]] = ()


# -------------------------------------------------------------------------- render


def _wire_text(text: str) -> str:
    """``text`` as wire text: characters above U+00FF become their UTF-8 bytes."""
    if text.isascii() or max(text) <= "\xff":
        return text
    return text.encode("utf-8", "replace").decode("latin-1")


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return repr(value)
    return None


def claim_text(claims: Mapping[str, Any] | None, path: tuple[str, ...]) -> str:
    """A claim as template text: a scalar as text (booleans ``true``/``false``), an
    array's scalar elements joined with ``,``; absent, ``null`` or an object give ``""``.
    The result is UTF-8 wire text."""
    node: Any = claims
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return ""
        node = node[part]
    if isinstance(node, list):
        text = ",".join(t for t in (_scalar(e) for e in node) if t is not None)
    else:
        text = _scalar(node) or ""
    return text if text.isascii() else text.encode("utf-8", "replace").decode("latin-1")


def header_value(headers: Sequence[tuple[str, str]], name: str) -> str:
    """The first value of header ``name`` (lower-case), or ``""``."""
    for header, value in headers:
        if header == name or header.lower() == name:
            return value
    return ""


def sanitize_value(text: str) -> str:
    """``text`` made a safe header value: control characters but tab removed, characters
    above U+00FF as UTF-8 bytes, surrounding spaces and tabs stripped."""
    return _wire_text(text.translate(_CONTROLS)).strip(" \t")


def render(template: Sequence[m.TemplatePart], context: TemplateContext) -> str:
    """Expand ``template`` for one request (see :class:`~gwcore.config.model.TemplatePart`);
    the result is header-safe (:func:`sanitize_value`)."""
    out: list[str] = []
    for part in template:
        kind = part.kind
        if kind == "literal":
            out.append(part.text)
        elif kind == "client_ip":
            out.append(context.client_ip)
        elif kind == "request_id":
            out.append(context.request_id)
        elif kind == "route":
            out.append(context.route)
        elif kind == "claim":
            out.append(claim_text(context.claims, part.path))
        else:
            out.append(header_value(context.headers, part.name))
    return sanitize_value("".join(out))


# ----------------------------------------------------------------------- transform


def apply_transform(
    headers: Sequence[tuple[str, str]],
    transform: m.HeaderTransform,
    context: TemplateContext,
) -> list[tuple[str, str]]:
    """``headers`` changed by ``transform``, in the order of
    :class:`~gwcore.config.model.HeaderTransform`:

    1. ``remove``: every header with one of those names goes;
    2. ``rename`` ``(old, new)``, pair by pair: if ``old`` is present, every ``new``
       header goes and each ``old`` header becomes ``new`` in place (values and order
       kept); an absent ``old`` changes nothing;
    3. ``add``, option by option: the value is the option's template rendered with
       ``context`` (an option without a template adds its ``value`` as literal text);
       an empty value adds nothing. ``append_if_exists_or_add`` appends,
       ``add_if_absent`` adds only when no header of that name is present,
       ``overwrite_if_exists_or_add`` removes that name's headers and appends.

    Names are lower-case (as codecs produce them and the config holds them); the names
    in ``headers`` are compared case-insensitively. The input is not modified.
    """
    out = list(headers)
    if transform.remove:
        removed = frozenset(transform.remove)
        out = [(n, v) for n, v in out if n.lower() not in removed]
    for old, new in transform.rename:
        if old == new or not any(n.lower() == old for n, _ in out):
            continue
        out = [(new if n.lower() == old else n, v) for n, v in out if n.lower() != new]
    for option in transform.add:
        if option.template:
            value = render(option.template, context)
        else:
            value = sanitize_value(option.value)
        if not value:
            continue
        name = option.name
        if option.append_action == "add_if_absent":
            if any(n.lower() == name for n, _ in out):
                continue
        elif option.append_action == "overwrite_if_exists_or_add":
            out = [(n, v) for n, v in out if n.lower() != name]
        out.append((name, value))
    return out
