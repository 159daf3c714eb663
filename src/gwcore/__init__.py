"""gwcore: a sans-IO API gateway core. Use one layer alone, or the whole engine.

The contract of every layer: **bytes and facts in, decisions out; no I/O, no clock,
no randomness — time and randomness are arguments.** No layer opens a socket, reads
a clock or draws a random number: ``now`` (monotonic seconds), ``wall`` (Unix
seconds, for JWT time claims) and an entropy source are passed in by the caller.

The layers, each usable on its own (a walk-through with runnable snippets is in
``docs/embedding.md``):

- **config** (:mod:`gwcore.config`): YAML text, a file or a mapping in; a frozen,
  typed :class:`GatewayConfig` out, or one :class:`ConfigError` listing every problem
  with its file, line, column and key path (:class:`ConfigIssue`).
- **routing** (:mod:`gwcore.routing`): :class:`RouteTable` compiles a config's routes
  once; ``table.match(RouteRequest(...))`` answers :class:`Matched`, :class:`NoRoute`,
  or asks for more: :class:`NeedClaims` (continue with ``with_claims(verified)``) or
  :class:`NeedBody` (``with_body(body)``). :func:`explain` says why, route by route
  (an :class:`Explanation`).
- **policy** (:mod:`gwcore.policy`): :class:`JwtAuthenticator` verifies a token for
  one :class:`JwtProvider` (keys from a :class:`JwksSource`) at a given ``now``,
  answering :class:`VerifiedToken`, :class:`JwtError`, or :class:`KeysNeeded` when you
  must fetch a remote JWKS first; :func:`find_token` finds the token in a request.
  :class:`TokenBucket` and :class:`SlidingWindow` (both :class:`RateLimiter`;
  :func:`limiter_for` builds one from a :class:`RateLimit`) ``take(key, now)`` a
  :class:`RateDecision`, and :func:`rate_limit_headers` turns decisions into
  ``RateLimit``/``Retry-After`` headers. :func:`client_ip` finds the client behind
  :class:`TrustedProxies`.
- **engine** (:mod:`gwcore.gateway`): :class:`Gateway` is the whole proxy as a state
  machine, ``gateway.handle(event, now, wall=...) -> list[Action]``; it draws its
  randomness from an :class:`Entropy` you pass (``random.Random()`` will do). Its
  events and actions stay in :mod:`gwcore.gateway`.

Adapters do the I/O: ``gwcore_trio`` and ``gwcore_asyncio`` (servers), and the ASGI
middleware :mod:`gwcore.asgi`, the one module in this package that does I/O itself (it
is never imported by ``import gwcore``).

The names below are imported lazily (PEP 562): ``import gwcore`` costs almost nothing,
and ``gwcore.RouteTable`` imports only the layer it comes from.
"""

from __future__ import annotations

import importlib

# typing.TYPE_CHECKING without importing typing (mypy and pyright read this name too).
TYPE_CHECKING = False

if TYPE_CHECKING:  # what mypy and IDEs see; keep in step with _EXPORTS (a test checks)
    from typing import Any

    from gwcore.config import (
        ConfigError,
        ConfigIssue,
        GatewayConfig,
        load_config,
        load_config_file,
        load_config_text,
    )
    from gwcore.config.model import JwksSource, JwtProvider, RateLimit
    from gwcore.gateway import Entropy, Gateway
    from gwcore.policy.client_ip import TrustedProxies, client_ip
    from gwcore.policy.jwt import JwtAuthenticator, JwtError, KeysNeeded, VerifiedToken, find_token
    from gwcore.policy.ratelimit import (
        RateDecision,
        RateLimiter,
        SlidingWindow,
        TokenBucket,
        limiter_for,
        rate_limit_headers,
    )
    from gwcore.routing import (
        Explanation,
        Matched,
        NeedBody,
        NeedClaims,
        NoRoute,
        RouteRequest,
        RouteTable,
        explain,
    )

# Public name -> the module it is imported from on first use.
_EXPORTS: dict[str, str] = {
    # config: load and validate
    "ConfigError": "gwcore.config",
    "ConfigIssue": "gwcore.config",
    "GatewayConfig": "gwcore.config",
    "load_config": "gwcore.config",
    "load_config_file": "gwcore.config",
    "load_config_text": "gwcore.config",
    # routing: compile and query a route table
    "Explanation": "gwcore.routing",
    "Matched": "gwcore.routing",
    "NeedBody": "gwcore.routing",
    "NeedClaims": "gwcore.routing",
    "NoRoute": "gwcore.routing",
    "RouteRequest": "gwcore.routing",
    "RouteTable": "gwcore.routing",
    "explain": "gwcore.routing",
    # JWT: a provider (built in code or taken from a config) and its authenticator
    "JwksSource": "gwcore.config.model",
    "JwtAuthenticator": "gwcore.policy.jwt",
    "JwtError": "gwcore.policy.jwt",
    "JwtProvider": "gwcore.config.model",
    "KeysNeeded": "gwcore.policy.jwt",
    "VerifiedToken": "gwcore.policy.jwt",
    "find_token": "gwcore.policy.jwt",
    # rate limits
    "RateDecision": "gwcore.policy.ratelimit",
    "RateLimit": "gwcore.config.model",
    "RateLimiter": "gwcore.policy.ratelimit",
    "SlidingWindow": "gwcore.policy.ratelimit",
    "TokenBucket": "gwcore.policy.ratelimit",
    "limiter_for": "gwcore.policy.ratelimit",
    "rate_limit_headers": "gwcore.policy.ratelimit",
    # client IP
    "TrustedProxies": "gwcore.policy.client_ip",
    "client_ip": "gwcore.policy.client_ip",
    # the whole engine
    "Entropy": "gwcore.gateway",
    "Gateway": "gwcore.gateway",
}

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "Entropy",
    "Explanation",
    "Gateway",
    "GatewayConfig",
    "JwksSource",
    "JwtAuthenticator",
    "JwtError",
    "JwtProvider",
    "KeysNeeded",
    "Matched",
    "NeedBody",
    "NeedClaims",
    "NoRoute",
    "RateDecision",
    "RateLimit",
    "RateLimiter",
    "RouteRequest",
    "RouteTable",
    "SlidingWindow",
    "TokenBucket",
    "TrustedProxies",
    "VerifiedToken",
    "client_ip",
    "explain",
    "find_token",
    "limiter_for",
    "load_config",
    "load_config_file",
    "load_config_text",
    "rate_limit_headers",
]


# Defined for the interpreter only: type checkers see the imports above, so a
# misspelt name is an error for them rather than Any.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """Import a public name from its layer on first use (PEP 562), then keep it."""
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value


def __dir__() -> list[str]:
    """The module's names, including the lazy ones not imported yet."""
    return sorted({*globals(), *__all__})
