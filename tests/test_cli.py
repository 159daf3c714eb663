"""The ``gwcore`` command, run as a real console script on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

GWCORE = Path(sys.executable).parent / "gwcore"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

CONFIG = """\
virtual_hosts:
- name: api
  domains: [api.example.com]
  routes:
  - name: healthz
    match: {path: /healthz}
    direct_response: {status: 200, body: ok}
  - name: old-docs
    match: {prefix: /docs}
    redirect: {host_redirect: docs.example.com, response_code: 302}
  - name: admin
    match:
      prefix: /admin
      headers:
      - {name: x-api-version, exact_match: v2}
      jwt_claim:
      - {name: role, exact_match: admin}
    route: {cluster: admin, timeout: 500ms}
  - name: split
    match: {path_separated_prefix: /orders}
    route:
      weighted_clusters:
      - {name: orders, weight: 90}
      - {name: canary, weight: 10}
  - name: graphql-mutations
    match:
      path: /graphql
      graphql: {operation_type: mutation}
    route: {cluster: orders}
  - name: api
    match: {prefix: /api, methods: [GET]}
    route: {cluster: orders}
clusters:
  admin: {endpoints: ['127.0.0.1:9001']}
  orders: {endpoints: ['127.0.0.1:9002']}
  canary: {endpoints: ['127.0.0.1:9003']}
listeners:
- {name: public, address: '127.0.0.1:8080'}
"""


def _run(*args: str | Path, module: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gwcore"] if module else [str(GWCORE)]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [*command, *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=60,
        check=False,
    )


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def _json(config: Path, *args: str) -> dict[str, Any]:
    result = _run("route", config, "--json", *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    data: dict[str, Any] = json.loads(lines[0])
    expected = ["route", "cluster", "status"] + (["token"] if "--token" in args else [])
    assert list(data) == expected
    return data


# --------------------------------------------------------------------- check


def test_check_valid_config_prints_one_summary_line(config: Path) -> None:
    result = _run("check", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{config}: OK — 1 virtual host, 6 routes, 3 clusters, 1 listener\n"
    assert result.stderr == ""


def test_check_example_gateway_config_is_ok() -> None:
    result = _run("check", EXAMPLES / "gateway.yaml")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.endswith("gateway.yaml: OK — 2 virtual hosts, 9 routes, 4 clusters, 1 listener")


def test_check_invalid_config_lists_every_located_error_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            routes:
            - match:
                prefix: /
                headres: []
              route: {cluster: admn, timeout: 500}
            clusters:
              admin: {endpoints: ['127.0.0.1:9001']}
            """
        ),
        encoding="utf-8",
    )
    result = _run("check", path)
    assert result.returncode == 1
    assert result.stdout == ""
    _no_traceback(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:4:14: routes[0].match.headres: unknown key 'headres'")
    assert "did you mean 'headers'?" in lines[0]
    assert lines[1].startswith(f"{path}:5:35: routes[0].route.timeout: expected a duration")


def test_check_unknown_cluster_error_suggests_a_name(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(CONFIG.replace("cluster: admin,", "cluster: admn,"), encoding="utf-8")
    result = _run("check", path)
    assert result.returncode == 1
    assert "unknown cluster 'admn' (did you mean 'admin'?)" in result.stderr
    assert "virtual_hosts[0].routes[2].route.cluster" in result.stderr


@pytest.mark.parametrize("content", [None, b"", b"routes: [\n", b"\xff\xfe routes"])
def test_check_unreadable_empty_or_broken_file_exits_1_without_traceback(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "gateway.yaml"
    if content is not None:
        path.write_bytes(content)
    result = _run("check", path)
    assert result.returncode == 1
    _no_traceback(result)
    assert result.stderr.startswith(str(path))
    assert result.stdout == ""


def test_check_directory_exits_1_without_traceback(tmp_path: Path) -> None:
    result = _run("check", tmp_path)
    assert result.returncode == 1
    _no_traceback(result)
    assert "cannot read config" in result.stderr


def test_python_dash_m_gwcore_runs_the_same_command(config: Path) -> None:
    result = _run("check", config, module=True)
    assert result.returncode == 0, result.stderr
    assert "OK — 1 virtual host" in result.stdout


# ------------------------------------------------------------- route (text)


def test_route_text_names_the_winner_and_each_failed_matcher(config: Path) -> None:
    result = _run(
        "route", config, "--method", "GET", "--path", "/api/items", "--host", "api.example.com"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "virtual host 'api'" in out
    assert "routes[0] 'healthz': no: path '/healthz'" in out
    assert "routes[2] 'admin': no: prefix '/admin'" in out
    assert "routes[5] 'api': MATCHED -> cluster orders" in out
    assert out.rstrip().endswith("result: api -> cluster orders, timeout 15s")


def test_route_text_shows_the_failed_header_and_what_the_request_had(config: Path) -> None:
    result = _run(
        "route", config, "--path", "/admin", "--host", "api.example.com", "-H", "x-api-version: v1"
    )
    assert result.returncode == 0, result.stderr
    assert "routes[2] 'admin': no: header x-api-version exact 'v2'" in result.stdout
    assert "request has 'v1'" in result.stdout
    assert "result: no route (404)" in result.stdout


def test_route_text_says_when_claims_were_not_given(config: Path) -> None:
    args = ("route", config, "--path", "/admin", "--host", "api.example.com")
    result = _run(*args, "-H", "x-api-version: v2")
    assert result.returncode == 0, result.stderr
    assert "claim role exact 'admin'" in result.stdout
    assert "token lacks the claim" in result.stdout
    assert "no --claims given" in result.stdout and "routes[2] needed claims" in result.stdout

    with_claims = _run(*args, "-H", "x-api-version: v2", "--claims", '{"role": "admin"}')
    assert "routes[2] 'admin': MATCHED -> cluster admin, timeout 0.5s" in with_claims.stdout
    assert "no --claims given" not in with_claims.stdout

    # The header already fails, so the missing claims did not matter: no note.
    unrelated = _run(*args)
    assert "no --claims given" not in unrelated.stdout


def test_route_text_says_when_the_body_was_not_given(config: Path, tmp_path: Path) -> None:
    args = ("route", config, "--method", "POST", "--path", "/graphql", "--host", "api.example.com")
    headers = ("-H", "content-type: application/json")
    result = _run(*args, *headers)
    assert "no --body given" in result.stdout and "routes[4] needed the body" in result.stdout
    assert "result: no route (404)" in result.stdout

    body = json.dumps({"query": "mutation { add }"})
    with_body = _run(*args, *headers, "--body", body)
    assert "result: graphql-mutations -> cluster orders" in with_body.stdout
    assert "no --body given" not in with_body.stdout

    body_file = tmp_path / "body.json"
    body_file.write_text(body, encoding="utf-8")
    assert _json(config, *args[2:], *headers, "--body-file", str(body_file))["route"] == (
        "graphql-mutations"
    )


def test_route_text_for_a_host_without_virtual_host(config: Path) -> None:
    result = _run("route", config, "--path", "/", "--host", "other.example.com")
    assert result.returncode == 0
    assert "host 'other.example.com': no virtual host serves it" in result.stdout
    assert "result: no route (404)" in result.stdout


def test_route_text_shows_the_weighted_pick(config: Path) -> None:
    result = _run(
        "route", config, "--path", "/orders/1", "--host", "api.example.com", "--weight-draw", "0.95"
    )
    assert "weighted clusters orders=90, canary=10" in result.stdout
    assert "weighted pick with --weight-draw 0.95: canary" in result.stdout


# ------------------------------------------------------------- route (json)


def test_route_json_forwarded_request_names_route_and_cluster(config: Path) -> None:
    data = _json(config, "--path", "/api/items", "--host", "api.example.com")
    assert data == {"route": "api", "cluster": "orders", "status": None}


def test_route_json_direct_response_gives_its_status(config: Path) -> None:
    data = _json(config, "--path", "/healthz", "--host", "API.example.com:8080")
    assert data == {"route": "healthz", "cluster": None, "status": 200}


def test_route_json_redirect_gives_its_response_code(config: Path) -> None:
    data = _json(config, "--path", "/docs/intro", "--host", "api.example.com")
    assert data == {"route": "old-docs", "cluster": None, "status": 302}


@pytest.mark.parametrize(
    "args",
    [
        ("--path", "/nowhere", "--host", "api.example.com"),
        ("--path", "/api/items", "--method", "DELETE", "--host", "api.example.com"),
        ("--path", "/", "--host", "unknown.example.com"),
    ],
)
def test_route_json_no_route_is_404(config: Path, args: tuple[str, ...]) -> None:
    assert _json(config, *args) == {"route": None, "cluster": None, "status": 404}


@pytest.mark.parametrize(
    ("draw", "cluster"),
    [(None, "orders"), ("0.5", "orders"), ("0.9", "canary"), ("0.999", "canary")],
)
def test_route_json_weighted_clusters_pick_by_weight_draw(
    config: Path, draw: str | None, cluster: str
) -> None:
    extra = ("--weight-draw", draw) if draw is not None else ()
    data = _json(config, "--path", "/orders", "--host", "api.example.com", *extra)
    assert data == {"route": "split", "cluster": cluster, "status": None}


def test_route_json_unnamed_route_has_null_name_but_its_cluster() -> None:
    data = _json(
        EXAMPLES / "gateway.yaml",
        "--path",
        "/v2/orders",
        "--host",
        "api.example.com",
        "-H",
        "x-api-version: v2",
        "--claims",
        '{"role": "admin"}',
    )
    assert data == {
        "route": None,
        "cluster": "admin-service-v2",
        "status": None,
    }


# ---------------------------------------------------------------- --requests


def test_route_requests_file_answers_each_line_in_order(config: Path, tmp_path: Path) -> None:
    lines = [
        {"path": "/healthz", "host": "api.example.com"},
        {"method": "GET", "path": "/api/x", "host": "api.example.com"},
        {
            "path": "/admin/users",
            "host": "api.example.com",
            "headers": [["X-Api-Version", "v2"]],
            "claims": {"role": "admin"},
        },
        {"path": "/admin/users", "host": "api.example.com", "headers": [["x-api-version", "v2"]]},
        {"path": "/orders", "headers": [["host", "api.example.com"]]},
        {
            "method": "POST",
            "path": "/graphql",
            "host": "api.example.com",
            "headers": [["content-type", "application/graphql"]],
            "body": "mutation { add }",
        },
        {"path": "/docs", "host": "elsewhere"},
    ]
    requests = tmp_path / "requests.jsonl"
    text = "\n".join(json.dumps(line) for line in lines)
    requests.write_text(text.replace("\n", "\n\n", 1) + "\n   \n", encoding="utf-8")
    result = _run("route", config, "--requests", requests, "--weight-draw", "0.95")
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert answers == [
        {"route": "healthz", "cluster": None, "status": 200},
        {"route": "api", "cluster": "orders", "status": None},
        {"route": "admin", "cluster": "admin", "status": None},
        {"route": None, "cluster": None, "status": 404},
        {"route": "split", "cluster": "canary", "status": None},
        {"route": "graphql-mutations", "cluster": "orders", "status": None},
        {"route": None, "cluster": None, "status": 404},
    ]


def test_route_requests_bad_lines_are_named_and_nothing_is_printed(
    config: Path, tmp_path: Path
) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        "\n".join(
            [
                '{"path": "/healthz"}',
                "",
                '{"path": "/x", "heders": []}',
                '{"path": "/x"',
                '{"path": 5, "headers": [["a"]], "claims": [], "body": 1}',
                "[]",
                '{"method": "GET"}',
            ]
        ),
        encoding="utf-8",
    )
    result = _run("route", config, "--requests", requests)
    assert result.returncode == 1
    assert result.stdout == ""
    _no_traceback(result)
    lines = result.stderr.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        f"{requests}:3",
        f"{requests}:4",
        f"{requests}:5",
        f"{requests}:6",
        f"{requests}:7",
    ]
    assert "unknown key 'heders' (did you mean 'headers'?)" in lines[0]
    assert "invalid JSON" in lines[1]
    for problem in ("path must be a string", "headers[0]", "claims must be", "body must be"):
        assert problem in lines[2]
    assert "expected a JSON object" in lines[3]
    assert "missing required key 'path'" in lines[4]


def test_route_requests_file_that_cannot_be_read_exits_1(config: Path, tmp_path: Path) -> None:
    result = _run("route", config, "--requests", tmp_path / "missing.jsonl")
    assert result.returncode == 1
    _no_traceback(result)
    assert "missing.jsonl: cannot read requests" in result.stderr


def test_route_requests_does_not_mix_with_single_request_options(
    config: Path, tmp_path: Path
) -> None:
    requests = tmp_path / "r.jsonl"
    requests.write_text('{"path": "/"}\n', encoding="utf-8")
    result = _run("route", config, "--requests", requests, "--path", "/")
    assert result.returncode == 2
    assert "--requests" in result.stderr and "--path" in result.stderr


# -------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-H", "x-api-version v2"), "no colon"),
        (("-H", ": v2"), "expected 'name: value'"),
        (("--claims", "{role: admin}"), "not valid JSON"),
        (("--claims", '["admin"]'), "expected a JSON object"),
        (("--claims", "null"), "expected a JSON object"),
        (("--weight-draw", "1.0"), "[0, 1)"),
        (("--weight-draw", "-0.1"), "[0, 1)"),
        (("--weight-draw", "half"), "[0, 1)"),
        (("--body", "a", "--body-file", "b"), "not allowed with"),
    ],
)
def test_route_bad_arguments_exit_2_with_a_clear_message(
    config: Path, args: tuple[str, ...], message: str
) -> None:
    result = _run("route", config, "--path", "/", *args)
    assert result.returncode == 2
    _no_traceback(result)
    assert message in result.stderr
    assert result.stdout == ""


def test_route_without_path_exits_2(config: Path) -> None:
    result = _run("route", config)
    assert result.returncode == 2
    assert "--path" in result.stderr


def test_route_on_invalid_config_exits_1_with_located_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("routes:\n- match: {prefx: /}\n  direct_response: {status: 200}\n", "utf-8")
    result = _run("route", path, "--path", "/", "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    _no_traceback(result)
    assert result.stderr.startswith(f"{path}:2:18: routes[0].match.prefx: unknown key")


# ------------------------------------------------------------ seed example


SEED_REQUEST = ("--method", "GET", "--path", "/v2/x", "-H", "x-api-version: v2")


def test_seed_example_routes_admin_to_admin_service_v2() -> None:
    data = _json(EXAMPLES / "seed.yaml", *SEED_REQUEST, "--claims", '{"role":"admin"}')
    assert data == {"route": None, "cluster": "admin-service-v2", "status": None}


def test_seed_example_without_the_claim_is_404() -> None:
    assert _json(EXAMPLES / "seed.yaml", *SEED_REQUEST) == {
        "route": None,
        "cluster": None,
        "status": 404,
    }
    other_role = _json(EXAMPLES / "seed.yaml", *SEED_REQUEST, "--claims", '{"role": "user"}')
    assert other_role["status"] == 404


def test_seed_example_text_explains_both_outcomes() -> None:
    matched = _run("route", EXAMPLES / "seed.yaml", *SEED_REQUEST, "--claims", '{"role":"admin"}')
    assert matched.stdout.splitlines() == [
        "host '': virtual host 'default' (domains ['*'])",
        "  routes[0]: MATCHED -> cluster admin-service-v2, timeout 0.5s",
        "result: routes[0] -> cluster admin-service-v2, timeout 0.5s",
    ]
    missing = _run("route", EXAMPLES / "seed.yaml", *SEED_REQUEST)
    assert missing.stdout.splitlines() == [
        "host '': virtual host 'default' (domains ['*'])",
        "  routes[0]: no: claim role exact 'admin' [routes[0].match.jwt_claim[0]]: "
        "token lacks the claim",
        "result: no route (404)",
        "note: no --claims given, so the request has no verified token (claims {}); "
        "routes[0] needed claims",
    ]


# ------------------------------------------------------------- --token


def _seed_with_provider(tmp_path: Path) -> tuple[Path, Any, str]:
    """The seed example plus a provider with a file JWKS; returns (config, key, kid)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1"}
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    config = tmp_path / "seed.yaml"
    config.write_text(
        (EXAMPLES / "seed.yaml").read_text()
        + "jwt_providers:\n  corp:\n    issuer: https://idp.test\n"
        + "    algorithms: [ES256]\n    jwks: {file: jwks.json}\n"
    )
    return config, key, "k1"


def _token(key: Any, **claims: Any) -> str:
    import jwt

    payload = {"iss": "https://idp.test", "iat": 1_900_000_000, "exp": 1_900_000_600, **claims}
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": "k1"})


def test_route_token_agrees_with_the_gateway_claim_routing(tmp_path: Path) -> None:
    config, key, _ = _seed_with_provider(tmp_path)
    admin = _token(key, role="admin")
    at = ("--now", "1900000100")
    data = _json(config, *SEED_REQUEST, "--token", admin, *at)
    assert data == {
        "route": None,
        "cluster": "admin-service-v2",
        "status": None,
        "token": "token: verified by provider 'corp'",
    }
    assert _json(config, *SEED_REQUEST, "--token", _token(key, role="user"), *at)["status"] == 404
    # Expired at that time: it does not verify, so it carries no claims.
    late = _json(config, *SEED_REQUEST, "--token", admin, "--now", "1900001000")
    assert late["status"] == 404
    assert late["token"].startswith("token: rejected by 'corp': ")
    # Signed by another key: same.
    other_key, _, _ = _seed_with_provider(tmp_path / "other")[1], None, None
    assert (
        _json(config, *SEED_REQUEST, "--token", _token(other_key, role="admin"), *at)["status"]
        == 404
    )


def test_route_token_and_claims_are_exclusive_and_now_needs_token(tmp_path: Path) -> None:
    config, key, _ = _seed_with_provider(tmp_path)
    both = _run("route", config, "--path", "/", "--claims", "{}", "--token", _token(key))
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    alone = _run("route", config, "--path", "/", "--now", "5")
    assert alone.returncode == 2 and "--now applies to --token" in alone.stderr
