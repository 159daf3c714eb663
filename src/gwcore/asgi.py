"""ASGI 3 middleware: gwcore's policies and routing in front of ASGI applications.

Two ways to use it (``docs/asgi.md``)::

    app = GatewayApp("gateway.yaml", apps={"orders": orders_app, "admin": admin_app})
    app = guard(my_app, "gateway.yaml")          # every route's cluster is my_app

Each HTTP or websocket request goes through :class:`gwcore.gateway.guard.Guard` in the
engine's order: sanitize -> client IP -> path normalization -> route (claims verified
lazily; a GraphQL route reads the body first) -> authenticate -> authorize -> rate
limit -> transform. A route's ``cluster`` names the ASGI app that answers;
``direct_response``, ``redirect``, "no route" (404) and every rejection are answered
here. The app sees the transformed request headers, the normalized path and, in
``scope["gwcore"]``, who the caller is.

Unlike :mod:`gwcore.gateway` this module does I/O (remote JWKS over TCP/TLS) and reads
clocks and a random source: it is an adapter, written against anyio only, so it runs
under asyncio and trio servers alike. It lives in the ``gwcore`` namespace because it is
named ``gwcore.asgi``; the rest of ``gwcore`` stays pure (``tests/test_core_purity.py``).

Remote JWKS: a request that needs keys not fetched yet waits for the provider's one
fetch in flight (single flight; the first waiter performs it, shielded from its own
cancellation so a client going away cannot fail it for the others), bounded by the
provider's ``timeout``. Refreshes that are due after a request was verified run in the
background: in a task group the lifespan handler keeps open while the server runs, or,
when the server never sends ``lifespan``, in a task group of the request's own that is
exited (waiting at most the fetch timeout) when the request ends -- no task outlives
the request that started it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote_to_bytes

import anyio
import anyio.abc

from gwcore.config import model as m
from gwcore.config.loader import load_config, load_config_file, load_config_text
from gwcore.gateway.guard import Allowed, AuthState, Guard, Rejection
from gwcore.gateway.headers import (
    host_header_value,
    local_answer,
    redirect_location,
    request_id_for,
    rewrite_path,
)
from gwcore.policy.jwt import KeysNeeded
from gwcore.policy.transforms import TemplateContext
from gwcore.protocol.fetch import (
    FetchFailure,
    FetchOutcome,
    FetchResponse,
    HttpGet,
    failure,
    timed_out,
)
from gwcore.protocol.messages import (
    BodyFraming,
    FixedLength,
    Headers,
    NoBody,
    RequestHead,
    UnknownLength,
    header_values,
)
from gwcore.routing import Matched, NeedBody, NeedClaims, NoRoute, RouteRequest, RouteTable

__all__ = [
    "ASGIApp",
    "ConfigSource",
    "GatewayApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "guard",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ConfigSource = m.GatewayConfig | Mapping[str, Any] | str | os.PathLike[str]
"""A loaded config, a mapping shaped like the YAML document, a path to a YAML file, or
YAML text (a ``str`` containing a line break; any other ``str`` is a path)."""

DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
JWKS_MAX_BYTES: Final = 1024 * 1024  # as the FetchJwks action's default
_MAX_KEY_WAITS: Final = 4  # waits for keys per request; each is bounded by a fetch timeout
_READ_SIZE: Final = 65536
_SCHEMES: Final = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_PATH_SAFE: Final = "/!$&'()*+,;=:@~"  # RFC 3986 pchar punctuation, kept when re-quoting
# A cluster declared only so the loader accepts a route naming it; never connected to.

log = logging.getLogger("gwcore.asgi")


# --------------------------------------------------------------------------- config


def _load(config: ConfigSource) -> m.GatewayConfig:
    """Load ``config`` with :mod:`gwcore.config`. Routes name ASGI apps as clusters,
    which a config for this middleware need not declare under ``clusters:``."""
    if isinstance(config, m.GatewayConfig):
        return config
    if isinstance(config, Mapping):
        return load_config(config, apps_as_clusters=True)
    if isinstance(config, str) and "\n" in config:
        return load_config_text(config, apps_as_clusters=True)
    return load_config_file(Path(config), apps_as_clusters=True)


def _route_clusters(config: m.GatewayConfig) -> set[str]:
    """Every cluster name a route of ``config`` can send a request to."""
    names: set[str] = set()
    for vhost in config.virtual_hosts:
        for route in vhost.routes:
            action = route.action
            if isinstance(action, m.ForwardAction):
                if action.cluster is not None:
                    names.add(action.cluster)
                names.update(w.name for w in action.weighted_clusters)
    return names


# ------------------------------------------------------------------------- messages


def _decode_headers(raw: Iterable[Any]) -> Headers:
    return tuple(
        (bytes(name).decode("latin-1").lower(), bytes(value).decode("latin-1"))
        for name, value in raw
    )


def _encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    # Rendered templates are latin-1 safe (gwcore.policy.transforms); received text is
    # latin-1 by construction.
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _target(scope: Scope) -> str:
    """The request target as received: ``raw_path`` (else ``path`` re-quoted) and the
    query string, as latin-1 text like the codecs give it."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes | bytearray) and raw:
        path = bytes(raw).partition(b"?")[0].decode("latin-1")
    else:
        path = quote(str(scope.get("path") or "/"), safe=_PATH_SAFE)
    query = scope.get("query_string") or b""
    return f"{path}?{bytes(query).decode('latin-1')}" if query else path


def _framing(headers: Headers) -> BodyFraming:
    lengths = header_values(headers, "content-length")
    if len(lengths) == 1 and lengths[0].isascii() and lengths[0].isdigit():
        return FixedLength(int(lengths[0]))
    if lengths or header_values(headers, "transfer-encoding"):
        return UnknownLength()
    return NoBody()


@dataclass(frozen=True, slots=True)
class _Local:
    """A response the middleware gives itself (a rejection, a direct response, a
    redirect, 404, 413, 504), ready to send."""

    status: int
    headers: Headers
    body: bytes
    head_only: bool = False  # a HEAD request: announce the body's length, send none


def _local(
    head: RequestHead,
    status: int,
    body: str | bytes,
    headers: Headers = (),
    grpc_message: str | None = None,
) -> _Local:
    """As the engine answers locally (:func:`gwcore.gateway.headers.local_answer`); a
    HEAD request gets no body."""
    status, headers, data = local_answer(head.headers, status, body, headers, grpc_message)
    return _Local(status, headers, data, head.method == "HEAD")


def _rejected(head: RequestHead, rejection: Rejection) -> _Local:
    return _local(head, rejection.status, rejection.body, rejection.headers, rejection.grpc_message)


@dataclass(slots=True)
class _Dispatch:
    """A request allowed through to ``app``, with what the response needs."""

    app: ASGIApp
    scope: Scope
    head: RequestHead  # the request as policy saw it
    route: m.Route
    vhost: m.VirtualHost
    context: TemplateContext
    extra: Headers  # rate-limit headers for the response
    body: bytes | None  # read for routing: replayed to the app
    timeout: float | None


# -------------------------------------------------------------------------- spawner


_Start = Callable[[str, str, anyio.Event], None]


class _Spawner:
    """Starts background JWKS fetches for one request: in the lifespan task group when
    the server runs lifespan, else in a task group of the request's own, entered on
    first use (a request touching no remote JWKS pays nothing) and exited when the
    request ends, so nothing outlives it. Fetches in the request's group are shielded: a
    client going away must not fail a fetch others wait for; the fetch timeout bounds
    them. :meth:`ready` may wait; the function it returns starts a fetch at once, so a
    fetch taken from an authenticator is always started (no checkpoint in between)."""

    def __init__(self, owner: GatewayApp, stack: contextlib.AsyncExitStack) -> None:
        self._owner = owner
        self._stack = stack
        self._group: anyio.abc.TaskGroup | None = None

    async def ready(self) -> _Start:
        group = self._owner._background
        shield = False
        if group is None:
            if self._group is None:
                self._group = await self._stack.enter_async_context(anyio.create_task_group())
            group, shield = self._group, True
        fetch = self._owner._fetch

        def start(name: str, url: str, event: anyio.Event) -> None:
            group.start_soon(fetch, name, url, event, shield)

        return start


# ------------------------------------------------------------------------- lifespan


class _LifespanChild:
    """One app's lifespan, run as a task; messages to it and its replies go through
    memory streams."""

    def __init__(self, name: str, app: ASGIApp) -> None:
        self.name = name
        self.app = app
        self.running = False  # started and not shut down
        self._to_app, self._inbox = anyio.create_memory_object_stream[Message](math.inf)
        self._reply, self._replies = anyio.create_memory_object_stream[Message | Exception | None](
            math.inf
        )

    async def run(self, scope: Scope) -> None:
        async def send(message: Message) -> None:
            await self._reply.send(message)

        try:
            await self.app(scope, self._inbox.receive, send)
        except Exception as exc:  # reported by startup()/shutdown(), not here
            await self._reply.send(exc)
        else:
            await self._reply.send(None)

    async def startup(self) -> str | None:
        """Start the app: ``None`` when it started (or does not do lifespan), else why not."""
        await self._to_app.send({"type": "lifespan.startup"})
        reply = await self._replies.receive()
        if reply is None or isinstance(reply, Exception):
            # Returned or raised before answering: lifespan unsupported (as servers say).
            log.info("app %r does not support ASGI lifespan (%r)", self.name, reply)
            return None
        kind = reply.get("type")
        if kind == "lifespan.startup.complete":
            self.running = True
            return None
        if kind == "lifespan.startup.failed":
            return str(reply.get("message") or "startup failed")
        return f"unexpected message {kind!r} during startup"

    async def shutdown(self) -> str | None:
        """Shut the app down: ``None`` when it did, else what went wrong."""
        if not self.running:
            return None
        self.running = False
        await self._to_app.send({"type": "lifespan.shutdown"})
        reply = await self._replies.receive()
        if reply is None:
            return None
        if isinstance(reply, Exception):
            return f"{type(reply).__name__}: {reply}"
        kind = reply.get("type")
        if kind == "lifespan.shutdown.complete":
            return None
        if kind == "lifespan.shutdown.failed":
            return str(reply.get("message") or "shutdown failed")
        return f"unexpected message {kind!r} during shutdown"


# ---------------------------------------------------------------------- middleware


class GatewayApp:
    """An ASGI 3 application routing and guarding requests by a gwcore config.

    ``apps`` maps cluster names to ASGI apps: a route's ``route: {cluster: X}`` sends
    the request to ``apps[X]`` (``weighted_clusters`` draw one). ``default_app``, when
    given, serves every cluster ``apps`` does not name; otherwise each cluster a route
    names must be in ``apps`` (``ValueError`` naming the missing ones). It is not a
    fallback for requests no route matches: those get 404.

    ``max_body_bytes`` bounds the body read for GraphQL routing (413 above it);
    ``fetch_ssl_context`` verifies ``https`` JWKS servers (default:
    ``ssl.create_default_context()``); ``rng`` draws weighted clusters, request ids and
    trace ids (default: a fresh ``random.Random()``).
    """

    def __init__(
        self,
        config: ConfigSource,
        apps: Mapping[str, ASGIApp] | None = None,
        *,
        default_app: ASGIApp | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        fetch_ssl_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = _load(config)
        self.apps: dict[str, ASGIApp] = dict(apps or {})
        self.default_app = default_app
        if default_app is None:
            missing = sorted(_route_clusters(self.config) - set(self.apps))
            if missing:
                known = ", ".join(sorted(self.apps)) or "none"
                raise ValueError(
                    f"no ASGI app for the cluster(s) routes send requests to: "
                    f"{', '.join(missing)} (apps given: {known})"
                )
        if max_body_bytes < 0:
            raise ValueError("max_body_bytes must not be negative")
        self.max_body_bytes = max_body_bytes
        self.guard = Guard(self.config)
        self.table = RouteTable(self.config)
        self._fetch_ssl = fetch_ssl_context
        self._rng = rng or random.Random()
        self._flights: dict[str, anyio.Event] = {}  # provider -> its fetch in flight
        self._background: anyio.abc.TaskGroup | None = None  # open while lifespan runs

    # -------------------------------------------------------------------- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            await self._request(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            raise ValueError(f"gwcore.asgi: unsupported ASGI scope type {kind!r}")

    def _lifespan_apps(self) -> list[tuple[str, ASGIApp]]:
        """Each distinct app once, named by its first cluster (``default``: default_app)."""
        seen: list[tuple[str, ASGIApp]] = []
        candidates = list(self.apps.items())
        if self.default_app is not None:
            candidates.append(("default", self.default_app))
        for name, app in candidates:
            if all(app is not other for _, other in seen):
                seen.append((name, app))
        return seen

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Start every distinct app's lifespan in order (stopping them in reverse), keep
        a task group for background JWKS fetches open meanwhile, and prefetch remote
        JWKS. Apps that raise or return before answering startup do not do lifespan
        and are left out, as servers treat them."""
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        children = [_LifespanChild(name, app) for name, app in self._lifespan_apps()]
        failed: list[str] = []
        stop_errors: list[str] = []
        async with anyio.create_task_group() as tasks:
            for child in children:
                tasks.start_soon(child.run, dict(scope))  # one state dict, shared
            for child in children:
                error = await child.startup()
                if error is not None:
                    failed.append(f"app {child.name!r}: {error}")
                    break
            if not failed:
                async with anyio.create_task_group() as background:
                    self._background = background
                    try:
                        self._prefetch(background)
                        await send({"type": "lifespan.startup.complete"})
                        await receive()  # lifespan.shutdown
                    finally:
                        self._background = None
                        background.cancel_scope.cancel()
            for child in reversed(children):
                error = await child.shutdown()
                if error is not None:
                    stop_errors.append(f"app {child.name!r}: {error}")
            tasks.cancel_scope.cancel()  # an app that answered shutdown but never returned
        if failed:
            await send({"type": "lifespan.startup.failed", "message": "; ".join(failed)})
        elif stop_errors:
            await send({"type": "lifespan.shutdown.failed", "message": "; ".join(stop_errors)})
        else:
            await send({"type": "lifespan.shutdown.complete"})

    def _prefetch(self, group: anyio.abc.TaskGroup) -> None:
        """Fetch remote JWKS ahead of the first request that needs them (as the engine)."""
        for name, authenticator in self.guard.authenticators.items():
            url = authenticator.take_fetch(time.time())
            if url is not None:
                event = self._flights[name] = anyio.Event()
                group.start_soon(self._fetch, name, url, event, False)

    async def _request(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A task group entered for background fetches wraps what the app raises in an
        # exception group: keep the app's exception and raise it as it was.
        error: Exception | None = None
        async with contextlib.AsyncExitStack() as stack:
            try:
                outcome = await self._decide(scope, receive, _Spawner(self, stack))
                if outcome is None:
                    pass  # the client went away while the body was read
                elif scope["type"] == "websocket":
                    if isinstance(outcome, _Local):
                        await self._deny_websocket(scope, receive, send, outcome)
                    else:
                        await self._call_websocket(outcome, receive, send)
                elif isinstance(outcome, _Local):
                    await self._send_local(send, outcome)
                else:
                    await self._call_http(outcome, receive, send)
            except Exception as exc:
                error = exc
        if error is not None:
            raise error

    # ------------------------------------------------------------------ decide

    async def _decide(
        self, scope: Scope, receive: Receive, spawner: _Spawner
    ) -> _Local | _Dispatch | None:
        """Policy and routing for one request: a response to give, an app to call, or
        ``None`` when the client went away."""
        websocket = scope["type"] == "websocket"
        headers = _decode_headers(scope.get("headers") or ())
        method = "GET" if websocket else str(scope.get("method") or "GET")
        version = str(scope.get("http_version") or "1.1")
        head = RequestHead(method, _target(scope), headers, version, _framing(headers))
        client = scope.get("client")
        peer = str(client[0]) if client else ""
        prepared = self.guard.prepare(head, peer)
        if isinstance(prepared, Rejection):
            return _rejected(head, prepared)
        auth = prepared
        head = auth.head
        request_id = self._request_id(head.headers)
        host = host_header_value(head.headers)  # servers turn :authority into host
        scheme = _SCHEMES.get(str(scope.get("scheme") or "http"), "http")
        decision = self.table.match(
            RouteRequest(head.method, head.target, host, head.headers, scheme=scheme)
        )
        body: bytes | None = None
        waits = 0
        while True:
            if waits > _MAX_KEY_WAITS:  # defensive: each wait ends a fetch, so this is rare
                return _local(head, 503, "signing keys unavailable\n")
            if isinstance(decision, NeedClaims):
                claims = self.guard.routing_claims(auth, time.time())
                needed = claims if isinstance(claims, KeysNeeded) else None
                await self._keys(auth, spawner, needed)
                if isinstance(claims, KeysNeeded):
                    waits += 1
                else:
                    decision = decision.with_claims(claims)
                continue
            if isinstance(decision, NeedBody):
                if websocket:
                    body = b""
                else:
                    read = await self._read_body(head, receive)
                    if read is None or isinstance(read, _Local):
                        return read
                    body = read
                decision = decision.with_body(body)
                continue
            route = decision.route if isinstance(decision, Matched) else None
            verdict = self.guard.enforce(auth, route, time.monotonic(), time.time())
            needed = verdict if isinstance(verdict, KeysNeeded) else None
            await self._keys(auth, spawner, needed)
            if isinstance(verdict, KeysNeeded):
                waits += 1
                continue
            break
        if isinstance(verdict, Rejection):
            return _rejected(head, verdict)
        if isinstance(decision, NoRoute):
            return _local(head, 404, "no route\n")
        return self._routed(scope, head, auth, decision, verdict, request_id, body)

    def _routed(
        self,
        scope: Scope,
        head: RequestHead,
        auth: AuthState,
        decision: Matched,
        allowed: Allowed,
        request_id: str,
        body: bytes | None,
    ) -> _Local | _Dispatch:
        route, vhost = decision.route, decision.virtual_host
        context = self.guard.template_context(auth, request_id, route, allowed)
        action = route.action
        extra = allowed.response_headers
        if isinstance(action, m.DirectResponseAction):
            headers: Headers = (("content-type", action.content_type),) if action.body else ()
            headers = self.guard.response_headers(headers, route, vhost, context, extra)
            return _local(head, action.status, action.body, headers)
        if isinstance(action, m.RedirectAction):
            scheme = _SCHEMES.get(str(scope.get("scheme") or "http"), "http")
            location = redirect_location(head.target, head.headers, scheme, route, action)
            headers = self.guard.response_headers(
                (("location", location),), route, vhost, context, extra
            )
            return _local(head, action.response_code, b"", headers)
        cluster = action.pick_cluster(self._rng.random())
        app = self.apps.get(cluster, self.default_app)
        assert app is not None  # checked in __init__
        target = self.guard.upstream_target(head.target, allowed)  # forward: false
        if action.prefix_rewrite is not None:
            target = rewrite_path(target, route, action.prefix_rewrite)
        base = [(n, v) for n, v in head.headers if n != "x-request-id"]
        if action.host_rewrite is not None:
            base = [("host", action.host_rewrite), *((n, v) for n, v in base if n != "host")]
        base.append(("x-request-id", request_id))
        headers = self.guard.upstream_headers(
            tuple(base), auth, allowed, route, vhost, context, self._rng.getrandbits
        )
        path, _, query = target.partition("?")
        raw_path = path.encode("latin-1")
        app_scope = dict(scope)
        app_scope["headers"] = _encode_headers(headers)
        app_scope["raw_path"] = raw_path
        app_scope["query_string"] = query.encode("latin-1")
        app_scope["path"] = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        app_scope["gwcore"] = {
            "route": route.label,
            "cluster": cluster,
            "client_ip": auth.client_ip,
            "request_id": request_id,
            "claims": allowed.claims if allowed.claims is not None else (auth.routing or None),
            "provider": allowed.provider.name if allowed.provider is not None else None,
        }
        timeout = action.timeout if scope["type"] == "http" else None
        return _Dispatch(app, app_scope, head, route, vhost, context, extra, body, timeout)

    def _request_id(self, headers: Headers) -> str:
        return request_id_for(headers, self._rng.getrandbits)

    async def _read_body(self, head: RequestHead, receive: Receive) -> bytes | _Local | None:
        """The whole request body (for GraphQL routing), at most ``max_body_bytes``."""
        too_large = _local(head, 413, "request body too large\n")
        if isinstance(head.body, FixedLength) and head.body.length > self.max_body_bytes:
            return too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            if message["type"] != "http.request":
                continue
            chunk = bytes(message.get("body") or b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -------------------------------------------------------------------- JWKS

    async def _keys(self, auth: AuthState, spawner: _Spawner, needed: KeysNeeded | None) -> None:
        """Start the fetches the providers the last policy step touched now want (first
        keys, an unknown ``kid``, a refresh due); with ``needed``, return once the fetch
        of its provider has ended (this request performs it when it starts it)."""
        remote = [
            name
            for name in sorted(auth.touched)
            if self.guard.authenticators[name].provider.jwks.kind == "remote"
        ]
        auth.touched.clear()
        if not remote:
            return
        start = await spawner.ready()
        mine: tuple[str, str, anyio.Event] | None = None
        for name in remote:  # no checkpoint from here on: a fetch taken is a fetch started
            url = self.guard.authenticators[name].take_fetch(time.time())
            if url is None:
                continue
            event = self._flights[name] = anyio.Event()
            if needed is not None and name == needed.provider:
                mine = (name, url, event)
            else:
                start(name, url, event)
        if needed is None:
            return
        if mine is not None:
            await self._fetch(*mine, shield=True)
            return
        flight = self._flights.get(needed.provider)
        if flight is not None:
            jwks = self.guard.authenticators[needed.provider].provider.jwks
            with anyio.move_on_after(jwks.timeout + 1.0):  # the fetch bounds itself too
                await flight.wait()

    async def _fetch(self, name: str, url: str, event: anyio.Event, shield: bool) -> None:
        """GET ``url`` for provider ``name`` within its timeout, tell the authenticator,
        and wake whoever waits on ``event``. Never raises but for cancellation."""
        authenticator = self.guard.authenticators[name]
        timeout = authenticator.provider.jwks.timeout
        outcome: FetchOutcome = FetchFailure("cancelled")
        try:
            with anyio.CancelScope(shield=shield):
                with anyio.move_on_after(timeout) as bound:
                    try:
                        outcome = await self._get(HttpGet(url, JWKS_MAX_BYTES))
                    except Exception as exc:  # bad URL, connect, TLS, read: all answers
                        outcome = failure(exc)
                if bound.cancelled_caught:
                    outcome = timed_out(timeout)
        finally:
            wall = time.time()
            if authenticator.fetching:
                if isinstance(outcome, FetchResponse):
                    authenticator.fetch_succeeded(outcome.status, outcome.body, wall)
                else:
                    authenticator.fetch_failed(outcome.reason, wall)
                if authenticator.last_fetch_error is not None:
                    log.warning(
                        "JWKS fetch for provider %r from %s failed: %s",
                        name,
                        url,
                        authenticator.last_fetch_error,
                    )
            if self._flights.get(name) is event:
                del self._flights[name]
            event.set()

    async def _get(self, get: HttpGet) -> FetchOutcome:
        """Connect (TLS with SNI and verification for ``https``), send, read to the end."""
        stream: anyio.abc.ByteStream
        if get.tls:
            if self._fetch_ssl is None:
                self._fetch_ssl = ssl.create_default_context()
            stream = await anyio.connect_tcp(
                get.host,
                get.port,
                ssl_context=self._fetch_ssl,  # SNI and the certificate check use get.host
                tls_standard_compatible=False,  # HttpGet itself detects a body cut short
            )
        else:
            stream = await anyio.connect_tcp(get.host, get.port)
        async with stream:
            await stream.send(get.request)
            while True:
                try:
                    data = await stream.receive(_READ_SIZE)
                except anyio.EndOfStream:
                    data = b""
                outcome = get.receive(data)
                if outcome is not None:
                    return outcome

    # ------------------------------------------------------------- responding

    @staticmethod
    async def _send_local(send: Send, local: _Local) -> None:
        headers = [*local.headers, ("content-length", str(len(local.body)))]
        await send(
            {
                "type": "http.response.start",
                "status": local.status,
                "headers": _encode_headers(headers),
            }
        )
        await send({"type": "http.response.body", "body": b"" if local.head_only else local.body})

    def _response_headers(
        self, raw: Iterable[Any], dispatch: _Dispatch
    ) -> list[tuple[bytes, bytes]]:
        headers = self.guard.response_headers(
            _decode_headers(raw), dispatch.route, dispatch.vhost, dispatch.context, dispatch.extra
        )
        return _encode_headers(headers)

    def _transforms_response(self, dispatch: _Dispatch) -> bool:
        return bool(
            dispatch.extra
            or not dispatch.route.response_headers.empty
            or not dispatch.vhost.response_headers.empty
        )

    async def _call_http(self, dispatch: _Dispatch, receive: Receive, send: Send) -> None:
        """Call the app; its response head gets the response transforms. The route's
        ``timeout`` bounds the time until the app starts its response (504 after)."""
        replay: list[Message] = []
        if dispatch.body is not None:
            replay.append({"type": "http.request", "body": dispatch.body, "more_body": False})
        transform = self._transforms_response(dispatch)
        started = False

        async def app_receive() -> Message:
            return replay.pop() if replay else await receive()

        async def app_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                timer.deadline = math.inf
                if transform:
                    headers = self._response_headers(message.get("headers") or (), dispatch)
                    message = {**message, "headers": headers}
            await send(message)

        with anyio.move_on_after(dispatch.timeout) as timer:
            await dispatch.app(dispatch.scope, app_receive, app_send)
        if timer.cancelled_caught and not started:
            await self._send_local(send, _local(dispatch.head, 504, "upstream request timeout\n"))

    async def _call_websocket(self, dispatch: _Dispatch, receive: Receive, send: Send) -> None:
        """Call the app; the accept (or its own denial) gets the response transforms."""
        transform = self._transforms_response(dispatch)

        async def app_send(message: Message) -> None:
            kind = message["type"]
            if transform and kind in ("websocket.accept", "websocket.http.response.start"):
                headers = self._response_headers(message.get("headers") or (), dispatch)
                message = {**message, "headers": headers}
            await send(message)

        await dispatch.app(dispatch.scope, receive, app_send if transform else send)

    @staticmethod
    async def _deny_websocket(scope: Scope, receive: Receive, send: Send, local: _Local) -> None:
        """Refuse a websocket before accepting it: with the HTTP response itself when the
        server has the denial response extension, else a close with 1008 (policy
        violation), which servers answer with 403."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # already gone
        extensions = scope.get("extensions") or {}
        if "websocket.http.response" in extensions:
            headers = [*local.headers, ("content-length", str(len(local.body)))]
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": local.status,
                    "headers": _encode_headers(headers),
                }
            )
            await send({"type": "websocket.http.response.body", "body": local.body})
        else:
            reason = local.body.decode("utf-8", "replace").strip()[:120]
            await send({"type": "websocket.close", "code": 1008, "reason": reason})


def guard(
    app: ASGIApp,
    config: ConfigSource,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    fetch_ssl_context: ssl.SSLContext | None = None,
    rng: random.Random | None = None,
) -> GatewayApp:
    """Guard one ASGI app: every cluster a route names is ``app`` (the config need not
    declare any clusters). The keyword arguments are :class:`GatewayApp`'s."""
    return GatewayApp(
        config,
        default_app=app,
        max_body_bytes=max_body_bytes,
        fetch_ssl_context=fetch_ssl_context,
        rng=rng,
    )
