"""The policy pipeline the engine runs for every request, before any upstream work.

Order (documented in ``docs/architecture.md``)::

    sanitize client-sent trusted headers -> client IP -> path normalization
    -> route (JWT verified lazily when a claim matcher needs it)
    -> authenticate (the route's ``policy.jwt``) -> authorize (``require``)
    -> rate limit (global limits, then the route's) -> transform -> dispatch

:class:`Guard` holds the long-lived policy state (JWT authenticators with their key
caches, rate limiters, trusted proxies); :class:`AuthState` is one request's view
(which tokens were found and what verifying them gave). Every step that needs JWKS
keys not yet fetched answers :class:`~gwcore.policy.jwt.KeysNeeded`; the engine parks
the request, emits ``FetchJwks`` and calls again when keys arrive. Steps before
that point have no side effects, so calling again is safe: rate limits are taken
only once every key part (including claims) is known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gwcore.config import model as m
from gwcore.policy.authorize import authorize
from gwcore.policy.client_ip import TrustedProxies, client_ip
from gwcore.policy.jwt import (
    FoundToken,
    JwtAuthenticator,
    JwtError,
    KeysNeeded,
    VerifiedToken,
    bearer_challenge,
    find_token,
    remove_token,
    unverified_issuer,
)
from gwcore.policy.paths import PathError, normalize_target
from gwcore.policy.ratelimit import (
    RateDecision,
    RateLimiter,
    limiter_for,
    rate_limit_headers,
    rate_limit_key,
)
from gwcore.policy.tracing import trace_context
from gwcore.policy.transforms import TemplateContext, apply_transform, render
from gwcore.protocol.messages import Headers, RequestHead

_NO_CLAIMS: Mapping[str, Any] = {}
_NO_POLICY = m.RoutePolicy()


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request refused by policy: answer ``status`` with ``headers`` and ``body``.

    ``flags`` goes to the access log (``UAEX`` refused by authentication or
    authorization, ``RL`` rate limited, ``DPE`` a bad request path). For gRPC
    clients the engine turns this into a trailers-only response carrying
    ``grpc_message``.
    """

    status: int
    body: str
    headers: Headers = ()
    flags: str = "UAEX"
    grpc_message: str = ""


@dataclass(frozen=True, slots=True)
class Allowed:
    """Every policy step passed. ``claims`` are the verified claims of the route's
    provider (``None``: the route needs no token, or none was sent and
    ``allow_missing`` let it through); ``found`` is where its token was (so
    ``forward: false`` removes exactly that); ``response_headers`` (rate-limit
    headers) go on the response to the client."""

    claims: Mapping[str, Any] | None
    found: FoundToken | None
    provider: m.JwtProvider | None
    response_headers: Headers = ()


@dataclass(eq=False)
class AuthState:
    """One request as policy sees it: sanitized headers, the client IP, and what
    verifying its tokens gave so far (so a step repeated after a JWKS fetch reuses
    the results)."""

    head: RequestHead
    client_ip: str
    results: dict[str, VerifiedToken | JwtError | None] = field(default_factory=dict)
    found: dict[str, FoundToken | JwtError | None] = field(default_factory=dict)
    routing: Mapping[str, Any] | None = None  # claims used for routing and claim keys
    touched: set[str] = field(default_factory=set)  # providers to offer a fetch to


class Guard:
    """Policy state for one gateway configuration (see the module docstring)."""

    def __init__(self, config: m.GatewayConfig) -> None:
        self.config = config
        self.authenticators: dict[str, JwtAuthenticator] = {
            name: JwtAuthenticator(provider) for name, provider in config.jwt_providers.items()
        }
        self._by_issuer = {p.issuer: p for p in config.jwt_providers.values()}
        self.limiters: dict[str, RateLimiter] = {
            name: limiter_for(limit) for name, limit in config.rate_limits.items()
        }
        self.trusted = TrustedProxies(config.trusted_proxies)
        self._untrusted = frozenset(config.untrusted_request_headers) | frozenset(
            c.header for p in config.jwt_providers.values() for c in p.claims_to_headers
        )
        # All token sources, for finding a token to route on (deduplicated, in order).
        sources: list[m.TokenSource] = []
        for provider in config.jwt_providers.values():
            sources += [s for s in provider.sources if s not in sources]
        self._routing_sources = tuple(sources)

    # ----------------------------------------------------------------- before

    def prepare(self, head: RequestHead, peer: str) -> AuthState | Rejection:
        """Sanitize the head, compute the client IP, normalize the path."""
        headers = head.headers
        if self._untrusted and any(name in self._untrusted for name, _ in headers):
            headers = tuple((n, v) for n, v in headers if n not in self._untrusted)
        target = head.target
        normalization = self.config.path_normalization
        if normalization.enabled and target.startswith("/"):
            try:
                target = normalize_target(target, normalization)
            except PathError as exc:
                return Rejection(
                    400, f"bad request path: {exc}\n", flags="DPE", grpc_message=str(exc)
                )
        if headers is not head.headers or target != head.target:
            head = replace(head, headers=headers, target=target)
        ip = client_ip(peer, headers, self.trusted)
        return AuthState(head, ip)

    # ---------------------------------------------------------- authenticate

    def _find(self, state: AuthState, provider: m.JwtProvider) -> FoundToken | JwtError | None:
        if provider.name not in state.found:
            try:
                found = find_token(state.head.headers, state.head.target, provider.sources)
            except JwtError as exc:
                state.found[provider.name] = exc
            else:
                state.found[provider.name] = found
        return state.found[provider.name]

    def _verify(
        self, state: AuthState, provider: m.JwtProvider, wall: float
    ) -> VerifiedToken | JwtError | KeysNeeded | None:
        """The token for ``provider`` verified (``None``: the request has none)."""
        if provider.name in state.results:
            return state.results[provider.name]
        found = self._find(state, provider)
        if found is None or isinstance(found, JwtError):
            state.results[provider.name] = found
            return found
        result = self.authenticators[provider.name].authenticate(found.token, wall)
        state.touched.add(provider.name)
        if not isinstance(result, KeysNeeded):
            state.results[provider.name] = result
        return result

    def routing_claims(self, state: AuthState, wall: float) -> Mapping[str, Any] | KeysNeeded:
        """Verified claims for routing on ``jwt_claim`` (and claim rate-limit keys).

        The token is verified by the provider whose ``issuer`` equals its ``iss``;
        a request with no token, or whose token fails verification, has no claims
        (``{}``), so it never satisfies a claim matcher.
        """
        if state.routing is not None:
            return state.routing
        claims: Mapping[str, Any] = _NO_CLAIMS
        try:
            found = find_token(state.head.headers, state.head.target, self._routing_sources)
        except JwtError:
            found = None
        issuer = unverified_issuer(found.token) if found is not None else None
        provider = self._by_issuer.get(issuer) if issuer is not None else None
        if provider is not None:
            result = self._verify(state, provider, wall)
            if isinstance(result, KeysNeeded):
                return result
            if isinstance(result, VerifiedToken):
                claims = result.claims
        state.routing = claims
        return claims

    # --------------------------------------------------------------- enforce

    def enforce(
        self, state: AuthState, route: m.Route | None, now: float, wall: float
    ) -> Allowed | Rejection | KeysNeeded:
        """Authenticate, authorize and rate limit a request routed to ``route``
        (``None``: no route matched; only the global rate limits apply)."""
        policy = route.policy if route is not None else _NO_POLICY
        claims: Mapping[str, Any] | None = None
        found: FoundToken | None = None
        provider: m.JwtProvider | None = None
        if policy.jwt is not None:
            provider = self.config.jwt_providers[policy.jwt.provider]
            result = self._verify(state, provider, wall)
            if isinstance(result, KeysNeeded):
                return result
            if result is None:
                if not policy.jwt.allow_missing:
                    return self._unauthorized(provider, None)
            elif isinstance(result, JwtError):
                return self._unauthorized(provider, result)
            else:
                claims = result.claims
                f = state.found.get(provider.name)
                found = f if isinstance(f, FoundToken) else None
        if not policy.require.empty:
            reason = authorize(policy.require, claims)
            if reason is not None:
                assert provider is not None  # the loader requires jwt beside require
                if claims is None:
                    return self._unauthorized(provider, None)
                return self._forbidden(provider, reason)
        limits = [*self.config.global_policy.rate_limits, *policy.rate_limits]
        if not limits:
            return Allowed(claims, found, provider)
        keys: list[tuple[RateLimiter, str]] = []
        for name in limits:
            config = self.config.rate_limits[name]
            key_claims = claims
            if key_claims is None and any(p.kind == "claim" for p in config.key):
                routing = self.routing_claims(state, wall)
                if isinstance(routing, KeysNeeded):
                    return routing
                key_claims = routing
            key = rate_limit_key(
                config,
                client_ip=state.client_ip,
                route=route.label if route is not None else "",
                claims=key_claims,
                headers=state.head.headers,
            )
            if key is not None:
                keys.append((self.limiters[name], key))
        decisions: list[tuple[RateLimiter, RateDecision]] = [
            (limiter, limiter.take(key, now)) for limiter, key in keys
        ]
        headers = tuple(rate_limit_headers(decisions)) if decisions else ()
        denied = [limiter.name for limiter, d in decisions if not d.allowed]
        if denied:
            return Rejection(
                429,
                f"rate limited ({', '.join(denied)})\n",
                headers,
                flags="RL",
                grpc_message="rate limited",
            )
        return Allowed(claims, found, provider, headers)

    @staticmethod
    def _unauthorized(provider: m.JwtProvider, error: JwtError | None) -> Rejection:
        if error is None:  # RFC 6750 §3.1: no error code when no credentials were sent
            challenge = JwtError("missing").www_authenticate(provider.realm)
            return Rejection(
                401,
                "authentication required\n",
                (("www-authenticate", challenge),),
                grpc_message="authentication required",
            )
        if error.status != 401:
            return Rejection(
                error.status, f"{error.description}\n", flags="UAEX", grpc_message=error.description
            )
        message = f"invalid token: {error.description}"
        return Rejection(
            401,
            message + "\n",
            (("www-authenticate", error.www_authenticate(provider.realm)),),
            grpc_message=message,
        )

    @staticmethod
    def _forbidden(provider: m.JwtProvider, reason: str) -> Rejection:
        challenge = bearer_challenge(provider.realm, "insufficient_scope", reason)
        message = f"forbidden: {reason}"
        return Rejection(
            403, message + "\n", (("www-authenticate", challenge),), grpc_message=message
        )

    # ------------------------------------------------------------- transform

    @staticmethod
    def template_context(
        state: AuthState, request_id: str, route: m.Route | None, allowed: Allowed | None
    ) -> TemplateContext:
        """What header templates see: the client IP, the request id, the route's name,
        and the verified claims (the route's provider's, else those used for routing)."""
        claims = allowed.claims if allowed is not None else None
        return TemplateContext(
            client_ip=state.client_ip,
            request_id=request_id,
            route=(route.name or "") if route is not None else "",
            claims=claims if claims is not None else state.routing,
            headers=state.head.headers,
        )

    def upstream_headers(
        self,
        headers: Headers,
        state: AuthState,
        allowed: Allowed | None,
        route: m.Route,
        vhost: m.VirtualHost | None,
        context: TemplateContext,
        random_bits: Callable[[int], int],
    ) -> Headers:
        """The final upstream request headers: the token removed when its provider
        says ``forward: false``, claims copied into headers, trace context, then the
        virtual host's and the route's request transforms (the route's last)."""
        out = list(headers)
        if allowed is not None and allowed.provider is not None:
            provider = allowed.provider
            found = allowed.found
            if not provider.forward and found is not None and found.source.kind != "query":
                out, _ = remove_token(out, "", found.source)
            if allowed.claims is not None:
                for mapping in provider.claims_to_headers:
                    value = render((m.TemplatePart("claim", path=mapping.path),), context)
                    out = [(n, v) for n, v in out if n != mapping.header]
                    if value:
                        out.append((mapping.header, value))
        if self.config.tracing:
            trace = trace_context(
                state.head.headers, random_bits, sampled=self.config.trace_sampled
            )
            out = [(n, v) for n, v in out if n not in ("traceparent", "tracestate")]
            out.append(("traceparent", trace.traceparent))
            if trace.tracestate:
                out.append(("tracestate", trace.tracestate))
        if vhost is not None and not vhost.request_headers.empty:
            out = apply_transform(out, vhost.request_headers, context)
        if not route.request_headers.empty:
            out = apply_transform(out, route.request_headers, context)
        return tuple(out)

    @staticmethod
    def upstream_target(target: str, allowed: Allowed | None) -> str:
        """The request target to send upstream: without the token's query parameter
        when it came from one and its provider says ``forward: false``."""
        if allowed is None or allowed.provider is None or allowed.provider.forward:
            return target
        found = allowed.found
        if found is None or found.source.kind != "query":
            return target
        return remove_token((), target, found.source)[1]

    @staticmethod
    def response_headers(
        headers: Sequence[tuple[str, str]],
        route: m.Route | None,
        vhost: m.VirtualHost | None,
        context: TemplateContext,
        extra: Headers = (),
    ) -> Headers:
        """Response headers after the route's and the virtual host's response
        transforms, plus ``extra`` (rate-limit headers)."""
        out = list(headers)
        if route is not None and not route.response_headers.empty:
            out = apply_transform(out, route.response_headers, context)
        if vhost is not None and not vhost.response_headers.empty:
            out = apply_transform(out, vhost.response_headers, context)
        return (*out, *extra) if extra else tuple(out)
