"""Policy end to end: real signed tokens, a real JWKS server with key rotation, rate
limits behind a trusted proxy, path normalization, and gRPC rejections from a real
grpcio client — through ``gwcore serve`` on both backends."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
from conftest import GatewayProcess, start_gateway, stop_gateway, wait_until
from idp import ISSUER, REMOTE_ISSUER, JwksServer, Signer
from upstream_server import EchoUpstream

CONFIG = """\
listeners:
- name: policy
  address: "127.0.0.1:8080"
jwt_providers:
  corp:
    issuer: {issuer}
    audiences: [api]
    algorithms: [RS256, ES256]
    jwks: {{file: {jwks_file}}}
    claims_to_headers: [{{claim: sub, header: x-user}}]
  remote:
    issuer: {remote_issuer}
    audiences: [api]
    algorithms: [RS256]
    jwks: {{remote: {{uri: "{jwks_url}", cache_duration: 5m, refetch_cooldown: 10ms, timeout: 2s}}}}
trusted_proxies: [127.0.0.1/32]
rate_limits:
  per-ip: {{algorithm: token_bucket, rate: 0.01/s, burst: 3, key: [client_ip]}}
  per-user: {{algorithm: sliding_window, limit: 2, window: 1h, key: [{{claim: sub}}]}}
clusters:
  admin-service-v2:
    endpoints: ["127.0.0.1:{echo_port}"]
  echo:
    endpoints: ["127.0.0.1:{echo_port}"]
routes:
# The seed example, unchanged.
- match:
    headers:
    - name: "x-api-version"
      exact_match: "v2"
    jwt_claim:
    - name: "role"
      exact_match: "admin"
  route:
    cluster: "admin-service-v2"
    timeout: 500ms
- name: admin
  match: {{prefix: /admin}}
  route: {{cluster: echo}}
  policy:
    jwt: corp
    require: {{claims: {{scope: [admin:write]}}}}
  request_headers:
    set: {{x-tenant: "%CLAIM(tenant)%", x-client: "%CLIENT_IP%"}}
- name: remote
  match: {{prefix: /remote}}
  route: {{cluster: echo}}
  policy: {{jwt: remote}}
- name: limited
  match: {{prefix: /limited}}
  route: {{cluster: echo}}
  policy: {{rate_limit: per-ip}}
- name: per-user
  match: {{prefix: /per-user}}
  route: {{cluster: echo}}
  policy: {{jwt: corp, rate_limit: per-user}}
- name: grpc
  match: {{prefix: /pkg.Svc/}}
  route: {{cluster: echo}}
  policy: {{jwt: corp, require: {{claims: {{scope: [rpc]}}}}, rate_limit: per-user}}
- name: public
  match: {{prefix: /public}}
  route: {{cluster: echo}}
"""


@dataclass
class Setup:
    gateway: GatewayProcess
    corp: Signer
    corp_ec: Signer
    remote: JwksServer
    upstream: EchoUpstream

    @property
    def url(self) -> str:
        return self.gateway.url


@pytest.fixture(scope="module")
def setup(
    backend: str, upstream: EchoUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("policy")
    corp, corp_ec = Signer.rsa("corp-1"), Signer.ec("corp-ec")
    jwks_file = directory / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [corp.jwk(), corp_ec.jwk()]}))
    remote = JwksServer()
    remote.keys = [Signer.rsa("r-0").jwk()]  # the IdP is up before the gateway starts
    config = directory / "gateway.yaml"
    config.write_text(
        CONFIG.format(
            issuer=ISSUER,
            remote_issuer=REMOTE_ISSUER,
            jwks_file=jwks_file,
            jwks_url=remote.url(),
            echo_port=upstream.port,
        )
    )
    gateway = start_gateway(config, directory)
    yield Setup(gateway, corp, corp_ec, remote, upstream)
    stop_gateway(gateway)
    remote.stop()
    assert "Traceback" not in gateway.events(), gateway.events()


def _get(url: str, **headers: str) -> httpx.Response:
    headers.setdefault("x-request-id", str(uuid.uuid4()))
    return httpx.get(url, headers=headers, timeout=10)


def _bearer(token: str) -> str:
    return f"Bearer {token}"


# ------------------------------------------------------------- seed example


def test_seed_example_routes_a_real_admin_token_to_admin_service_v2(setup: Setup) -> None:
    token = setup.corp.token(role="admin", sub="alice")
    response = _get(
        f"{setup.url}/anything", **{"x-api-version": "v2", "authorization": _bearer(token)}
    )
    assert response.status_code == 200
    record = setup.gateway.access_record(response.request.headers["x-request-id"])
    assert record["cluster"] == "admin-service-v2"


def test_seed_example_is_404_without_a_valid_admin_token(setup: Setup) -> None:
    forger = Signer.rsa("corp-1")  # same kid, another key: the signature fails
    cases = {
        "no token": None,
        "other role": setup.corp.token(role="user"),
        "forged": forger.token(role="admin"),
        "expired": setup.corp.token(role="admin", lifetime=-120),
        "wrong audience": setup.corp.token(role="admin", aud="other"),
    }
    for label, token in cases.items():
        headers = {"x-api-version": "v2"}
        if token is not None:
            headers["authorization"] = _bearer(token)
        assert _get(f"{setup.url}/anything", **headers).status_code == 404, label


def test_seed_example_route_timeout_is_500ms(setup: Setup) -> None:
    token = setup.corp.token(role="admin")
    started = time.monotonic()
    response = _get(
        f"{setup.url}/slow",
        **{
            "x-api-version": "v2",
            "authorization": _bearer(token),
            "x-echo-mode": "slow",
            "x-delay": "2",
        },
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert 0.45 <= elapsed < 1.8


# ---------------------------------------------------- authn / authz / transforms


def test_route_policy_401_403_and_200(setup: Setup) -> None:
    missing = _get(f"{setup.url}/admin/x")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="gwcore"'

    bad = _get(f"{setup.url}/admin/x", authorization="Bearer not.a.token")
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]

    lacking = _get(
        f"{setup.url}/admin/x", authorization=_bearer(setup.corp.token(sub="bob", scope="read"))
    )
    assert lacking.status_code == 403
    assert 'error="insufficient_scope"' in lacking.headers["www-authenticate"]

    token = setup.corp_ec.token(sub="carol", scope="read admin:write", tenant="acme")
    ok = _get(
        f"{setup.url}/admin/x",
        # Client-sent identity headers are never believed.
        **{"authorization": f"bEaReR {token}", "x-user": "mallory", "x-tenant": "evil"},
    )
    assert ok.status_code == 200, ok.text
    seen = dict((k, v) for k, v in ok.json()["headers"] if k != "x-forwarded-for")
    assert seen["x-user"] == "carol"
    assert seen["x-tenant"] == "acme"
    assert seen["x-client"] == "127.0.0.1"
    assert "authorization" not in seen  # forward: false by default
    assert seen["traceparent"].startswith("00-")


def test_normalized_paths_cannot_slip_past_a_prefix_rule(setup: Setup) -> None:
    for path in ("/public/../admin/x", "//admin/x", "/public/%2e%2e/admin/x", "/%61dmin/x"):
        with httpx.Client() as client:
            request = client.build_request("GET", f"{setup.url}/")
            request.url = request.url.copy_with(raw_path=path.encode())
            assert client.send(request).status_code == 401, path


# ----------------------------------------------------------------- remote JWKS


def test_remote_jwks_single_flight_and_key_rotation(setup: Setup) -> None:
    # The keys were fetched ahead of time, when the first client connected.
    assert wait_until(lambda: setup.remote.fetches >= 1)
    time.sleep(0.05)  # past refetch_cooldown (10ms)
    # The IdP adds a key; ten concurrent requests signed with it share one refetch.
    first = Signer.rsa("r-1")
    setup.remote.keys = [*setup.remote.keys, first.jwk()]
    setup.remote.delay = 0.3
    token = first.token(issuer=REMOTE_ISSUER, sub="dave")
    before = setup.remote.fetches
    results: list[int] = []

    def call() -> None:
        results.append(_get(f"{setup.url}/remote", authorization=_bearer(token)).status_code)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 10
    assert setup.remote.fetches - before == 1  # single flight

    # Rotation: the provider publishes a new key and drops the old one.
    time.sleep(0.05)  # past refetch_cooldown (10ms)
    second = Signer.rsa("r-2")
    setup.remote.keys = [second.jwk()]
    setup.remote.delay = 0.0
    new_token = second.token(issuer=REMOTE_ISSUER, sub="dave")
    assert _get(f"{setup.url}/remote", authorization=_bearer(new_token)).status_code == 200
    assert setup.remote.fetches - before == 2  # the unknown kid triggered one refetch
    # The old key is gone from the set: its token (even one seen before) no longer passes.
    assert _get(f"{setup.url}/remote", authorization=_bearer(token)).status_code == 401


# ------------------------------------------------------------------ rate limits


def test_rate_limit_per_client_ip_behind_a_trusted_proxy(setup: Setup) -> None:
    statuses = [
        _get(f"{setup.url}/limited", **{"x-forwarded-for": "203.0.113.7"}) for _ in range(4)
    ]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    denied = statuses[-1]
    assert int(denied.headers["retry-after"]) >= 1
    assert denied.headers["ratelimit-policy"].startswith('"per-ip"')
    assert "r=0" in denied.headers["ratelimit"]
    assert "ratelimit" in statuses[0].headers
    # Another client behind the same proxy is not affected (no false positives), and a
    # client cannot borrow someone else's identity by prepending an address.
    assert _get(f"{setup.url}/limited", **{"x-forwarded-for": "203.0.113.8"}).status_code == 200
    spoofed = _get(f"{setup.url}/limited", **{"x-forwarded-for": "198.51.100.1, 203.0.113.7"})
    assert spoofed.status_code == 429


def test_rate_limit_keyed_by_a_verified_claim(setup: Setup) -> None:
    token = setup.corp.token(sub=f"erin-{uuid.uuid4()}")
    codes = [
        _get(f"{setup.url}/per-user", authorization=_bearer(token)).status_code for _ in range(3)
    ]
    assert codes == [200, 200, 429]


# ------------------------------------------------------------------------ gRPC


def test_grpc_clients_get_trailers_only_rejections(setup: Setup) -> None:
    target = f"127.0.0.1:{setup.gateway.port}"
    with grpc.insecure_channel(target) as channel:
        method = channel.unary_unary(
            "/pkg.Svc/Call",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )

        def code(metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:
            with pytest.raises(grpc.RpcError) as info:
                method(b"\x00", metadata=metadata, timeout=5)
            return info.value.code()  # type: ignore[attr-defined,no-any-return]

        assert code() == grpc.StatusCode.UNAUTHENTICATED
        no_scope = setup.corp.token(sub=f"frank-{uuid.uuid4()}", scope="read")
        assert code((("authorization", _bearer(no_scope)),)) == grpc.StatusCode.PERMISSION_DENIED
        scoped = setup.corp.token(sub=f"gina-{uuid.uuid4()}", scope="rpc")
        metadata = (("authorization", _bearer(scoped)),)
        # The echo upstream speaks HTTP/1.1 JSON, not gRPC: what matters is that the
        # first two calls pass policy (any status but RESOURCE_EXHAUSTED), the third not.
        for _ in range(2):
            assert code(metadata) != grpc.StatusCode.RESOURCE_EXHAUSTED
        assert code(metadata) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_policy_rejections_are_logged_with_flags(setup: Setup) -> None:
    request_id = str(uuid.uuid4())
    assert _get(f"{setup.url}/admin/y", **{"x-request-id": request_id}).status_code == 401
    record = setup.gateway.access_record(request_id)
    assert record["status"] == 401 and record["flags"] == "UAEX"
    assert record["route"] == "admin"
