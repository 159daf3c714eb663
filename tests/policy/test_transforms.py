"""Header templates (parse and render) and header transforms."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwcore.config import model as m
from gwcore.policy.transforms import (
    TemplateContext,
    apply_transform,
    parse_template,
    render,
)

CONTEXT = TemplateContext(
    client_ip="203.0.113.9",
    request_id="req-1",
    route="orders",
    claims={
        "sub": "u1",
        "tenant": {"id": "acme", "tier": 3, "paid": True},
        "groups": ["a", "b", 7, {"x": 1}, None, False],
        "ratio": 0.5,
        "name": "Jos\u00e9 \u65e5\u672c",
        "evil": "x\r\nset-cookie: a=b\x00\x7f",
    },
    headers=(("X-User", " alice "), ("x-user", "bob"), ("x-evil", "a\r\nb")),
)


def _lit(text: str) -> m.TemplatePart:
    return m.TemplatePart("literal", text=text)


# ------------------------------------------------------------------ parse


def test_parse_variables_and_literals() -> None:
    parts = parse_template("ip=%CLIENT_IP%;id=%REQUEST_ID%;r=%ROUTE_NAME%;100%%")
    assert parts == (
        _lit("ip="),
        m.TemplatePart("client_ip"),
        _lit(";id="),
        m.TemplatePart("request_id"),
        _lit(";r="),
        m.TemplatePart("route"),
        _lit(";100%"),
    )


def test_parse_claim_and_req_arguments() -> None:
    assert parse_template("%CLAIM(tenant.id)%") == (m.TemplatePart("claim", path=("tenant", "id")),)
    assert parse_template("%REQ(X-User)%") == (m.TemplatePart("header", name="x-user"),)


def test_envoy_alias_for_client_ip() -> None:
    assert parse_template("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%") == (
        m.TemplatePart("client_ip"),
    )


def test_plain_text_is_one_literal_and_empty_is_nothing() -> None:
    assert parse_template("no variables") == (_lit("no variables"),)
    assert parse_template("") == ()
    assert parse_template("%%") == (_lit("%"),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("%FOO%", "unknown variable %FOO%"),
        ("%client_ip%", "unknown variable %client_ip%"),
        ("a %CLIENT_IP", "unterminated %"),
        ("50%", "unterminated %"),
        ("%CLAIM(a.b%", "unterminated %CLAIM("),
        ("%CLAIM(a)x%", "unterminated %"),
        ("%CLAIM()%", "needs an argument"),
        ("%CLAIM%", "needs an argument"),
        ("%CLAIM(a..b)%", "empty segment"),
        ("%REQ(bad name)%", "not a header name"),
        ("%REQ(a?b)%", "not a header name"),
        ("%CLIENT_IP(x)%", "takes no argument"),
        ("%(x)%", "empty variable name"),
        ("a\r\nb", "control character"),
    ],
)
def test_parse_errors_are_specific(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("?", r"\?")):
        parse_template(text)


_variables = st.sampled_from(
    [
        m.TemplatePart("client_ip"),
        m.TemplatePart("request_id"),
        m.TemplatePart("route"),
        m.TemplatePart("claim", path=("a",)),
        m.TemplatePart("claim", path=("a", "b_c")),
        m.TemplatePart("header", name="x-y"),
    ]
)
_source = {
    "client_ip": "%CLIENT_IP%",
    "request_id": "%REQUEST_ID%",
    "route": "%ROUTE_NAME%",
}


def _write(part: m.TemplatePart) -> str:
    if part.kind == "literal":
        return part.text.replace("%", "%%")
    if part.kind == "claim":
        return f"%CLAIM({'.'.join(part.path)})%"
    if part.kind == "header":
        return f"%REQ({part.name})%"
    return _source[part.kind]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(_variables, st.text(st.characters(min_codepoint=32), min_size=1).map(_lit)),
        max_size=6,
    )
)
def test_parse_reads_back_what_was_written(parts: list[m.TemplatePart]) -> None:
    merged: list[m.TemplatePart] = []
    for part in parts:
        if part.kind == "literal" and merged and merged[-1].kind == "literal":
            merged[-1] = _lit(merged[-1].text + part.text)
        else:
            merged.append(part)
    text = "".join(_write(p) for p in parts)
    if any(ch in text for ch in "\x7f"):
        return
    assert parse_template(text) == tuple(merged)


# ------------------------------------------------------------------ render


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("%CLIENT_IP%/%REQUEST_ID%/%ROUTE_NAME%", "203.0.113.9/req-1/orders"),
        ("%CLAIM(sub)%", "u1"),
        ("%CLAIM(tenant.id)%-%CLAIM(tenant.tier)%-%CLAIM(tenant.paid)%", "acme-3-true"),
        ("%CLAIM(groups)%", "a,b,7,false"),
        ("%CLAIM(ratio)%", "0.5"),
        ("[%CLAIM(tenant)%][%CLAIM(nope)%][%CLAIM(sub.x)%]", "[][][]"),
        ("%REQ(x-user)%", " alice "),  # the first value; inner text kept
        ("<%REQ(x-none)%>", "<>"),
    ],
)
def test_render(template: str, expected: str) -> None:
    result = render(parse_template(template), CONTEXT)
    if expected.startswith(" "):  # surrounding spaces are stripped from the whole value
        expected = expected.strip()
    assert result == expected


def test_claims_are_sent_as_utf8_wire_text() -> None:
    value = render(parse_template("%CLAIM(name)%"), CONTEXT)
    assert value.encode("latin-1").decode("utf-8") == "Jos\u00e9 \u65e5\u672c"


def test_claim_or_header_values_cannot_inject_headers() -> None:
    assert render(parse_template("%CLAIM(evil)%"), CONTEXT) == "xset-cookie: a=b"
    assert render(parse_template("%REQ(x-evil)%"), CONTEXT) == "ab"


def test_render_without_claims_gives_empty_claim_parts() -> None:
    assert render(parse_template("u=%CLAIM(sub)%"), TemplateContext()) == "u="


@settings(max_examples=300, deadline=None)
@given(claim=st.text(), header=st.text(), route=st.text())
def test_rendered_values_are_always_header_safe(claim: str, header: str, route: str) -> None:
    context = TemplateContext(route=route, claims={"c": claim}, headers=(("h", header),))
    value = render(parse_template("%ROUTE_NAME%|%CLAIM(c)%|%REQ(h)%"), context)
    value.encode("latin-1")  # representable on the wire
    assert not any((ord(ch) < 0x20 and ch != "\t") or ch == "\x7f" for ch in value)
    assert value == value.strip(" \t")


# ------------------------------------------------------------------ transforms


def _option(name: str, value: str, action: str = "append_if_exists_or_add") -> m.HeaderValueOption:
    return m.HeaderValueOption(name, value, action, parse_template(value))  # type: ignore[arg-type]


HEADERS = [("host", "h"), ("x-a", "1"), ("x-b", "2"), ("x-a", "3"), ("x-old", "o")]


def test_remove_then_rename_then_add() -> None:
    transform = m.HeaderTransform(
        add=(_option("x-a", "new"), _option("x-ip", "%CLIENT_IP%")),
        remove=("x-a",),
        rename=(("x-b", "x-c"),),
    )
    assert apply_transform(HEADERS, transform, CONTEXT) == [
        ("host", "h"),
        ("x-c", "2"),
        ("x-old", "o"),
        ("x-a", "new"),  # removed first, then added
        ("x-ip", "203.0.113.9"),
    ]


def test_rename_moves_every_value_and_replaces_the_target() -> None:
    headers = [("x-a", "1"), ("x-new", "stale"), ("x-a", "2")]
    transform = m.HeaderTransform(rename=(("x-a", "x-new"),))
    assert apply_transform(headers, transform, CONTEXT) == [("x-new", "1"), ("x-new", "2")]
    absent = m.HeaderTransform(rename=(("x-missing", "x-new"),))
    assert apply_transform(headers, absent, CONTEXT) == headers


def test_append_actions() -> None:
    append = m.HeaderTransform(add=(_option("x-a", "9"),))
    assert apply_transform(HEADERS, append, CONTEXT)[-1] == ("x-a", "9")
    assert len(apply_transform(HEADERS, append, CONTEXT)) == len(HEADERS) + 1
    if_absent = m.HeaderTransform(
        add=(_option("x-a", "9", "add_if_absent"), _option("x-z", "9", "add_if_absent"))
    )
    assert apply_transform(HEADERS, if_absent, CONTEXT) == [*HEADERS, ("x-z", "9")]
    overwrite = m.HeaderTransform(add=(_option("x-a", "9", "overwrite_if_exists_or_add"),))
    assert apply_transform(HEADERS, overwrite, CONTEXT) == [
        ("host", "h"),
        ("x-b", "2"),
        ("x-old", "o"),
        ("x-a", "9"),
    ]


def test_empty_rendered_value_adds_nothing() -> None:
    transform = m.HeaderTransform(
        add=(
            _option("x-tenant", "%CLAIM(tenant.id)%", "overwrite_if_exists_or_add"),
            _option("x-a", "%CLAIM(missing)%", "overwrite_if_exists_or_add"),
        )
    )
    out = apply_transform(HEADERS, transform, TemplateContext())
    assert out == HEADERS  # an empty value is skipped entirely, overwrite included


def test_option_without_template_is_literal_text() -> None:
    option = m.HeaderValueOption("x-lit", "%CLIENT_IP%\r\n")
    out = apply_transform([], m.HeaderTransform(add=(option,)), CONTEXT)
    assert out == [("x-lit", "%CLIENT_IP%")]


def test_names_in_input_are_matched_case_insensitively_and_input_is_kept() -> None:
    headers = [("X-A", "1"), ("x-b", "2")]
    before = list(headers)
    transform = m.HeaderTransform(remove=("x-a",), rename=(("x-b", "x-c"),))
    assert apply_transform(headers, transform, CONTEXT) == [("x-c", "2")]
    assert headers == before


@settings(max_examples=200, deadline=None)
@given(
    headers=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from("xyz")), max_size=6
    ),
    remove=st.lists(st.sampled_from(["a", "b", "c"]), max_size=2),
    action=st.sampled_from(
        ["append_if_exists_or_add", "add_if_absent", "overwrite_if_exists_or_add"]
    ),
)
def test_add_actions_keep_every_other_header_in_order(
    headers: list[tuple[str, str]], remove: list[str], action: Any
) -> None:
    transform = m.HeaderTransform(add=(_option("b", "new", action),), remove=tuple(remove))
    out = apply_transform(headers, transform, CONTEXT)
    kept = [(n, v) for n, v in headers if n not in remove]
    others = [(n, v) for n, v in kept if n != "b"]
    assert [(n, v) for n, v in out if n != "b"] == others
    before = [v for n, v in kept if n == "b"]
    after = [v for n, v in out if n == "b"]
    if action == "append_if_exists_or_add":
        assert after == [*before, "new"] and out[-1] == ("b", "new")
    elif action == "add_if_absent":
        assert after == (before or ["new"])
    else:
        assert after == ["new"] and out[-1] == ("b", "new")
