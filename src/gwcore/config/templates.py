"""Header value templates: Envoy-style ``%VARIABLE%`` text parsed into parts.

A header value in the config (``request_headers.add``/``set``, and the Envoy-style
``request_headers_to_add`` / ``response_headers_to_add`` values) may refer to
per-request data. :func:`parse_template` turns the text into
:class:`~gwcore.config.model.TemplatePart` objects once, at config load:

==========================================  ==========================================
``%CLIENT_IP%``                             the client address (``client_ip``);
                                            alias ``%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%``
``%REQUEST_ID%``                            the request id (``request_id``)
``%ROUTE_NAME%``                            the route's name (``route``)
``%CLAIM(tenant.id)%``                      a verified claim, path split on ``.``
                                            (``claim``, ``path=("tenant", "id")``)
``%REQ(X-User)%``                           the first value of a request header
                                            (``header``, ``name="x-user"``)
``%%``                                      a literal ``%``
==========================================  ==========================================

Variable names are upper-case and case-sensitive (as in Envoy). Everything else is
literal text; adjacent literal text is one part, a value without variables is one
literal part and an empty value has no parts. A lone ``%`` is an error (write
``%%``), so a typo never silently becomes literal text.

Errors are :class:`ValueError` with the reason and the 0-based position in the text;
the config loader reports them at the value's location.
"""

from __future__ import annotations

import difflib

from gwcore.config import model as m

__all__ = ["VARIABLES", "parse_template", "render_template_source"]

_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
# C0 controls except horizontal tab, and DEL: never valid in a header value.
_CONTROLS = frozenset([*(chr(c) for c in range(0x20) if c != 0x09), "\x7f"])

_SIMPLE: dict[str, m.TemplateVariable] = {
    "CLIENT_IP": "client_ip",
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": "client_ip",
    "REQUEST_ID": "request_id",
    "ROUTE_NAME": "route",
}
_WITH_ARGUMENT = ("CLAIM", "REQ")
#: Every variable name :func:`parse_template` knows, as written in a template.
VARIABLES = (
    "%CLIENT_IP%",
    "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "%REQUEST_ID%",
    "%ROUTE_NAME%",
    "%CLAIM(name)%",
    "%REQ(header)%",
)


def _variable(name: str, argument: str | None, at: int) -> m.TemplatePart:
    if name in _SIMPLE:
        if argument is not None:
            raise ValueError(
                f"%{name}% takes no argument, got %{name}({argument})% at position {at}"
            )
        return m.TemplatePart(_SIMPLE[name])
    if name in _WITH_ARGUMENT:
        example = "tenant.id" if name == "CLAIM" else "x-user"
        if not argument:
            raise ValueError(
                f"%{name}% needs an argument, like %{name}({example})%, at position {at}"
            )
        if name == "REQ":
            if not set(argument) <= _TOKEN_CHARS:
                raise ValueError(
                    f"%REQ({argument})% at position {at}: {argument!r} is not a header name "
                    "(header names are HTTP tokens; REQ takes exactly one)"
                )
            return m.TemplatePart("header", name=argument.lower())
        path = tuple(argument.split("."))
        if "" in path:
            raise ValueError(
                f"%CLAIM({argument})% at position {at}: empty segment in the claim path "
                "(write nested claims as a.b.c)"
            )
        return m.TemplatePart("claim", path=path)
    known = [*_SIMPLE, *_WITH_ARGUMENT]
    close = difflib.get_close_matches(name.upper(), known, n=1)
    if close:
        hint = f" (did you mean %{close[0]}%?" + (
            " variable names are upper-case)" if close[0] == name.upper() else ")"
        )
    else:
        hint = ""
    raise ValueError(
        f"unknown variable %{name}% at position {at}{hint}; expected one of "
        f"{', '.join(VARIABLES)}, or %% for a literal %"
    )


def parse_template(text: str) -> tuple[m.TemplatePart, ...]:
    """Parse a header value into template parts (see the module docstring).

    ``%REQ(name)%`` lower-cases ``name``. Raises :class:`ValueError` naming the
    problem and its position: ``unknown variable %FOO%``, ``unterminated %`` (a
    ``%`` that starts no complete variable), ``unterminated %CLAIM(`` (no closing
    parenthesis), an argument missing (``needs an argument``) or unexpected
    (``takes no argument``), an ``empty variable name`` (``%(x)%``), a ``REQ``
    argument that is ``not a header name``, an ``empty segment`` in a claim path, or
    a ``control character`` (anything below space but tab, and DEL) in the text.
    """
    parts: list[m.TemplatePart] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            parts.append(m.TemplatePart("literal", text="".join(literal)))
            literal.clear()

    size = len(text)
    index = 0
    while index < size:
        percent = text.find("%", index)
        chunk = text[index:] if percent < 0 else text[index:percent]
        for offset, ch in enumerate(chunk):
            if ch in _CONTROLS:
                raise ValueError(
                    f"control character {ch!r} at position {index + offset}: header values "
                    "cannot contain control characters (CR, LF, NUL, ...)"
                )
        if chunk:
            literal.append(chunk)
        if percent < 0:
            break
        if text.startswith("%%", percent):
            literal.append("%")
            index = percent + 2
            continue
        start = percent
        end = start + 1
        while end < size and text[end] in _NAME_CHARS:
            end += 1
        name = text[start + 1 : end]
        argument: str | None = None
        if end < size and text[end] == "(":
            close = text.find(")", end)
            if close < 0:
                raise ValueError(
                    f"unterminated %{name}( at position {start}: the argument has no closing ')'"
                )
            argument = text[end + 1 : close]
            end = close + 1
        if end >= size or text[end] != "%":
            shown = text[start : min(end + 1, size, start + 40)]
            raise ValueError(
                f"unterminated % at position {start} ({shown!r}): a variable is %NAME% or "
                "%NAME(argument)%; write %% for a literal %"
            )
        if not name:
            raise ValueError(
                f"empty variable name at position {start}: a variable is %NAME% or "
                "%NAME(argument)%; write %% for a literal %"
            )
        flush()
        parts.append(_variable(name, argument, start))
        index = end + 1
    flush()
    return tuple(parts)


def render_template_source(parts: tuple[m.TemplatePart, ...]) -> str:
    """The template text that :func:`parse_template` reads back as ``parts``.

    Useful for messages and tests; ``parse_template(render_template_source(p)) == p``
    for any parts it produced.
    """
    out: list[str] = []
    for part in parts:
        if part.kind == "literal":
            out.append(part.text.replace("%", "%%"))
        elif part.kind == "claim":
            out.append(f"%CLAIM({'.'.join(part.path)})%")
        elif part.kind == "header":
            out.append(f"%REQ({part.name})%")
        elif part.kind == "client_ip":
            out.append("%CLIENT_IP%")
        elif part.kind == "request_id":
            out.append("%REQUEST_ID%")
        else:
            out.append("%ROUTE_NAME%")
    return "".join(out)
