"""Finding the token in a request (header, query, cookie) and reading its issuer."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_jwt_support import ISSUER, b64url, claims, craft, rsa_key, sign

from gwcore.config import model as m
from gwcore.policy.jwt import FoundToken, JwtError, find_token, unverified_issuer

BEARER = m.BEARER
QUERY = m.TokenSource("query", "access_token")
COOKIE = m.TokenSource("cookie", "jwt")
RAW_HEADER = m.TokenSource("header", "x-jwt")
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"


def _find(
    headers: list[tuple[str, str]],
    target: str = "/p",
    sources: tuple[m.TokenSource, ...] = (BEARER,),
) -> FoundToken | None:
    return find_token(headers, target, sources)


def _malformed(
    headers: list[tuple[str, str]],
    target: str = "/p",
    sources: tuple[m.TokenSource, ...] = (BEARER,),
) -> str:
    with pytest.raises(JwtError) as caught:
        find_token(headers, target, sources)
    assert caught.value.reason == "malformed"
    assert caught.value.status == 401
    return caught.value.description


# ------------------------------------------------------------------- bearer


@pytest.mark.parametrize(
    "value",
    [
        f"Bearer {TOKEN}",
        f"bearer {TOKEN}",
        f"BEARER {TOKEN}",
        f"bEaReR {TOKEN}",
        f"Bearer\t{TOKEN}",
        f"Bearer  \t  {TOKEN}",
        f"  Bearer {TOKEN}  ",
        f"Bearer {TOKEN}\t",
    ],
)
def test_bearer_scheme_is_case_insensitive_and_spaces_are_flexible(value: str) -> None:
    found = _find([("authorization", value)])
    assert found == FoundToken(TOKEN, BEARER)


@pytest.mark.parametrize(
    "value",
    ["Basic dXNlcjpwYXNz", "Bearerx abc", f"Bearer{TOKEN}", "Token abc", "Digest a=b", "Negotiate"],
)
def test_other_schemes_are_not_this_source(value: str) -> None:
    assert _find([("authorization", value)]) is None
    # ... and the next source is looked at
    found = _find([("authorization", value)], f"/p?access_token={TOKEN}", (BEARER, QUERY))
    assert found == FoundToken(TOKEN, QUERY)


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "bearer \t ", "  BEARER"])
def test_bearer_without_a_token_is_malformed(value: str) -> None:
    assert "empty token" in _malformed([("authorization", value)])


@pytest.mark.parametrize(
    "value",
    [
        "Bearer a b",
        f"Bearer {TOKEN}, Bearer {TOKEN}",
        'Bearer a"b',
        "Bearer a\\b",
        "Bearer a;b",
        "Bearer =abc",
        "Bearer abc=d",
        "Bearer \u00e9",
    ],
)
def test_bearer_with_an_ill_formed_token_is_malformed(value: str) -> None:
    assert "well-formed" in _malformed([("authorization", value)])


def test_bearer_b64token_alphabet_is_accepted() -> None:
    """RFC 6750: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" then "="s."""
    value = "AZaz09-._~+/=="
    assert _find([("authorization", f"Bearer {value}")]) == FoundToken(value, BEARER)


def test_two_bearer_headers_are_malformed_but_another_scheme_beside_is_fine() -> None:
    two = [("authorization", f"Bearer {TOKEN}"), ("authorization", f"bearer {TOKEN}")]
    assert "more than one" in _malformed(two)
    mixed = [("authorization", "Basic dXNlcjpwYXNz"), ("authorization", f"Bearer {TOKEN}")]
    assert _find(mixed) == FoundToken(TOKEN, BEARER)


def test_header_without_prefix() -> None:
    assert _find([("x-jwt", f" {TOKEN} ")], sources=(RAW_HEADER,)) == FoundToken(TOKEN, RAW_HEADER)
    assert "repeated" in _malformed([("x-jwt", TOKEN), ("x-jwt", TOKEN)], sources=(RAW_HEADER,))
    assert "empty token" in _malformed([("x-jwt", "  ")], sources=(RAW_HEADER,))
    assert "well-formed" in _malformed([("x-jwt", f"Bearer {TOKEN}")], sources=(RAW_HEADER,))
    custom = m.TokenSource("header", "x-auth", "JWT")
    assert _find([("x-auth", f"jwt {TOKEN}")], sources=(custom,)) == FoundToken(TOKEN, custom)
    assert _find([("x-auth", f"Bearer {TOKEN}")], sources=(custom,)) is None


def test_no_header_no_token() -> None:
    assert _find([("accept", "*/*")]) is None
    assert find_token([], "/", ()) is None


# -------------------------------------------------------------------- query


@pytest.mark.parametrize(
    "target",
    [
        f"/p?access_token={TOKEN}",
        f"/p?a=1&access_token={TOKEN}&b=2",
        f"/p?access%5Ftoken={TOKEN}",
        f"/p?access_token={TOKEN.replace('.', '%2E')}",
        f"/p?access_token={TOKEN}#fragment",
        f"/p?x=&&access_token={TOKEN}&",
    ],
)
def test_query_parameter(target: str) -> None:
    assert _find([], target, (QUERY,)) == FoundToken(TOKEN, QUERY)


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        (f"/p?access_token={TOKEN}&access_token={TOKEN}", "repeated"),
        ("/p?access_token=", "empty token"),
        ("/p?access_token", "empty token"),
        ("/p?access_token=%FF%FE", "not valid UTF-8"),
        ("/p?access_token=a%20b", "well-formed"),
        ("/p?access_token=a+b", "well-formed"),
    ],
)
def test_query_parameter_malformed(target: str, fragment: str) -> None:
    assert fragment in _malformed([], target, (QUERY,))


def test_query_absent() -> None:
    for target in ("/p", "/p?", "/p?access_tokens=x", "/p?token=x", "/p#access_token=x"):
        assert _find([], target, (QUERY,)) is None


# ------------------------------------------------------------------- cookie


@pytest.mark.parametrize(
    "headers",
    [
        [("cookie", f"jwt={TOKEN}")],
        [("cookie", f"a=1; jwt={TOKEN}; b=2")],
        [("cookie", f"a=1;jwt={TOKEN}")],
        [("cookie", "a=1"), ("cookie", f"jwt={TOKEN}")],
        [("cookie", f'jwt="{TOKEN}"')],
        [("cookie", f"jwt={TOKEN}; jwt={TOKEN}")],
        [("cookie", f"jwt={TOKEN}"), ("cookie", f"jwt={TOKEN}")],
    ],
)
def test_cookie(headers: list[tuple[str, str]]) -> None:
    assert _find(headers, sources=(COOKIE,)) == FoundToken(TOKEN, COOKIE)


def test_cookie_malformed_and_absent() -> None:
    assert "different values" in _malformed(
        [("cookie", f"jwt={TOKEN}"), ("cookie", "jwt=other")], sources=(COOKIE,)
    )
    assert "empty token" in _malformed([("cookie", "jwt=")], sources=(COOKIE,))
    assert "empty token" in _malformed([("cookie", 'jwt=""')], sources=(COOKIE,))
    for headers in ([("cookie", "JWT=x")], [("cookie", "jwtx=1; xjwt=2")], [("cookie", "jwt")]):
        assert _find(headers, sources=(COOKIE,)) is None


# -------------------------------------------------------------------- order


def test_first_present_source_wins() -> None:
    sources = (BEARER, QUERY, COOKIE)
    cookie_only = [("cookie", f"jwt={TOKEN}")]
    assert _find(cookie_only, "/p", sources) == FoundToken(TOKEN, COOKIE)
    both = [("authorization", f"Bearer {TOKEN}"), ("cookie", "jwt=other")]
    assert _find(both, "/p?access_token=x", sources) == FoundToken(TOKEN, BEARER)
    # an earlier present source decides, even when a later one is broken...
    assert _find(both, "/p?access_token=a&access_token=b", sources) == FoundToken(TOKEN, BEARER)
    # ... and an earlier broken source is an error, even when a later one is fine
    broken = [("authorization", "Bearer"), ("cookie", f"jwt={TOKEN}")]
    _malformed(broken, "/p", sources)


@settings(max_examples=200, deadline=None)
@given(
    token=st.text(string.ascii_letters + string.digits + "-._~+/", min_size=1, max_size=60),
    scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "BeArEr"]),
    before=st.text(" \t", max_size=3),
    between=st.text(" \t", min_size=1, max_size=4),
    after=st.text(" \t", max_size=3),
    noise=st.lists(
        st.tuples(
            st.sampled_from(["accept", "cookie", "authorization", "x-y"]),
            st.sampled_from(["Basic abc", "a=b", "", "Digest x"]),
        ),
        max_size=4,
    ),
)
def test_bearer_token_is_always_found(
    token: str,
    scheme: str,
    before: str,
    between: str,
    after: str,
    noise: list[tuple[str, str]],
) -> None:
    headers = [*noise, ("authorization", f"{before}{scheme}{between}{token}{after}")]
    assert _find(headers, "/p?access_token=zz", (BEARER, QUERY, COOKIE)) == FoundToken(
        token, BEARER
    )


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(
        st.tuples(st.sampled_from(["authorization", "cookie", "x-jwt"]), st.text(max_size=40)),
        max_size=4,
    ),
    target=st.text(max_size=60),
)
def test_find_token_only_raises_malformed(headers: list[tuple[str, str]], target: str) -> None:
    try:
        found = find_token(headers, target, (BEARER, RAW_HEADER, QUERY, COOKIE))
    except JwtError as error:
        assert error.reason == "malformed"
        assert set(error.description) <= set(string.printable) - set('"\\\t\n\r\x0b\x0c')
    else:
        assert found is None or found.token


# --------------------------------------------------------- unverified_issuer


def test_unverified_issuer() -> None:
    token = sign(claims(), rsa_key(), "RS256", kid="rsa-1")
    assert unverified_issuer(token) == ISSUER
    head, body, signature = token.split(".")
    assert unverified_issuer(f"{head}.{body}.forged") == ISSUER  # nothing is verified
    for bad in (
        "",
        "a.b",
        f"{head}.{body}",
        f"{head}.{body}.{signature}.x",
        f"{head}.{body}=.{signature}",
        f"{head}.!!!.{signature}",
        craft({"alg": "none"}, {"iss": 7}),
        craft({"alg": "none"}, b"[]"),
        craft({"alg": "none"}, b"\xff"),
        craft({"alg": "none"}, b'{"iss":"a","iss":"b"}'),
        craft({"alg": "none"}, {"sub": "x"}),
        f"{head}.{b64url(b'{' * 100_000)}.{signature}",
        "\u00e9.\u00e9.\u00e9",
    ):
        assert unverified_issuer(bad) is None, bad[:40]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.from_regex(r"[A-Za-z0-9_-]{0,40}(\.[A-Za-z0-9_=-]{0,40}){0,3}"))
def test_unverified_issuer_never_raises(token: str) -> None:
    issuer = unverified_issuer(token)
    assert issuer is None or isinstance(issuer, str)


# ------------------------------------------------------------------ remove_token


def test_remove_token_drops_exactly_the_source() -> None:
    from gwcore.policy.jwt import remove_token

    headers = [("authorization", "Bearer t"), ("cookie", "a=1; session=t; b=2"), ("x", "y")]
    out, target = remove_token(headers, "/p?x=1", m.TokenSource("header", "authorization"))
    assert out == [("cookie", "a=1; session=t; b=2"), ("x", "y")] and target == "/p?x=1"

    out, target = remove_token(headers, "/p", m.TokenSource("cookie", "session"))
    assert out == [("authorization", "Bearer t"), ("cookie", "a=1; b=2"), ("x", "y")]
    only_cookie = [("cookie", "session=t")]
    assert remove_token(only_cookie, "/", m.TokenSource("cookie", "session"))[0] == []

    query = m.TokenSource("query", "access_token")
    assert remove_token([], "/p?a=%20&access_token=t&b=2", query)[1] == "/p?a=%20&b=2"
    assert remove_token([], "/p?access_token=t", query)[1] == "/p"
    assert remove_token([], "/p?access%5Ftoken=t&c", query)[1] == "/p?c"  # decoded name
    assert remove_token([], "/p", query)[1] == "/p"
