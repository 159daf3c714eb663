"""gwcore.asgi called in process, as a server calls it, under asyncio and trio (anyio):
config loading, lifespan forwarding, GraphQL body routing and replay, gRPC rejections,
route timeouts, websocket denial without the extension, and remote JWKS (TLS, single
flight, timeouts, background refreshes with and without lifespan) against real HTTP
servers on 127.0.0.1."""

from __future__ import annotations

import json
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from asgi_support import Response, call_http, http_scope
from idp import ISSUER, REMOTE_ISSUER, JwksServer, Signer, SilentServer, bearer

from gwcore.asgi import ASGIApp, GatewayApp, Receive, Scope, Send, guard
from gwcore.config import ConfigError, load_config

BACKENDS = ("asyncio", "trio")


@pytest.fixture(params=BACKENDS)
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    """Run an async test body under one anyio backend."""

    def runner(body: Callable[[], Awaitable[Any]]) -> Any:
        return anyio.run(body, backend=str(request.param))

    return runner


Runner = Callable[[Callable[[], Awaitable[Any]]], Any]


@pytest.fixture(scope="module")
def corp() -> Signer:
    return Signer.ec("corp-ec")


@pytest.fixture(scope="module")
def remote() -> Signer:
    return Signer.rsa("remote-1")


class Recorder:
    """An ASGI app that answers with what it saw, and records its lifespan."""

    def __init__(self, name: str, *, startup_error: str | None = None) -> None:
        self.name = name
        self.events: list[str] = []
        self.startup_error = startup_error
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if self.startup_error:
                        failed = {"type": "lifespan.startup.failed", "message": self.startup_error}
                        await send(failed)
                        return
                    self.events.append(f"{self.name} started")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    self.events.append(f"{self.name} stopped")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen = {
            "app": self.name,
            "path": scope["path"],
            "body": body.decode(),
            "headers": [[n.decode(), v.decode()] for n, v in scope["headers"]],
            "gwcore": {k: v for k, v in scope["gwcore"].items() if k != "claims"},
            "claims": dict(scope["gwcore"]["claims"] or {}),
        }
        payload = json.dumps(seen).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": payload})


def routes_to(*clusters: str) -> dict[str, Any]:
    return {
        "routes": [
            {"name": c, "match": {"prefix": f"/{c}"}, "route": {"cluster": c}} for c in clusters
        ]
    }


# --------------------------------------------------------------------------- config


def test_a_mapping_need_not_declare_the_clusters_routes_name(run: Runner) -> None:
    alpha, beta = Recorder("alpha"), Recorder("beta")
    app = GatewayApp(routes_to("alpha", "beta"), apps={"alpha": alpha, "beta": beta})
    assert dict(app.config.clusters) == {}  # nothing made up is left in the config

    async def body() -> None:
        response = await call_http(app, http_scope("/beta/x"))
        assert response.json()["app"] == "beta"

    run(body)


def test_a_missing_app_is_named_at_construction() -> None:
    with pytest.raises(ValueError, match=r"cluster\(s\) .*: beta, gamma \(apps given: alpha\)"):
        GatewayApp(routes_to("alpha", "beta", "gamma"), apps={"alpha": Recorder("alpha")})
    weighted = {
        "routes": [
            {
                "match": {"prefix": "/"},
                "route": {
                    "weighted_clusters": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]
                },
            }
        ]
    }
    with pytest.raises(ValueError, match="b"):
        GatewayApp(weighted, apps={"a": Recorder("a")})


def test_yaml_text_and_files_keep_located_errors(tmp_path: Path) -> None:
    text = "routes:\n- match: {prefix: /}\n  route: {cluster: app}\n  policy: {jwt: nobody}\n"
    with pytest.raises(ConfigError) as error:
        GatewayApp(text, apps={"app": Recorder("app")})
    issue = error.value.issues[0]
    assert (issue.source, issue.line, issue.path) == ("<string>", 4, "routes[0].policy.jwt")
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    for source in (path, str(path)):
        with pytest.raises(ConfigError) as error:
            GatewayApp(source, apps={"app": Recorder("app")})
        assert (error.value.issues[0].source, error.value.issues[0].line) == (str(path), 4)
    path.write_text(text.replace("  policy: {jwt: nobody}\n", ""))
    assert GatewayApp(path, apps={"app": Recorder("app")}).config.route_count == 1
    with pytest.raises(ConfigError, match="cannot read config"):
        GatewayApp(tmp_path / "missing.yaml", apps={})


def test_a_config_with_declared_clusters_loads_as_is() -> None:
    config = load_config({"clusters": {"api": {"endpoints": ["127.0.0.1:9"]}}, **routes_to("api")})
    app = GatewayApp(config, apps={"api": Recorder("api")})
    assert app.config is config
    text = """\
clusters:
  api: {endpoints: ["127.0.0.1:9"]}
routes:
- {match: {prefix: /}, route: {cluster: api}}
"""
    assert list(GatewayApp(text, apps={"api": Recorder("api")}).config.clusters) == ["api"]


def test_guard_sends_every_cluster_to_its_app(run: Runner) -> None:
    inner = Recorder("inner")
    app = guard(inner, routes_to("one", "two"))

    async def body() -> None:
        one = await call_http(app, http_scope("/one"))
        two = await call_http(app, http_scope("/two"))
        assert (one.json()["gwcore"]["cluster"], two.json()["gwcore"]["cluster"]) == ("one", "two")
        assert (await call_http(app, http_scope("/three"))).status == 404

    run(body)


def test_weighted_clusters_draw_from_the_rng(run: Runner) -> None:
    config = {
        "routes": [
            {
                "match": {"prefix": "/"},
                "route": {
                    "weighted_clusters": [{"name": "a", "weight": 1}, {"name": "b", "weight": 3}]
                },
            }
        ]
    }
    a, b = Recorder("a"), Recorder("b")
    app = GatewayApp(config, apps={"a": a, "b": b}, rng=random.Random(7))

    async def body() -> None:
        for _ in range(200):
            await call_http(app, http_scope("/"))

    run(body)
    assert a.calls + b.calls == 200 and 20 < a.calls < 80


def test_unknown_scope_types_are_refused(run: Runner) -> None:
    app = GatewayApp(routes_to("a"), apps={"a": Recorder("a")})

    async def body() -> None:
        async def receive() -> dict[str, Any]:
            raise AssertionError("not called")

        async def send(message: Any) -> None:
            raise AssertionError("not called")

        with pytest.raises(ValueError, match="unsupported ASGI scope type 'webtransport'"):
            await app({"type": "webtransport"}, receive, send)

    run(body)


# ------------------------------------------------------------------------- lifespan


async def lifespan(
    app: Any, during: Callable[[], Awaitable[Any]] | None = None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run ``app``'s lifespan as a server does: startup, ``during``, shutdown."""
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](10)
    outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](10)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    stopped: dict[str, Any] | None = None
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(app, scope, app_inbox.receive, outbox.send)
            await to_app.send({"type": "lifespan.startup"})
            started = await from_app.receive()
            if started["type"] == "lifespan.startup.complete":
                if during is not None:
                    await during()
                await to_app.send({"type": "lifespan.shutdown"})
                stopped = await from_app.receive()
    return started, stopped


def test_lifespan_reaches_every_distinct_app_in_order(run: Runner) -> None:
    events: list[str] = []
    alpha, beta = Recorder("alpha"), Recorder("beta")
    alpha.events = beta.events = events

    async def unsupported(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"  # raises for lifespan: it does not do lifespan

    apps: dict[str, ASGIApp] = {
        "alpha": alpha,
        "beta": beta,
        "also-alpha": alpha,
        "plain": unsupported,
    }
    config = routes_to("alpha", "beta", "also-alpha", "plain")
    app = GatewayApp(config, apps=apps)

    async def body() -> None:
        started, stopped = await lifespan(app)
        assert started == {"type": "lifespan.startup.complete"}
        assert stopped == {"type": "lifespan.shutdown.complete"}

    run(body)
    assert events == ["alpha started", "beta started", "beta stopped", "alpha stopped"]


def test_lifespan_startup_failure_names_the_app(run: Runner) -> None:
    alpha, beta = Recorder("alpha"), Recorder("beta", startup_error="no database")
    app = GatewayApp(routes_to("alpha", "beta"), apps={"alpha": alpha, "beta": beta})

    async def body() -> None:
        started, stopped = await lifespan(app)
        assert started == {"type": "lifespan.startup.failed", "message": "app 'beta': no database"}
        assert stopped is None

    run(body)
    assert alpha.events == ["alpha started", "alpha stopped"]  # the started one is stopped


def test_lifespan_shutdown_errors_are_reported(run: Runner) -> None:
    async def crashes(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError("flush failed")

    app = guard(crashes, routes_to("x"))

    async def body() -> None:
        _, stopped = await lifespan(app)
        assert stopped == {
            "type": "lifespan.shutdown.failed",
            "message": "app 'default': RuntimeError: flush failed",
        }

    run(body)


# -------------------------------------------------------------- body, grpc, timeouts


GRAPHQL = {
    "routes": [
        {
            "name": "mutations",
            "match": {"graphql": {"operation_type": "mutation"}},
            "route": {"cluster": "writer"},
        },
        {"name": "rest", "match": {"prefix": "/"}, "route": {"cluster": "reader"}},
    ]
}


def test_graphql_routing_reads_and_replays_the_body(run: Runner) -> None:
    writer, reader = Recorder("writer"), Recorder("reader")
    app = GatewayApp(GRAPHQL, apps={"writer": writer, "reader": reader}, max_body_bytes=4096)
    mutation = json.dumps({"query": 'mutation { addItem(name: "x") { id } }'}).encode()
    query = json.dumps({"query": "query { items { id } }"}).encode()
    headers = [("content-type", "application/json")]

    async def body() -> None:
        scope = http_scope("/graphql", method="POST", headers=headers)
        wrote = await call_http(app, scope, mutation, chunk=7)
        assert (wrote.json()["app"], wrote.json()["body"]) == ("writer", mutation.decode())
        read = await call_http(app, http_scope("/graphql", method="POST", headers=headers), query)
        assert (read.json()["app"], read.json()["body"]) == ("reader", query.decode())
        big = b" " * 5000 + mutation
        too_big = await call_http(
            app, http_scope("/graphql", method="POST", headers=headers), big, 1000
        )
        assert (too_big.status, too_big.body) == (413, b"request body too large\n")
        announced = [*headers, ("content-length", str(len(big)))]
        early = await call_http(app, http_scope("/graphql", method="POST", headers=announced), big)
        assert early.status == 413

    run(body)
    assert writer.calls == reader.calls == 1


def test_grpc_clients_get_trailers_only_rejections(run: Runner, corp: Signer) -> None:
    config = {
        "jwt_providers": {"corp": {"issuer": ISSUER, "jwks": {"inline": {"keys": [corp.jwk()]}}}},
        "routes": [
            {
                "match": {"prefix": "/pkg.Svc/"},
                "route": {"cluster": "svc"},
                "policy": {"jwt": "corp"},
            }
        ],
    }
    app = GatewayApp(config, apps={"svc": Recorder("svc")})
    grpc = [("content-type", "application/grpc+proto"), ("te", "trailers")]

    async def body() -> None:
        refused = await call_http(app, http_scope("/pkg.Svc/Call", method="POST", headers=grpc))
        assert refused.status == 200 and refused.body == b""
        assert refused.header("grpc-status") == "16"
        assert refused.header("content-type") == "application/grpc+proto"
        assert refused.header("www-authenticate") == 'Bearer realm="gwcore"'
        missing = await call_http(app, http_scope("/other", method="POST", headers=grpc))
        assert missing.header("grpc-status") == "12"

    run(body)


def test_a_token_not_forwarded_is_removed_from_query_and_cookies(run: Runner, corp: Signer) -> None:
    sources = [{"query": "access_token"}, {"cookie": "session"}]
    provider = {"issuer": ISSUER, "jwks": {"inline": {"keys": [corp.jwk()]}}, "from": sources}
    config = {"jwt_providers": {"corp": provider}, **routes_to("a")}
    config["routes"][0]["policy"] = {"jwt": "corp"}
    seen: list[Scope] = []

    async def app_(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = GatewayApp(config, apps={"a": app_})
    token = corp.token(sub="dave")

    async def body() -> None:
        by_query = http_scope("/a/x", query=f"page=2&access_token={token}&q=1")
        assert (await call_http(app, by_query)).status == 204
        cookie = [("cookie", f"theme=dark; session={token}")]
        assert (await call_http(app, http_scope("/a/y", headers=cookie))).status == 204

    run(body)
    assert seen[0]["query_string"] == b"page=2&q=1" and seen[0]["path"] == "/a/x"
    assert (b"cookie", b"theme=dark") in seen[1]["headers"]
    assert seen[1]["gwcore"]["claims"]["sub"] == "dave"


def test_route_timeout_bounds_the_wait_for_the_response_head(run: Runner) -> None:
    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await anyio.sleep(5)

    async def streams(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await anyio.sleep(0.3)  # longer than the timeout, once started
        await send({"type": "http.response.body", "body": b"done"})

    config = {
        "routes": [
            {"match": {"prefix": "/slow"}, "route": {"cluster": "slow", "timeout": "100ms"}},
            {"match": {"prefix": "/streams"}, "route": {"cluster": "streams", "timeout": "100ms"}},
        ]
    }
    app = GatewayApp(config, apps={"slow": slow, "streams": streams})

    async def body() -> None:
        began = time.monotonic()
        timed_out = await call_http(app, http_scope("/slow"))
        assert (timed_out.status, timed_out.body) == (504, b"upstream request timeout\n")
        assert time.monotonic() - began < 2
        finished = await call_http(app, http_scope("/streams"))
        assert (finished.status, finished.body) == (200, b"done")

    run(body)


def test_trusted_proxy_client_ip_and_head_requests(run: Runner) -> None:
    config = {**routes_to("a"), "trusted_proxies": ["10.0.0.0/8"]}
    config["routes"].append(
        {"match": {"prefix": "/"}, "direct_response": {"status": 403, "body": "no"}}
    )
    app = GatewayApp(config, apps={"a": Recorder("a")})

    async def body() -> None:
        xff = [("x-forwarded-for", "198.51.100.7, 10.1.1.1")]
        seen = await call_http(app, http_scope("/a", headers=xff, client=("10.0.0.2", 1)))
        assert seen.json()["gwcore"]["client_ip"] == "198.51.100.7"
        untrusted = await call_http(app, http_scope("/a", headers=xff))
        assert untrusted.json()["gwcore"]["client_ip"] == "203.0.113.9"
        unix = await call_http(app, http_scope("/a", client=None))
        assert unix.status == 200
        head = await call_http(app, http_scope("/nope", method="HEAD"))
        assert (head.status, head.body, head.header("content-length")) == (403, b"", "2")

    run(body)


def test_app_exceptions_propagate_unwrapped(run: Runner) -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("boom")

    app = GatewayApp(routes_to("b"), apps={"b": broken})

    async def body() -> None:
        with pytest.raises(KeyError, match="boom"):
            await call_http(app, http_scope("/b"))

    run(body)


# ------------------------------------------------------------------------ websocket


def test_websocket_denied_with_close_1008_without_the_extension(run: Runner) -> None:
    app = GatewayApp(routes_to("a"), apps={"a": Recorder("a")})

    async def deny(extensions: dict[str, Any]) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        connect = [{"type": "websocket.connect"}]

        async def receive() -> dict[str, Any]:
            return connect.pop() if connect else {"type": "websocket.disconnect", "code": 1006}

        async def send(message: Any) -> None:
            sent.append(dict(message))

        await app(http_scope("/nowhere", kind="websocket", extensions=extensions), receive, send)
        return sent

    async def body() -> None:
        closed = await deny({})
        assert closed == [{"type": "websocket.close", "code": 1008, "reason": "no route"}]
        answered = await deny({"websocket.http.response": {}})
        assert [m["type"] for m in answered] == [
            "websocket.http.response.start",
            "websocket.http.response.body",
        ]
        assert answered[0]["status"] == 404 and answered[1]["body"] == b"no route\n"

    run(body)


# ---------------------------------------------------------------------- remote JWKS


def remote_config(url: str, **jwks: str) -> dict[str, Any]:
    return {
        "jwt_providers": {
            "remote": {
                "issuer": REMOTE_ISSUER,
                "audiences": ["api"],
                "algorithms": ["RS256"],
                "jwks": {"remote": {"uri": url, **jwks}},
            }
        },
        "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "api"}, "policy": {"jwt": "remote"}}
        ],
    }


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_jwks(ca: trustme.CA, remote: Signer) -> Iterator[JwksServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = JwksServer(context)
    server.keys = [remote.jwk()]
    yield server
    server.stop()


@pytest.fixture
def jwks(remote: Signer) -> Iterator[JwksServer]:
    server = JwksServer()
    server.keys = [remote.jwk()]
    yield server
    server.stop()


async def concurrently(count: int, call: Callable[[], Awaitable[Response]]) -> list[Response]:
    results: list[Response] = []

    async def one() -> None:
        results.append(await call())

    async with anyio.create_task_group() as tasks:
        for _ in range(count):
            tasks.start_soon(one)
    return results


def test_tls_jwks_fetched_once_for_concurrent_first_requests(
    run: Runner, ca: trustme.CA, tls_jwks: JwksServer, remote: Signer
) -> None:
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    app = GatewayApp(
        remote_config(tls_jwks.url()),
        apps={"api": Recorder("api")},
        fetch_ssl_context=client_context,
    )
    tls_jwks.delay = 0.2
    token = remote.token(issuer=REMOTE_ISSUER, sub="carol")

    async def body() -> None:
        scope = http_scope("/x", headers=bearer(token).items())
        responses = await concurrently(6, lambda: call_http(app, dict(scope)))
        assert [r.status for r in responses] == [200] * 6
        assert {r.json()["claims"]["sub"] for r in responses} == {"carol"}

    run(body)
    assert tls_jwks.fetches == 1


def test_tls_jwks_server_must_have_a_trusted_certificate(
    run: Runner, tls_jwks: JwksServer, remote: Signer
) -> None:
    app = GatewayApp(remote_config(tls_jwks.url()), apps={"api": Recorder("api")})
    token = remote.token(issuer=REMOTE_ISSUER)

    async def body() -> None:
        refused = await call_http(app, http_scope("/x", headers=bearer(token).items()))
        assert refused.status == 503

    run(body)
    assert app.guard.authenticators["remote"].last_fetch_error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in app.guard.authenticators["remote"].last_fetch_error


def test_a_jwks_server_that_never_answers_cannot_hang_requests(run: Runner, remote: Signer) -> None:
    silent = SilentServer()
    app = GatewayApp(remote_config(silent.url, timeout="300ms"), apps={"api": Recorder("api")})
    token = remote.token(issuer=REMOTE_ISSUER)

    async def body() -> None:
        began = time.monotonic()
        scope = http_scope("/x", headers=bearer(token).items())
        responses = await concurrently(4, lambda: call_http(app, dict(scope)))
        assert [r.status for r in responses] == [503] * 4
        assert time.monotonic() - began < 2

    try:
        run(body)
    finally:
        silent.stop()
    assert "timed out" in (app.guard.authenticators["remote"].last_fetch_error or "")


def test_refresh_without_lifespan_runs_beside_the_request(
    run: Runner, jwks: JwksServer, remote: Signer
) -> None:
    app = GatewayApp(
        remote_config(jwks.url(), cache_duration="200ms"), apps={"api": Recorder("api")}
    )
    token = remote.token(issuer=REMOTE_ISSUER)

    async def body() -> None:
        scope = http_scope("/x", headers=bearer(token).items())
        assert (await call_http(app, dict(scope))).status == 200
        await anyio.sleep(0.3)  # the keys are stale now, but still good
        jwks.delay = 0.6
        began = time.monotonic()
        response = await call_http(app, dict(scope))
        assert response.status == 200
        assert response.completed - began < 0.4  # answered while the refresh runs
        # The call returns once the refresh it started is done: nothing outlives it.
        assert time.monotonic() - began >= 0.5
        assert not app.guard.authenticators["remote"].fetching

    run(body)
    assert jwks.fetches == 2


def test_refresh_with_lifespan_runs_in_the_background(
    run: Runner, jwks: JwksServer, remote: Signer
) -> None:
    app = GatewayApp(
        remote_config(jwks.url(), cache_duration="200ms"), apps={"api": Recorder("api")}
    )
    token = remote.token(issuer=REMOTE_ISSUER)
    scope = http_scope("/x", headers=bearer(token).items())

    async def during() -> None:
        with anyio.fail_after(5):
            while jwks.fetches < 1 or app.guard.authenticators["remote"].fetching:
                await anyio.sleep(0.01)  # the startup prefetch
        assert (await call_http(app, dict(scope))).status == 200
        await anyio.sleep(0.3)
        jwks.delay = 0.6
        began = time.monotonic()
        assert (await call_http(app, dict(scope))).status == 200
        assert time.monotonic() - began < 0.4  # the refresh did not hold the request
        with anyio.fail_after(5):
            while jwks.fetches < 2 or app.guard.authenticators["remote"].fetching:
                await anyio.sleep(0.01)

    async def body() -> None:
        started, stopped = await lifespan(app, during)
        assert started["type"] == "lifespan.startup.complete"
        assert stopped == {"type": "lifespan.shutdown.complete"}

    run(body)
    assert jwks.fetches == 2


def test_a_client_going_away_does_not_fail_the_fetch_others_wait_for(
    run: Runner, jwks: JwksServer, remote: Signer
) -> None:
    app = GatewayApp(remote_config(jwks.url()), apps={"api": Recorder("api")})
    token = remote.token(issuer=REMOTE_ISSUER)
    scope = http_scope("/x", headers=bearer(token).items())
    jwks.delay = 0.4

    async def body() -> None:
        results: list[Response] = []

        async def waiter() -> None:
            await anyio.sleep(0.1)  # the first request is fetching by now
            results.append(await call_http(app, dict(scope)))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(waiter)
            with anyio.move_on_after(0.2):  # the first client goes away mid-fetch
                await call_http(app, dict(scope))
        assert [r.status for r in results] == [200]

    run(body)
    assert jwks.fetches == 1
    assert app.guard.authenticators["remote"].last_fetch_error is None
