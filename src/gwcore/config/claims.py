"""How a verified JWT claim is read, for routing (``jwt_claim``), authorization
(``require``) and rate-limit keys alike: one definition, so the three agree."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["claim_values"]

_SPACE_DELIMITED_CLAIMS = frozenset({"scope", "scp"})


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    return None


def claim_values(claims: Mapping[str, Any], path: tuple[str, ...]) -> list[str] | None:
    """The texts a claim offers for matching, or ``None`` when the claim is absent.

    Scalars give one text; arrays give one per scalar element; ``scope``/``scp``
    strings give one per space-delimited scope. Objects and null give none (but
    still count as present).
    """
    node: Any = claims
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, list):
        return [t for t in (_scalar_text(e) for e in node) if t is not None]
    if isinstance(node, str) and path[-1] in _SPACE_DELIMITED_CLAIMS and len(path) == 1:
        return node.split()
    text = _scalar_text(node)
    return [] if text is None else [text]
