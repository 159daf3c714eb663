"""Policy: JWT/JWKS verification, claim ACLs, rate limits, client IP, header transforms.

Every piece is pure (time is an argument: ``now``) and usable alone:

- JWT (:mod:`gwcore.policy.jwt`, keys in :mod:`gwcore.policy.jwks`):
  ``JwtAuthenticator(provider).authenticate(token, now)`` answers a
  :class:`VerifiedToken`, a :class:`JwtError`, or :class:`KeysNeeded` (fetch the
  remote JWKS yourself: ``take_fetch(now)`` gives the URL, ``fetch_succeeded`` /
  ``fetch_failed`` report the outcome); :func:`find_token` finds the token in a
  request.
- Authorization (:mod:`gwcore.policy.authorize`): ``authorize(requirement, claims)``
  is ``None`` or the reason it fails.
- Rate limits (:mod:`gwcore.policy.ratelimit`): :class:`TokenBucket`,
  :class:`SlidingWindow` (both :class:`RateLimiter`; :func:`limiter_for` builds one
  from config) ``take(key, now)`` a :class:`RateDecision`;
  :func:`rate_limit_headers` turns decisions into response headers.
- Client IP (:mod:`gwcore.policy.client_ip`): ``client_ip(peer, headers,
  TrustedProxies([...]))``.
- Paths (:mod:`gwcore.policy.paths`): :func:`normalize_target`, :class:`PathError`.
- Tracing (:mod:`gwcore.policy.tracing`): :func:`trace_context` (ids from a
  ``random_bits`` callable you pass).
- Header transforms (:mod:`gwcore.policy.transforms`): :func:`apply_transform` with a
  :class:`TemplateContext`.

Names are imported from their module on first use (PEP 562), so importing one piece
does not import the others. Two names are functions that share their module's name,
``authorize`` and ``client_ip``: they are imported eagerly, because importing the
submodule would otherwise bind the *module* to that name on this package.
``gwcore.policy.client_ip`` is therefore the function; for the module, use
``from gwcore.policy.client_ip import ...`` or ``sys.modules``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Eager: a function named like its own submodule (see the module docstring).
from gwcore.policy.authorize import authorize
from gwcore.policy.client_ip import TrustedProxies, client_ip, parse_address

if TYPE_CHECKING:  # what mypy and IDEs see; keep in step with _LAZY (a test checks)
    from gwcore.policy.jwks import JwksError, JwksKeySet
    from gwcore.policy.jwt import (
        FoundToken,
        JwtAuthenticator,
        JwtError,
        KeysNeeded,
        VerifiedToken,
        find_token,
        unverified_issuer,
        verify_jws,
    )
    from gwcore.policy.paths import PathError, normalize_target
    from gwcore.policy.ratelimit import (
        RateDecision,
        RateLimiter,
        SlidingWindow,
        TokenBucket,
        limiter_for,
        rate_limit_headers,
        rate_limit_key,
    )
    from gwcore.policy.tracing import TraceContext, trace_context
    from gwcore.policy.transforms import TemplateContext, apply_transform

# Public name -> the module it is imported from on first use.
_LAZY: dict[str, str] = {
    "FoundToken": "gwcore.policy.jwt",
    "JwtAuthenticator": "gwcore.policy.jwt",
    "JwtError": "gwcore.policy.jwt",
    "KeysNeeded": "gwcore.policy.jwt",
    "VerifiedToken": "gwcore.policy.jwt",
    "find_token": "gwcore.policy.jwt",
    "unverified_issuer": "gwcore.policy.jwt",
    "verify_jws": "gwcore.policy.jwt",
    "JwksError": "gwcore.policy.jwks",
    "JwksKeySet": "gwcore.policy.jwks",
    "PathError": "gwcore.policy.paths",
    "normalize_target": "gwcore.policy.paths",
    "RateDecision": "gwcore.policy.ratelimit",
    "RateLimiter": "gwcore.policy.ratelimit",
    "SlidingWindow": "gwcore.policy.ratelimit",
    "TokenBucket": "gwcore.policy.ratelimit",
    "limiter_for": "gwcore.policy.ratelimit",
    "rate_limit_headers": "gwcore.policy.ratelimit",
    "rate_limit_key": "gwcore.policy.ratelimit",
    "TraceContext": "gwcore.policy.tracing",
    "trace_context": "gwcore.policy.tracing",
    "TemplateContext": "gwcore.policy.transforms",
    "apply_transform": "gwcore.policy.transforms",
}

__all__ = [
    "FoundToken",
    "JwksError",
    "JwksKeySet",
    "JwtAuthenticator",
    "JwtError",
    "KeysNeeded",
    "PathError",
    "RateDecision",
    "RateLimiter",
    "SlidingWindow",
    "TemplateContext",
    "TokenBucket",
    "TraceContext",
    "TrustedProxies",
    "VerifiedToken",
    "apply_transform",
    "authorize",
    "client_ip",
    "find_token",
    "limiter_for",
    "normalize_target",
    "parse_address",
    "rate_limit_headers",
    "rate_limit_key",
    "trace_context",
    "unverified_issuer",
    "verify_jws",
]


# Defined for the interpreter only: type checkers see the imports above, so a
# misspelt name is an error for them rather than Any.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """Import a public name from its module on first use (PEP 562), then keep it."""
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value


def __dir__() -> list[str]:
    """The module's names, including the lazy ones not imported yet."""
    return sorted({*globals(), *__all__})
