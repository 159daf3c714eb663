"""RE2 regexes and Envoy-style path templates.

Regexes are compiled with RE2 (google-re2): linear-time matching, no
backreferences or lookaround, the dialect of Envoy's ``safe_regex``.
"""

from __future__ import annotations

from typing import Any

import re2

from gwcore.config.model import TemplateSegment

# Characters a path segment may hold (RFC 3986 pchar, as Envoy's uri_template uses).
PATH_SEGMENT_CHARS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()+,;:@="
)
_SEGMENT_CLASS = r"[A-Za-z0-9\-._~%!$&'()+,;:@=]"
_REST_CLASS = r"[A-Za-z0-9\-._~%!$&'()+,;:@=/]"


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False
    return options


def compile_regex(pattern: str) -> Any:
    """Compile ``pattern`` with RE2. Raises ``ValueError`` naming RE2's complaint."""
    try:
        return re2.compile(pattern, options=_options())
    except Exception as exc:  # re2 raises its own error type, bytes message
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(f"invalid RE2 regex {pattern!r}: {reason}") from None


def new_regex_set() -> Any:
    """An empty RE2 set whose ``Match`` answers which added patterns match a whole text."""
    options = _options()
    options.max_mem = 64 << 20
    return re2.Set.FullMatchSet(options)


def _is_valid_literal(text: str) -> bool:
    return not text.strip(PATH_SEGMENT_CHARS)


def _parse_operator(token: str) -> TemplateSegment | None:
    if token == "*":
        return TemplateSegment("any")
    if token == "**":
        return TemplateSegment("rest")
    return None


def parse_path_template(template: str) -> tuple[TemplateSegment, ...]:
    """Parse an Envoy ``path_template`` into segments.

    Accepted: ``/users/{id}/posts/{post}``, ``*`` (one segment), ``**`` (zero or more
    characters including ``/``, last only), ``{name}`` = ``{name=*}``, ``{name=**}``,
    ``{name=a/*/b}``, and a literal suffix on the last segment (``/videos/*.m4s``).
    Raises ``ValueError`` with the reason.
    """
    if not template.startswith("/"):
        raise ValueError(f"path_template {template!r} must start with '/'")
    tokens: list[str] = []
    depth = 0
    current = ""
    for ch in template[1:]:
        if ch == "{":
            depth += 1
            if depth > 1:
                raise ValueError(f"path_template {template!r}: nested '{{'")
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"path_template {template!r}: unbalanced '}}'")
        if ch == "/" and depth == 0:
            tokens.append(current)
            current = ""
        else:
            current += ch
    if depth:
        raise ValueError(f"path_template {template!r}: unclosed '{{'")
    tokens.append(current)

    segments: list[TemplateSegment] = []
    names: set[str] = set()
    for index, token in enumerate(tokens):
        last = index == len(tokens) - 1
        if token == "" and not last:
            raise ValueError(f"path_template {template!r}: empty segment ('//')")
        expanded = _parse_token(template, token, last, names)
        segments.extend(expanded)
    for i, seg in enumerate(segments):
        if seg.kind == "rest" and i != len(segments) - 1:
            raise ValueError(f"path_template {template!r}: '**' must be the last operator")
    return tuple(segments)


def _parse_token(template: str, token: str, last: bool, names: set[str]) -> list[TemplateSegment]:
    suffix = ""
    body = token
    if token.startswith("{"):
        close = token.index("}")
        body, suffix = token[: close + 1], token[close + 1 :]
    elif token.startswith("*"):
        body = "**" if token.startswith("**") else "*"
        suffix = token[len(body) :]
    if suffix:
        if not last:
            raise ValueError(
                f"path_template {template!r}: text after an operator ({token!r}) "
                "is allowed only in the last segment"
            )
        if not _is_valid_literal(suffix):
            raise ValueError(f"path_template {template!r}: invalid characters in {suffix!r}")
    if body.startswith("{"):
        inner = body[1:-1]
        name, _, pattern = inner.partition("=")
        if not name or not (name[0].isalpha() and name.replace("_", "a").isalnum()):
            raise ValueError(f"path_template {template!r}: invalid variable name {name!r}")
        if name in names:
            raise ValueError(f"path_template {template!r}: variable {name!r} appears twice")
        names.add(name)
        parts = pattern.split("/") if pattern else ["*"]
        out: list[TemplateSegment] = []
        for j, part in enumerate(parts):
            op = _parse_operator(part)
            if op is None:
                if not part or not _is_valid_literal(part):
                    raise ValueError(
                        f"path_template {template!r}: invalid segment {part!r} in variable {name!r}"
                    )
                op = TemplateSegment("literal", text=part)
            if j == len(parts) - 1 and suffix:
                op = TemplateSegment(op.kind, op.text, suffix=suffix)
            out.append(TemplateSegment(op.kind, op.text, op.suffix, variable=name))
        return out
    op = _parse_operator(body)
    if op is not None:
        return [TemplateSegment(op.kind, suffix=suffix)]
    if "*" in token or "{" in token or "}" in token or not _is_valid_literal(token):
        raise ValueError(
            f"path_template {template!r}: segment {token!r} must be a literal, '*', '**' "
            "or a {variable}"
        )
    return [TemplateSegment("literal", text=token)]


def template_regex(segments: tuple[TemplateSegment, ...]) -> str:
    """The RE2 regex (full match) equivalent to a parsed template, as Envoy builds it."""
    parts = []
    for seg in segments:
        if seg.kind == "literal":
            part = re2.escape(seg.text)
        elif seg.kind == "any":
            part = _SEGMENT_CLASS + "+"
        else:
            part = _REST_CLASS + "*"
        parts.append(part + re2.escape(seg.suffix))
    return "/" + "/".join(parts)
