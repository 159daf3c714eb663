"""gwcore.asgi under real ASGI servers: hypercorn (trio worker), hypercorn (asyncio
worker) and uvicorn, each in a subprocess on 127.0.0.1, driven with httpx and a
wsproto websocket client. Real tokens, a file JWKS and a real remote JWKS server."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_support import SERVERS, Rejected, ServedApp, WebSocket, serve, wait_until
from idp import ISSUER, REMOTE_ISSUER, JwksServer, Signer, bearer

CONFIG = """\
jwt_providers:
  corp:
    issuer: {issuer}
    audiences: [api]
    jwks: {{file: {jwks_file}}}
    claims_to_headers: [{{claim: sub, header: x-user}}]
  remote:
    issuer: {remote_issuer}
    audiences: [api]
    algorithms: [RS256]
    jwks: {{remote: {{uri: "{jwks_url}", cache_duration: 5m, refetch_cooldown: 10ms, timeout: 5s}}}}
rate_limits:
  tight: {{algorithm: token_bucket, rate: 1/h, burst: 2, key: [client_ip]}}
routes:
- name: ready
  match: {{path: /ready}}
  direct_response: {{status: 200, body: "ready\\n"}}
- name: hello
  match: {{path: /hello}}
  direct_response: {{status: 200, body: "hello from the gateway\\n"}}
- name: moved
  match: {{prefix: /old}}
  redirect: {{path_redirect: /alpha/new, response_code: 302}}
- name: alpha
  match: {{prefix: /alpha}}
  route: {{cluster: alpha}}
- name: beta
  match: {{prefix: /beta}}
  route: {{cluster: beta}}
- name: api-admins
  match: {{prefix: /api, jwt_claim: [{{name: role, exact_match: admin}}]}}
  route: {{cluster: beta}}
  policy: {{jwt: corp}}
- name: api
  match: {{prefix: /api}}
  route: {{cluster: alpha}}
  policy: {{jwt: corp}}
- name: admin
  match: {{prefix: /admin}}
  route: {{cluster: alpha}}
  policy:
    jwt: corp
    require: {{claims: {{scope: [admin:write]}}}}
  request_headers:
    set: {{x-tenant: "%CLAIM(tenant)%", x-client: "%CLIENT_IP%", x-route: "%ROUTE_NAME%"}}
  response_headers:
    set: {{x-served-by: "gwcore %ROUTE_NAME%"}}
    remove: [x-internal]
- name: limited
  match: {{prefix: /limited}}
  route: {{cluster: alpha}}
  policy: {{rate_limit: tight}}
- name: remote
  match: {{prefix: /remote}}
  route: {{cluster: beta}}
  policy: {{jwt: remote}}
- name: ws
  match: {{prefix: /ws}}
  route: {{cluster: alpha}}
  policy: {{jwt: corp}}
- name: public
  match: {{prefix: /public}}
  route: {{cluster: alpha}}
"""


@dataclass
class Keys:
    corp: Signer
    remote: Signer
    jwks: JwksServer
    config: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    directory = tmp_path_factory.mktemp("asgi-keys")
    corp, remote = Signer.rsa("corp-1"), Signer.rsa("r-0")
    jwks_file = directory / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [corp.jwk()]}))
    jwks = JwksServer()
    jwks.keys = [remote.jwk()]
    config = directory / "gateway.yaml"
    config.write_text(
        CONFIG.format(
            issuer=ISSUER, remote_issuer=REMOTE_ISSUER, jwks_file=jwks_file, jwks_url=jwks.url()
        )
    )
    yield Keys(corp, remote, jwks, config)
    jwks.stop()


@pytest.fixture(scope="module", params=SERVERS)
def served(
    request: pytest.FixtureRequest, keys: Keys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    before = keys.jwks.fetches
    app = serve(str(request.param), keys.config, tmp_path_factory.mktemp("asgi-served"))
    # Lifespan startup prefetches the remote JWKS (once) in the background.
    assert wait_until(lambda: keys.jwks.fetches == before + 1, 5), keys.jwks.fetches - before
    yield app
    code = app.stop()
    log = app.log()
    assert "Traceback" not in log, log
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully.
    assert code == (-signal.SIGTERM if app.server == "uvicorn" else 0), log


def admin_token(keys: Keys, **claims: Any) -> str:
    defaults: dict[str, Any] = {"sub": "alice", "scope": "admin:write", "tenant": "acme"}
    return keys.corp.token(**{**defaults, **claims})


def get(app: ServedApp, path: str, **headers: str) -> httpx.Response:
    return httpx.get(app.url + path, headers=headers, timeout=10)


def raw_get(app: ServedApp, target: str, **headers: str) -> tuple[int, bytes]:
    """A request with a target sent byte for byte (clients normalize ``..`` away)."""
    lines = [f"GET {target} HTTP/1.1", f"host: 127.0.0.1:{app.port}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


# ------------------------------------------------------------------------ routing


def test_routes_by_path_to_two_apps_with_their_lifespans_started(served: ServedApp) -> None:
    alpha, beta = get(served, "/alpha/x?q=1"), get(served, "/beta/y")
    assert alpha.status_code == beta.status_code == 200
    assert (alpha.json()["app"], beta.json()["app"]) == ("alpha", "beta")
    assert alpha.json()["path"] == "/alpha/x" and alpha.json()["query"] == "q=1"
    assert alpha.json()["lifespan"] == beta.json()["lifespan"] == "started"


def test_routes_by_a_verified_claim(served: ServedApp, keys: Keys) -> None:
    admin = get(served, "/api/orders", **bearer(admin_token(keys, role="admin")))
    user = get(served, "/api/orders", **bearer(admin_token(keys, role="user")))
    assert admin.json()["app"] == "beta" and admin.json()["gwcore"]["route"] == "api-admins"
    assert user.json()["app"] == "alpha" and user.json()["gwcore"]["route"] == "api"
    # A forged token claiming the role routes nowhere special: it is refused.
    forged = Signer.rsa("corp-1").token(role="admin", sub="mallory")
    assert get(served, "/api/orders", **bearer(forged)).status_code == 401


def test_direct_response_redirect_and_no_route(served: ServedApp) -> None:
    hello = get(served, "/hello")
    assert (hello.status_code, hello.text) == (200, "hello from the gateway\n")
    moved = get(served, "/old/page?x=1")
    assert moved.status_code == 302
    assert moved.headers["location"] == f"http://127.0.0.1:{served.port}/alpha/new?x=1"
    missing = get(served, "/nowhere")
    assert (missing.status_code, missing.text) == (404, "no route\n")


def test_path_is_normalized_before_routing_and_policy(served: ServedApp, keys: Keys) -> None:
    assert raw_get(served, "/public/../admin")[0] == 401  # /admin's policy, not /public's
    assert raw_get(served, "/public/%zz") == (
        400,
        b"bad request path: invalid percent escape '%zz' at 8\n",
    )
    status, body = raw_get(served, "/public/%2e%2e/admin//x", **bearer(admin_token(keys)))
    assert status == 200
    seen = json.loads(body)
    assert seen["path"] == seen["raw_path"] == "/admin/x"
    assert seen["gwcore"]["route"] == "admin"


# ------------------------------------------------------------------------- policy


def test_missing_token_is_401_with_a_challenge(served: ServedApp) -> None:
    response = get(served, "/admin")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="gwcore"'


def test_insufficient_scope_is_403(served: ServedApp, keys: Keys) -> None:
    response = get(served, "/admin", **bearer(admin_token(keys, scope="orders:read")))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_rate_limit_answers_429_with_headers(served: ServedApp) -> None:
    first, second, third = (get(served, "/limited") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert "ratelimit" in first.headers and "ratelimit-policy" in first.headers
    assert int(third.headers["retry-after"]) > 0
    assert "ratelimit" in third.headers


def test_app_sees_transformed_headers_and_identity(served: ServedApp, keys: Keys) -> None:
    response = get(served, "/admin/report", **bearer(admin_token(keys)), **{"x-user": "mallory"})
    assert response.status_code == 200
    seen = response.json()
    headers = seen["headers"]
    assert headers["x-user"] == ["alice"]  # the client's copy removed, the claim copied
    assert headers["x-tenant"] == ["acme"] and headers["x-route"] == ["admin"]
    assert headers["x-client"] == ["127.0.0.1"]
    assert "authorization" not in headers  # forward: false
    assert headers["traceparent"][0].startswith("00-")
    identity = seen["gwcore"]
    assert identity["claims"]["sub"] == "alice" and identity["provider"] == "corp"
    assert identity["client_ip"] == "127.0.0.1" and identity["cluster"] == "alpha"
    assert headers["x-request-id"] == [identity["request_id"]]
    # Response transforms: the route's set and remove.
    assert response.headers["x-served-by"] == "gwcore admin"
    assert "x-internal" not in response.headers and response.headers["x-app"] == "alpha"


def test_client_sent_claim_header_is_stripped_without_a_token(served: ServedApp) -> None:
    seen = get(served, "/public", **{"x-user": "mallory", "x-request-id": "req-42"}).json()
    assert "x-user" not in seen["headers"]
    assert seen["gwcore"]["claims"] is None and seen["gwcore"]["request_id"] == "req-42"


def test_remote_jwks_is_fetched_once_for_concurrent_requests(served: ServedApp, keys: Keys) -> None:
    # A key the gateway has never seen: every request waits on one refetch.
    rotated = Signer.rsa(f"r-{uuid.uuid4().hex[:8]}")
    keys.jwks.keys = [keys.remote.jwk(), rotated.jwk()]
    keys.jwks.delay = 0.3
    before = keys.jwks.fetches
    token = rotated.token(issuer=REMOTE_ISSUER, sub="bob")
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: get(served, "/remote", **bearer(token)), range(8)))
    finally:
        keys.jwks.delay = 0.0
    assert [r.status_code for r in responses] == [200] * 8
    assert {r.json()["gwcore"]["claims"]["sub"] for r in responses} == {"bob"}
    assert keys.jwks.fetches == before + 1


# ---------------------------------------------------------------------- websockets


def test_websocket_allowed_with_transformed_headers(served: ServedApp, keys: Keys) -> None:
    headers = [*bearer(admin_token(keys)).items(), ("x-user", "mallory")]
    ws = WebSocket.connect(served.port, "/ws/chat", headers)
    assert isinstance(ws, WebSocket), ws
    try:
        assert ws.headers["x-app"] == "alpha"
        ws.send_text("hi")
        reply = json.loads(ws.receive_text())
    finally:
        ws.close()
    assert reply["echo"] == "hi" and reply["app"] == "alpha"
    assert reply["headers"]["x-user"] == ["alice"]
    assert reply["gwcore"]["claims"]["sub"] == "alice" and reply["gwcore"]["route"] == "ws"


def test_websocket_rejected_before_accept(served: ServedApp) -> None:
    rejected = WebSocket.connect(served.port, "/ws/chat")
    assert isinstance(rejected, Rejected)
    # Every server here has the denial response extension: the 401 itself goes out.
    assert rejected.status == 401
    assert rejected.headers["www-authenticate"] == 'Bearer realm="gwcore"'
    assert rejected.body == b"authentication required\n"
    no_route = WebSocket.connect(served.port, "/nowhere")
    assert isinstance(no_route, Rejected) and no_route.status == 404


# --------------------------------------------------------------------- guard mode


GUARD_CONFIG = """\
routes:
- name: ready
  match: {path: /ready}
  direct_response: {status: 200, body: "ready\\n"}
- name: everything
  match: {prefix: /}
  route: {cluster: app}
  request_headers:
    set: {x-guarded: "yes %ROUTE_NAME%"}
"""


def test_guard_mode_serves_one_app(tmp_path: Path) -> None:
    config = tmp_path / "guard.yaml"
    config.write_text(GUARD_CONFIG)
    app = serve(SERVERS[0], config, tmp_path, "--guard")
    try:
        seen = get(app, "/any/thing").json()
    finally:
        code = app.stop()
    assert code == 0, app.log()
    assert seen["app"] == "alpha" and seen["lifespan"] == "started"
    assert seen["headers"]["x-guarded"] == ["yes everything"]
    assert seen["gwcore"]["cluster"] == "app"
