"""Authorization rules over verified JWT claims (``Requirement`` / ``ClaimRequirement``).

Claims are read exactly as routing reads them (:func:`gwcore.config.claims.claim_values`):
scalars as text (booleans ``true``/``false``), arrays by their scalar elements, and the
top-level ``scope``/``scp`` strings split on spaces.

A failure comes back as a short reason meant for a ``WWW-Authenticate``
``error_description`` and for logs. It names the condition from the *configuration*
(claim name, required values) and never echoes what the token carried, so a client
cannot inject text into the response; configured text is sanitized too (printable
ASCII without ``"`` or ``\\``, shortened).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gwcore.config import model as m
from gwcore.config.claims import claim_values

_MAX_ECHO = 64


def claim_set(claims: Mapping[str, Any], path: tuple[str, ...]) -> frozenset[str] | None:
    """The set of texts a claim offers (see the module docstring), or ``None`` when the
    claim is absent. An object or ``null`` claim is present with no values."""
    values = claim_values(claims, path)
    return None if values is None else frozenset(values)


def safe_text(text: str) -> str:
    """``text`` made safe for a quoted header parameter: characters other than printable
    ASCII, ``"`` and ``\\`` become ``?``; longer than 64 characters is cut with ``...``."""
    cleaned = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "?" for ch in text)
    return cleaned if len(cleaned) <= _MAX_ECHO else cleaned[: _MAX_ECHO - 3] + "..."


def _check_claim(rule: m.ClaimRequirement, claims: Mapping[str, Any]) -> str | None:
    name = safe_text(rule.name)
    have = claim_set(claims, rule.path)
    if have is None:
        return f"claim {name} missing"
    if rule.mode == "all":
        for value in rule.values:
            if value not in have:
                return f"claim {name} lacks {safe_text(value)}"
        return None
    if any(value in have for value in rule.values):
        return None
    wanted = safe_text(" ".join(rule.values))
    return f"claim {name} has none of {wanted}"


def _check(requirement: m.Requirement, claims: Mapping[str, Any]) -> str | None:
    for rule in requirement.claims:
        reason = _check_claim(rule, claims)
        if reason is not None:
            return reason
    for sub in requirement.all_of:
        reason = _check(sub, claims)
        if reason is not None:
            return reason
    if requirement.any_of:
        reasons = [_check(sub, claims) for sub in requirement.any_of]
        if all(reason is not None for reason in reasons):
            return f"no alternative holds ({reasons[0]})"
    return None


def authorize(requirement: m.Requirement, claims: Mapping[str, Any] | None) -> str | None:
    """Whether verified ``claims`` satisfy ``requirement``: ``None`` when they do, else a
    short reason naming the first failing condition, in this order: ``claims`` entries,
    then ``all_of`` rules, then ``any_of`` (whose reason quotes its first alternative's).

    An empty requirement always holds, even without claims. ``claims`` ``None`` (the
    request is unauthenticated) fails any other requirement with ``"authentication
    required"``. A claim condition fails when the claim is absent; with mode ``all`` it
    fails on the first required value the claim lacks, with ``any`` when it has none of
    them (so ``any`` with no values never holds, ``all`` with none holds when present).

    Reasons are printable ASCII without quotes or backslashes, e.g.
    ``claim scope lacks admin:write``.
    """
    if requirement.empty:
        return None
    if claims is None:
        return "authentication required"
    return _check(requirement, claims)
