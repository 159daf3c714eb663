"""Authorization over verified claims: claim sets, all/any, nesting, and safe reasons."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gwcore.config import model as m
from gwcore.policy.authorize import authorize, claim_set, safe_text
from gwcore.routing.matchers import claim_values

CLAIMS: dict[str, Any] = {
    "sub": "u1",
    "scope": "read:items admin:read",
    "scp": ["openid", "profile"],
    "roles": ["admin", 7, True, None, {"x": 1}],
    "tenant": {"id": "acme", "tier": 3},
    "email_verified": False,
    "meta": None,
    "nested": {"scope": "a b"},
}


def _need(path: str, *values: str, mode: str = "all") -> m.Requirement:
    rule = m.ClaimRequirement(tuple(path.split(".")), values, mode)  # type: ignore[arg-type]
    return m.Requirement(claims=(rule,))


def test_claim_set_reads_claims_like_routing() -> None:
    assert claim_set(CLAIMS, ("scope",)) == frozenset({"read:items", "admin:read"})
    assert claim_set(CLAIMS, ("scp",)) == frozenset({"openid", "profile"})
    assert claim_set(CLAIMS, ("roles",)) == frozenset({"admin", "7", "true"})
    assert claim_set(CLAIMS, ("tenant", "id")) == frozenset({"acme"})
    assert claim_set(CLAIMS, ("tenant", "tier")) == frozenset({"3"})
    assert claim_set(CLAIMS, ("email_verified",)) == frozenset({"false"})
    # Only the top-level scope/scp strings are space-delimited lists.
    assert claim_set(CLAIMS, ("nested", "scope")) == frozenset({"a b"})
    assert claim_set(CLAIMS, ("meta",)) == frozenset()  # present, no values
    assert claim_set(CLAIMS, ("tenant",)) == frozenset()
    assert claim_set(CLAIMS, ("missing",)) is None
    assert claim_set(CLAIMS, ("sub", "deeper")) is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("ab"), inner),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    claims=st.dictionaries(st.sampled_from(["scope", "a", "b"]), _json, max_size=3),
    path=st.lists(st.sampled_from(["scope", "a", "b"]), min_size=1, max_size=2),
)
def test_claim_set_is_routings_claim_values_as_a_set(
    claims: dict[str, Any], path: list[str]
) -> None:
    values = claim_values(claims, tuple(path))
    got = claim_set(claims, tuple(path))
    assert got == (None if values is None else frozenset(values))


def test_empty_requirement_always_holds() -> None:
    assert authorize(m.Requirement(), None) is None
    assert authorize(m.Requirement(), {}) is None


def test_unauthenticated_fails_any_non_empty_requirement() -> None:
    assert authorize(_need("sub", "u1"), None) == "authentication required"


def test_mode_all_needs_every_value() -> None:
    assert authorize(_need("scope", "read:items", "admin:read"), CLAIMS) is None
    assert authorize(_need("scope", "read:items", "admin:write"), CLAIMS) == (
        "claim scope lacks admin:write"
    )


def test_mode_any_needs_one_value() -> None:
    assert authorize(_need("roles", "owner", "admin", mode="any"), CLAIMS) is None
    assert authorize(_need("roles", "owner", "editor", mode="any"), CLAIMS) == (
        "claim roles has none of owner editor"
    )
    assert authorize(_need("roles", mode="any"), CLAIMS) is not None  # any of nothing


def test_absent_claim_fails_and_present_null_has_no_values() -> None:
    assert authorize(_need("tenant.region", "eu"), CLAIMS) == "claim tenant.region missing"
    assert authorize(_need("meta", "x"), CLAIMS) == "claim meta lacks x"
    assert authorize(_need("meta"), CLAIMS) is None  # all of nothing: present is enough
    assert authorize(_need("missing"), CLAIMS) == "claim missing missing"


def test_scalars_compare_as_text() -> None:
    assert authorize(_need("tenant.tier", "3"), CLAIMS) is None
    assert authorize(_need("email_verified", "true"), CLAIMS) == "claim email_verified lacks true"
    assert authorize(_need("roles", "true", "7"), CLAIMS) is None


def test_all_of_and_any_of_compose() -> None:
    admin = _need("roles", "admin")
    owner = _need("roles", "owner")
    tenant = _need("tenant.id", "acme")
    rule = m.Requirement(all_of=(tenant,), any_of=(owner, admin))
    assert authorize(rule, CLAIMS) is None
    failing = m.Requirement(any_of=(owner, _need("scope", "root")))
    assert authorize(failing, CLAIMS) == "no alternative holds (claim roles lacks owner)"
    ordered = m.Requirement(claims=_need("sub", "u2").claims, all_of=(owner,), any_of=(owner,))
    assert authorize(ordered, CLAIMS) == "claim sub lacks u2"  # claims first
    nested = m.Requirement(all_of=(m.Requirement(all_of=(owner,)),))
    assert authorize(nested, CLAIMS) == "claim roles lacks owner"


def test_reasons_never_echo_claims_and_are_header_safe() -> None:
    hostile = {"role": 'x"\r\nSet-Cookie: a=b\\'}
    reason = authorize(_need("role", "admin"), hostile)
    assert reason == "claim role lacks admin"
    weird = _need('ro"le\n', 'ad"min\\\u00e9' + "z" * 100)
    reason = authorize(weird, {})
    assert reason is not None
    assert all(" " <= ch <= "~" and ch not in '"\\' for ch in reason)
    assert len(reason) < 150


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_safe_text_is_printable_ascii_without_quotes(text: str) -> None:
    safe = safe_text(text)
    assert all(" " <= ch <= "~" and ch not in '"\\' for ch in safe)
    assert len(safe) <= 64
