"""The policy part of the config language: JWT providers, JWKS sources, rate limits,
route policies, trusted proxies, path normalization, tracing and header transforms."""

from __future__ import annotations

import ipaddress
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from real_keys import OKP_JWK, RSA_JWK, flow

from gwcore.config import ConfigError, ConfigIssue, load_config, load_config_file, load_config_text
from gwcore.config import model as m

JWKS = {"keys": [{**RSA_JWK, "kid": "k1"}]}
INLINE = "{inline: " + flow({"keys": [RSA_JWK]}) + "}"
SECRET = "{inline: {keys: [{kty: oct, k: c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA}]}}"

SEED = """\
jwt_providers:
  corp:
    issuer: https://idp.example.test
    audiences: [api]
    algorithms: [RS256, ES256]
    jwks: {file: keys/jwks.json}
    clock_skew: 60s
trusted_proxies: [10.0.0.0/8, 127.0.0.1/32]
rate_limits:
  per-client: {algorithm: token_bucket, rate: 100/s, burst: 20, key: [{claim: client_id}]}
  per-ip: {algorithm: sliding_window, limit: 1000, window: 1m, key: [client_ip]}
routes:
- name: admin
  match: {prefix: /admin, jwt_claim: [{name: role, exact_match: admin}]}
  route: {cluster: admin-service-v2, timeout: 500ms}
  policy:
    jwt: corp
    require: {claims: {scope: [admin:write]}}
    rate_limit: per-client
clusters:
  admin-service-v2: {endpoints: ['127.0.0.1:9001']}
"""


def _load(text: str) -> m.GatewayConfig:
    return load_config_text(textwrap.dedent(text), "gw.yaml")


def _issues(text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        _load(text)
    return info.value.issues


def _issue(text: str) -> ConfigIssue:
    issues = _issues(text)
    assert len(issues) == 1, "\n".join(str(i) for i in issues)
    return issues[0]


def _provider(body: str, *, jwks: str = INLINE) -> str:
    """A config with one provider ``p`` (issuer ``https://i``) plus ``body`` lines."""
    lines = textwrap.indent(textwrap.dedent(body), "    ")
    return f"jwt_providers:\n  p:\n    issuer: https://i\n    jwks: {jwks}\n{lines}\n"


def _one_provider(body: str = "", **kw: str) -> m.JwtProvider:
    return _load(_provider(body, **kw)).jwt_providers["p"]


def _routes_with(route_lines: str, head: str = "") -> str:
    """``head`` (top-level YAML) plus one route (prefix /, direct_response) with extra lines."""
    extra = textwrap.indent(textwrap.dedent(route_lines), "  ")
    return (
        textwrap.dedent(head)
        + "routes:\n- match: {prefix: /}\n  direct_response: {status: 200}\n"
        + extra
        + "\n"
    )


PROVIDERS = "jwt_providers:\n  corp: {issuer: https://i, jwks: " + INLINE + "}\n"
LIMITS = """\
rate_limits:
  per-ip: {algorithm: sliding_window, limit: 10, window: 1s}
  per-user: {algorithm: token_bucket, rate: 5/s, burst: 5, key: [{claim: sub}]}
"""


def _policy(policy_yaml: str, head: str = PROVIDERS + LIMITS) -> m.RoutePolicy:
    body = "policy:\n" + textwrap.indent(textwrap.dedent(policy_yaml), "  ")
    return _load(_routes_with(body, head)).virtual_hosts[0].routes[0].policy


def _policy_issue(policy_yaml: str, head: str = PROVIDERS + LIMITS) -> ConfigIssue:
    body = "policy:\n" + textwrap.indent(textwrap.dedent(policy_yaml), "  ")
    return _issue(_routes_with(body, head))


# ------------------------------------------------------------------ the seed


def test_seed_policy_example_loads_and_means_what_it_says(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "jwks.json").write_text(json.dumps(JWKS))
    (tmp_path / "gw.yaml").write_text(SEED)
    config = load_config_file(tmp_path / "gw.yaml")

    corp = config.jwt_providers["corp"]
    assert corp.name == "corp" and corp.issuer == "https://idp.example.test"
    assert corp.audiences == ("api",)
    assert corp.algorithms == ("RS256", "ES256")
    assert corp.clock_skew == 60.0
    assert corp.jwks.kind == "file"
    assert corp.jwks.document == JWKS
    assert corp.jwks.path == str(tmp_path / "keys" / "jwks.json")
    assert corp.location == "jwt_providers.corp"
    # Defaults.
    assert corp.sources == (m.BEARER,)
    assert (corp.forward, corp.required_claims, corp.max_token_bytes) == (False, ("exp",), 8192)

    assert config.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
    )
    per_client = config.rate_limits["per-client"]
    assert per_client == m.RateLimit(
        "per-client",
        "token_bucket",
        key=(m.RateKeyPart("claim", path=("client_id",)),),
        rate=100.0,
        burst=20,
        location="rate_limits.per-client",
    )
    per_ip = config.rate_limits["per-ip"]
    assert (per_ip.algorithm, per_ip.limit, per_ip.window) == ("sliding_window", 1000, 60.0)
    assert per_ip.key == (m.RateKeyPart("client_ip"),)

    (route,) = config.virtual_hosts[0].routes
    policy = route.policy
    assert policy.location == "routes[0].policy"
    assert policy.jwt == m.JwtRequirement("corp", False, "routes[0].policy.jwt")
    assert policy.require.claims == (
        m.ClaimRequirement(
            ("scope",), ("admin:write",), "all", "routes[0].policy.require.claims.scope"
        ),
    )
    assert policy.rate_limits == ("per-client",)
    # The routing part is unchanged.
    assert route.action == m.ForwardAction(cluster="admin-service-v2", timeout=0.5)
    assert config.global_policy.empty
    assert config.path_normalization == m.PathNormalization()
    assert config.untrusted_request_headers == () and config.tracing is True


def test_configs_without_policy_get_the_model_defaults() -> None:
    config = _load("routes: []\n")
    assert config.jwt_providers == {} and config.rate_limits == {}
    assert config.trusted_proxies == () and config.global_policy == m.RoutePolicy()
    route = _load(_routes_with("")).virtual_hosts[0].routes[0]
    assert route.policy == m.RoutePolicy()


def test_policy_mappings_are_read_only() -> None:
    config = _load(PROVIDERS + LIMITS + "routes: []\n")
    with pytest.raises(TypeError):
        config.jwt_providers["x"] = config.jwt_providers["corp"]  # type: ignore[index]
    with pytest.raises(TypeError):
        config.rate_limits["x"] = config.rate_limits["per-ip"]  # type: ignore[index]


# --------------------------------------------------------------- providers


def test_provider_options_parse() -> None:
    provider = _one_provider(
        """\
        audiences: api
        algorithms: [EdDSA]
        clock_skew: 1m30s
        from:
        - {header: Authorization, prefix: Bearer}
        - {header: X-Token}
        - {query: access_token}
        - {cookie: session}
        forward: true
        claims_to_headers:
        - {claim: tenant.id, header: X-Tenant}
        - {path: [https://example.test/roles], header: x-roles}
        required_claims: [exp, sub]
        max_token_bytes: 16KiB
        cache_size: 0
        realm: api.example
        """,
        jwks="{inline: " + flow({"keys": [OKP_JWK]}) + "}",
    )
    assert provider.audiences == ("api",)
    assert provider.algorithms == ("EdDSA",)
    assert provider.clock_skew == 90.0
    assert provider.sources == (
        m.TokenSource("header", "authorization", "Bearer"),
        m.TokenSource("header", "x-token"),
        m.TokenSource("query", "access_token"),
        m.TokenSource("cookie", "session"),
    )
    assert provider.forward is True
    assert provider.claims_to_headers == (
        m.ClaimToHeader(("tenant", "id"), "x-tenant"),
        m.ClaimToHeader(("https://example.test/roles",), "x-roles"),
    )
    assert provider.required_claims == ("exp", "sub")
    assert (provider.max_token_bytes, provider.cache_size, provider.realm) == (
        16384,
        0,
        "api.example",
    )


def test_audiences_may_be_empty_and_required_claims_may_be_none() -> None:
    provider = _one_provider("audiences: []\nrequired_claims: []")
    assert provider.audiences == () and provider.required_claims == ()


def test_issuer_and_jwks_are_required() -> None:
    issues = _issues("jwt_providers:\n  p: {audiences: [a]}\nroutes: []\n")
    assert [(i.path, i.message) for i in issues] == [
        ("jwt_providers.p", "missing required key 'issuer'"),
        ("jwt_providers.p", "missing required key 'jwks'"),
    ]
    issue = _issue(_provider("", jwks=INLINE).replace("https://i", "''"))
    assert issue.path == "jwt_providers.p.issuer" and "non-empty" in issue.message


@pytest.mark.parametrize("none", ["none", "None", "NONE"])
def test_the_none_algorithm_is_refused_specifically(none: str) -> None:
    issue = _issue(_provider(f"algorithms: [RS256, {none}]"))
    assert issue.path == "jwt_providers.p.algorithms[1]"
    assert (issue.line, issue.column) == (5, 25)
    assert "the none algorithm is never accepted" in issue.message


def test_unknown_algorithm_suggests_the_right_case() -> None:
    issue = _issue(_provider("algorithms: [rs256]"))
    assert "unknown JWT algorithm 'rs256'" in issue.message
    assert "did you mean 'RS256'?" in issue.message
    issue = _issue(_provider("algorithms: [ES265]"))
    assert "did you mean 'ES256'?" in issue.message


def test_hmac_and_public_key_algorithms_cannot_be_mixed() -> None:
    issue = _issue(_provider("algorithms: [HS256, RS256]"))
    assert issue.path == "jwt_providers.p.algorithms"
    assert "key confusion" in issue.message
    assert "HS256" in issue.message and "RS256" in issue.message


def test_algorithm_listed_twice_and_empty_list() -> None:
    assert "listed twice" in _issue(_provider("algorithms: [RS256, RS256]")).message
    assert "non-empty list" in _issue(_provider("algorithms: []")).message


def test_two_providers_with_the_same_issuer_are_refused() -> None:
    issue = _issue(
        f"""\
        jwt_providers:
          a: {{issuer: https://i, jwks: {INLINE}}}
          b:
            issuer: https://i
            jwks: {INLINE}
        routes: []
        """
    )
    assert issue.path == "jwt_providers.b.issuer"
    assert issue.line == 4
    assert "already used by provider 'a'" in issue.message
    assert "unique" in issue.message


def test_clock_skew_is_bounded() -> None:
    assert _one_provider("clock_skew: 1h").clock_skew == 3600.0
    issue = _issue(_provider("clock_skew: 61m"))
    assert issue.path == "jwt_providers.p.clock_skew" and "at most 3600s" in issue.message
    issue = _issue(_provider("clock_skew: 60"))
    assert "add a unit" in issue.message


@pytest.mark.parametrize(
    ("source", "path", "complaint"),
    [
        ("{header: x, query: y}", "from[0]", "exactly one of header, query or cookie"),
        ("{}", "from[0]", "exactly one of header, query or cookie"),
        ("{query: t, prefix: Bearer}", "from[0].prefix", "prefix applies to a header"),
        ("{header: authorization, prefix: 'Bearer '}", "from[0].prefix", "one word"),
        ("{header: 'x y'}", "from[0].header", "invalid header name"),
        ("{header: ':path'}", "from[0].header", "pseudo-header"),
        ("{cookie: 'a;b'}", "from[0].cookie", "cookie names are HTTP tokens"),
        ("{query: ''}", "from[0].query", "non-empty"),
    ],
)
def test_bad_token_sources_are_located(source: str, path: str, complaint: str) -> None:
    issue = _issue(_provider(f"from: [{source}]"))
    assert issue.path == f"jwt_providers.p.{path}"
    assert complaint in issue.message


def test_token_sources_cannot_be_empty() -> None:
    issue = _issue(_provider("from: []"))
    assert "at least one token source" in issue.message


@pytest.mark.parametrize(
    ("entry", "path", "complaint"),
    [
        ("{claim: a, header: host}", "[0].header", "cannot be set"),
        ("{claim: a, header: ':authority'}", "[0].header", "cannot be set"),
        ("{claim: a, header: content-length}", "[0].header", "cannot be set"),
        ("{claim: a, header: transfer-encoding}", "[0].header", "cannot be set"),
        ("{claim: a, header: 'x y'}", "[0].header", "invalid header name"),
        ("{claim: a.., header: x}", "[0].claim", "empty part between dots"),
        ("{claim: a, path: [a], header: x}", "[0]", "exactly one of claim or path"),
        ("{claim: a}", "[0]", "missing required key 'header'"),
        ("{path: [], header: x}", "[0].path", "non-empty list"),
    ],
)
def test_bad_claims_to_headers_are_located(entry: str, path: str, complaint: str) -> None:
    issue = _issue(_provider(f"claims_to_headers: [{entry}]"))
    assert issue.path == f"jwt_providers.p.claims_to_headers{path}"
    assert complaint in issue.message


def test_two_claims_cannot_go_to_one_header() -> None:
    issue = _issue(
        _provider("claims_to_headers: [{claim: a, header: x-a}, {claim: b, header: X-A}]")
    )
    assert issue.path == "jwt_providers.p.claims_to_headers[1]"
    assert "already receives claim 'a'" in issue.message


@pytest.mark.parametrize(
    ("line", "path", "complaint"),
    [
        ("max_token_bytes: 65537", "max_token_bytes", "between 1 and 64KiB"),
        ("max_token_bytes: 0", "max_token_bytes", "between 1 and 64KiB"),
        ("max_token_bytes: 8 potatoes", "max_token_bytes", "invalid size"),
        ("cache_size: -1", "cache_size", "between 0 and 10000000"),
        ("cache_size: '5'", "cache_size", "expected an integer"),
        ("forward: 'yes'", "forward", "expected true or false"),
        ("realm: 'a\"b'", "realm", "cannot contain '\"'"),
        ("realm: 'a\\\\b'", "realm", "cannot contain '\\\\'"),
        ('realm: "a\\tb"', "realm", "cannot contain '\\t'"),
        ("realm: ''", "realm", "non-empty"),
        ("required_claims: exp", "required_claims", "expected a list"),
        ("required_claims: [exp, '']", "required_claims[1]", "non-empty"),
        ("audiences: [api, 3]", "audiences[1]", "quote it"),
        ("isuer: x", "isuer", "did you mean 'issuer'?"),
    ],
)
def test_bad_provider_options_are_located(line: str, path: str, complaint: str) -> None:
    issue = _issue(_provider(line))
    assert issue.path == f"jwt_providers.p.{path}"
    assert complaint in issue.message


def test_provider_names_must_be_non_empty_strings() -> None:
    issue = _issue(f"jwt_providers:\n  '': {{issuer: x, jwks: {INLINE}}}\nroutes: []\n")
    assert issue.path == "jwt_providers" and "non-empty strings" in issue.message
    issue = _issue("jwt_providers: [a]\nroutes: []\n")
    assert "expected a mapping of JWT provider name to JWT provider" in issue.message


# -------------------------------------------------------------------- JWKS


def test_inline_jwks_as_mapping_or_json_text() -> None:
    provider = _one_provider()
    assert provider.jwks == m.JwksSource("inline", document={"keys": [RSA_JWK]})
    text = json.dumps(json.dumps(JWKS))  # a YAML string holding the JSON text
    assert _one_provider(jwks=f"{{inline: {text}}}").jwks.document == JWKS


def test_inline_jwks_document_is_a_copy_of_plain_json() -> None:
    keys: dict[str, Any] = {"keys": [dict(RSA_JWK)]}
    config = load_config(
        {"jwt_providers": {"p": {"issuer": "i", "jwks": {"inline": keys}}}, "routes": []}
    )
    document = config.jwt_providers["p"].jwks.document
    assert document == keys
    keys["keys"].clear()  # the caller's dict is not shared with the config
    assert document is not None and len(document["keys"]) == 1


@pytest.mark.parametrize(
    ("jwks", "complaint"),
    [
        ("{inline: {}}", 'must have a "keys" list; it has none'),
        ("{inline: {keys: {}}}", 'must have a "keys" list; got a mapping'),
        ("{inline: {keys: []}}", "has no keys"),
        ("{inline: {keys: [5]}}", "keys[0] must be a JSON object"),
        ("{inline: {keys: [{kid: a}]}}", 'keys[0] has no "kty"'),
        ("{inline: '{\"keys\": '}", "not valid JSON"),
        ("{inline: '[1]'}", "must be a JSON object"),
        ("{inline: '{\"keys\": [NaN]}'}", "not valid JSON"),
        ("{inline: 5}", "expected the JWKS itself"),
        ("{inline: {keys: [{kty: RSA, n: .nan}]}}", "JSON cannot represent"),
        ("{inline: {keys: [{kty: RSA, 1: a}]}}", "has a key that is an integer (1)"),
        ("{inline: {keys: [{kty: RSA, d: 2001-01-01}]}}", "not a JSON value"),
        ("{}", "exactly one of inline, file or remote"),
        ("{inline: {keys: []}, remote: {uri: 'https://x'}}", "got inline, remote"),
        ("[]", "expected a mapping"),
    ],
)
def test_bad_jwks_is_located_at_the_jwks_key(jwks: str, complaint: str) -> None:
    issue = _issue(_provider("", jwks=jwks))
    assert issue.path.startswith("jwt_providers.p.jwks")
    assert issue.line == 4
    assert complaint in issue.message


def test_jwks_without_a_key_for_the_algorithms_is_refused() -> None:
    issue = _issue(_provider("algorithms: [ES256]"))
    assert issue.path == "jwt_providers.p.jwks.inline"
    assert "no key in the JWKS can verify ES256 tokens" in issue.message
    assert "RSA" in issue.message
    # An encryption key, or a key bound to another algorithm, does not count.
    enc = "{inline: {keys: [{kty: RSA, use: enc, n: A, e: A}]}}"
    assert "no key in the JWKS" in _issue(_provider("", jwks=enc)).message
    other = "{inline: {keys: [{kty: RSA, alg: RS512, n: A, e: A}]}}"
    assert "no key in the JWKS" in _issue(_provider("", jwks=other)).message
    # HMAC algorithms need an oct key.
    assert _one_provider("algorithms: [HS256]", jwks=SECRET).algorithms == ("HS256",)


def test_jwks_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf" / "keys").mkdir(parents=True)
    (tmp_path / "conf" / "keys" / "set.json").write_text(json.dumps(JWKS))
    (tmp_path / "conf" / "gw.yaml").write_text(_provider("", jwks="{file: keys/set.json}"))
    provider = load_config_file(tmp_path / "conf" / "gw.yaml").jwt_providers["p"]
    assert provider.jwks.path == str(tmp_path / "conf" / "keys" / "set.json")
    assert provider.jwks.document == JWKS


def test_jwks_file_of_a_string_config_is_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "set.json").write_text(json.dumps(JWKS))
    monkeypatch.chdir(tmp_path)
    provider = _one_provider(jwks="{file: set.json}")
    assert provider.jwks.path == str(tmp_path / "set.json")
    config = load_config(
        {"jwt_providers": {"p": {"issuer": "i", "jwks": {"file": "set.json"}}}, "routes": []}
    )
    assert config.jwt_providers["p"].jwks.document == JWKS


def test_jwks_file_with_an_explicit_base_dir_and_an_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "set.json").write_text("\ufeff" + json.dumps(JWKS))  # a BOM is fine
    text = _provider("", jwks="{file: set.json}")
    assert load_config_text(text, base_dir=tmp_path).jwt_providers["p"].jwks.document == JWKS
    absolute = _provider("", jwks=f"{{file: '{tmp_path / 'set.json'}'}}")
    assert _load(absolute).jwt_providers["p"].jwks.path == str(tmp_path / "set.json")


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (None, "does not exist"),
        (b"{", "is not valid JSON: Expecting property name"),
        (b"\xff\xfe", "is not UTF-8"),
        (b"[]", "must be a JSON object"),
        (b'{"keys": [{"kty": "RSA"}], "x": Infinity}', "not valid JSON"),
        (b'{"keys": [{"n": "x"}]}', 'keys[0] has no "kty"'),
        (b"[" * 100_000, "not valid JSON"),
        (b" " * (1024 * 1024 + 1), "bigger than 1 MiB"),
    ],
)
def test_bad_jwks_file_is_a_located_error(
    tmp_path: Path, content: bytes | None, complaint: str
) -> None:
    path = tmp_path / "jwks.json"
    if content is not None:
        path.write_bytes(content)
    issue = _issue(_provider("", jwks=f"{{file: '{path}'}}"))
    assert (issue.path, issue.line) == ("jwt_providers.p.jwks.file", 4)
    assert str(path) in issue.message
    assert complaint in issue.message


def test_jwks_file_that_is_a_directory_or_unreadable(tmp_path: Path) -> None:
    issue = _issue(_provider("", jwks=f"{{file: '{tmp_path}'}}"))
    assert "is not a regular file" in issue.message
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(JWKS))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # running as root: permissions don't apply
            pytest.skip("cannot make a file unreadable")
        issue = _issue(_provider("", jwks=f"{{file: '{path}'}}"))
        assert "cannot read JWKS file" in issue.message and "Permission denied" in issue.message
    finally:
        path.chmod(0o600)


def test_remote_jwks_defaults_and_options() -> None:
    remote = _one_provider(jwks="{remote: {uri: 'https://idp.test/jwks'}}").jwks
    assert remote == m.JwksSource("remote", uri="https://idp.test/jwks")
    remote = _one_provider(
        jwks="""{remote: {uri: 'http://127.0.0.1:8080/k', cache_duration: 10m, timeout: 2s,
               max_stale: 0s, retry_interval: 1s, refetch_cooldown: 1m,
               unavailable_status: 502}}"""
    ).jwks
    assert remote == m.JwksSource(
        "remote",
        uri="http://127.0.0.1:8080/k",
        cache_duration=600.0,
        timeout=2.0,
        max_stale=0.0,
        retry_interval=1.0,
        refetch_cooldown=60.0,
        unavailable_status=502,
    )


@pytest.mark.parametrize(
    ("remote", "path", "complaint"),
    [
        ("{}", "remote", "missing required key 'uri'"),
        ("{uri: 'ftp://x/k'}", "remote.uri", "expected an https:// URI"),
        ("{uri: idp.test/jwks}", "remote.uri", "expected an https:// URI"),
        ("{uri: 'https:///jwks'}", "remote.uri", "has no host"),
        ("{uri: 'https://x:99999/'}", "remote.uri", "invalid URI"),
        ("{uri: 'https://[::1/'}", "remote.uri", "invalid URI"),
        ("{uri: 'https://a b/'}", "remote.uri", "spaces or control characters"),
        ("{uri: 'https://u:p@x/'}", "remote.uri", "credentials"),
        ("{uri: 'https://x/#k'}", "remote.uri", "fragment"),
        ("{uri: 'https://x', cache_duration: 0s}", "remote.cache_duration", "greater than zero"),
        ("{uri: 'https://x', timeout: 5}", "remote.timeout", "add a unit"),
        ("{uri: 'https://x', max_stale: 1y}", "remote.max_stale", "invalid duration"),
        ("{uri: 'https://x', retry_interval: 0s}", "remote.retry_interval", "greater than zero"),
        ("{uri: 'https://x', unavailable_status: 499}", "remote.unavailable_status", "500"),
        (
            "{uri: 'https://x', cache_duraton: 5m}",
            "remote.cache_duraton",
            "did you mean 'cache_duration'?",
        ),
    ],
)
def test_bad_remote_jwks_is_located(remote: str, path: str, complaint: str) -> None:
    issue = _issue(_provider("", jwks=f"{{remote: {remote}}}"))
    assert issue.path == f"jwt_providers.p.jwks.{path}"
    assert complaint in issue.message


def test_remote_jwks_cannot_serve_hmac_secrets() -> None:
    issue = _issue(_provider("algorithms: [HS256]", jwks="{remote: {uri: 'https://x'}}"))
    assert issue.path == "jwt_providers.p.jwks.remote"
    assert "shared secret" in issue.message


# ---------------------------------------------------------------- rate limits


def test_rate_forms_convert_to_tokens_per_second() -> None:
    def rate(text: str) -> float:
        config = _load(
            f"rate_limits:\n  r: {{algorithm: token_bucket, rate: {text}, burst: 1}}\nroutes: []\n"
        )
        return config.rate_limits["r"].rate

    assert rate("100/s") == 100.0
    assert rate("30/m") == 0.5
    assert rate("7200/h") == 2.0
    assert rate("'1.5 / s'") == 1.5
    assert rate("2.5") == 2.5
    assert rate("3") == 3.0


@pytest.mark.parametrize(
    ("rate", "complaint"),
    [
        ("10/min", "invalid rate '10/min'"),
        ("10", None),
        ("0/s", "positive"),
        ("0", "positive"),
        ("-1", "positive"),
        (".inf", "positive"),
        ("1" + "0" * 400, "positive"),
        ("true", "got a boolean"),
        ("'ten/s'", "invalid rate"),
        ("[1]", "got a list"),
    ],
)
def test_bad_rates_are_located(rate: str, complaint: str | None) -> None:
    text = f"rate_limits:\n  r: {{algorithm: token_bucket, rate: {rate}, burst: 1}}\nroutes: []\n"
    if complaint is None:
        _load(text)
        return
    issue = _issue(text)
    assert issue.path == "rate_limits.r.rate"
    assert complaint in issue.message


def test_rate_limit_options_parse() -> None:
    config = _load(
        """\
        rate_limits:
          r:
            algorithm: sliding_window
            limit: 5
            window: 1m30s
            key: [route, client_ip, {claim: tenant.id}, {claim_path: [a.b]}, {header: X-Key}]
            max_keys: 10
            missing_key: shared
          global: {algorithm: token_bucket, rate: 1/s, burst: 1, key: []}
        routes: []
        """
    )
    limit = config.rate_limits["r"]
    assert (limit.limit, limit.window, limit.max_keys, limit.missing_key) == (5, 90.0, 10, "shared")
    assert limit.key == (
        m.RateKeyPart("route"),
        m.RateKeyPart("client_ip"),
        m.RateKeyPart("claim", path=("tenant", "id")),
        m.RateKeyPart("claim", path=("a.b",)),
        m.RateKeyPart("header", name="x-key"),
    )
    assert config.rate_limits["global"].key == ()  # one shared state for every request


@pytest.mark.parametrize(
    ("body", "path", "complaint"),
    [
        ("{rate: 1/s, burst: 1}", "r", "missing required key 'algorithm'"),
        ("{algorithm: leaky_bucket}", "r.algorithm", "did you mean 'token_bucket'?"),
        ("{algorithm: token_bucket, burst: 1}", "r", "token_bucket needs rate and burst"),
        ("{algorithm: token_bucket, rate: 1}", "r", "missing required key 'burst'"),
        ("{algorithm: sliding_window, limit: 1}", "r", "sliding_window needs limit and window"),
        (
            "{algorithm: sliding_window, limit: 1, window: 1s, burst: 4}",
            "r.burst",
            "burst applies to token_bucket, not sliding_window",
        ),
        (
            "{algorithm: token_bucket, rate: 1, burst: 1, window: 1s}",
            "r.window",
            "window applies to sliding_window, not token_bucket",
        ),
        ("{algorithm: token_bucket, rate: 1, burst: 0}", "r.burst", "between 1 and"),
        ("{algorithm: sliding_window, limit: 0, window: 1s}", "r.limit", "between 1 and"),
        ("{algorithm: sliding_window, limit: 1, window: 0s}", "r.window", "greater than zero"),
        (
            "{algorithm: sliding_window, limit: 1, window: 1s, max_keys: 20000000}",
            "r.max_keys",
            "between 1 and 10000000",
        ),
        (
            "{algorithm: sliding_window, limit: 1, window: 1s, missing_key: share}",
            "r.missing_key",
            "did you mean 'shared'?",
        ),
        (
            "{algorithm: sliding_window, limit: 1, window: 1s, key: [client_id]}",
            "r.key[0]",
            "did you mean 'client_ip'?",
        ),
        (
            "{algorithm: sliding_window, limit: 1, window: 1s, key: [{header: ':path'}]}",
            "r.key[0].header",
            "pseudo-header",
        ),
        (
            "{algorithm: sliding_window, limit: 1, window: 1s, key: [{claim: a, header: b}]}",
            "r.key[0]",
            "exactly one of claim, claim_path or header",
        ),
        (
            "{algorithm: sliding_window, limit: 1, window: 1s, key: [5]}",
            "r.key[0]",
            "expected a key part",
        ),
        (
            "{algorithm: sliding_window, limit: 1, window: 1s, key: client_ip}",
            "r.key",
            "expected a list",
        ),
    ],
)
def test_bad_rate_limits_are_located(body: str, path: str, complaint: str) -> None:
    issue = _issue(f"rate_limits:\n  r: {body}\nroutes: []\n")
    assert issue.path == f"rate_limits.{path}"
    assert issue.line == 2
    assert complaint in issue.message


def test_missing_rate_limit_keys_are_each_reported() -> None:
    issues = _issues("rate_limits:\n  r: {algorithm: sliding_window}\nroutes: []\n")
    assert [i.message.split(" (")[0] for i in issues] == [
        "missing required key 'limit'",
        "missing required key 'window'",
    ]


# ------------------------------------------------------------------- policy


def test_jwt_by_name_or_with_allow_missing() -> None:
    assert _policy("jwt: corp").jwt == m.JwtRequirement("corp", False, "routes[0].policy.jwt")
    policy = _policy("jwt: {provider: corp, allow_missing: true}")
    assert policy.jwt == m.JwtRequirement("corp", True, "routes[0].policy.jwt")


def test_unknown_provider_suggests_the_closest_name() -> None:
    issue = _policy_issue("jwt: crop")
    assert (issue.path, issue.line, issue.column) == ("routes[0].policy.jwt", 10, 10)
    assert "unknown JWT provider 'crop' (did you mean 'corp'?); defined: corp" in issue.message
    issue = _policy_issue("jwt: {provider: corpp}")
    assert issue.path == "routes[0].policy.jwt.provider"
    issue = _policy_issue("jwt: corp", head="")
    assert "no jwt_providers are defined" in issue.message


def test_reference_to_an_invalid_provider_is_not_reported_twice() -> None:
    issue = _issue(_routes_with("policy: {jwt: p}", _provider("clock_skew: 2h")))
    assert issue.path == "jwt_providers.p.clock_skew"


@pytest.mark.parametrize(
    ("policy", "path", "complaint"),
    [
        ("jwt: 5", "jwt", "expected a JWT provider name or {provider"),
        ("jwt: {allow_missing: true}", "jwt", "missing required key 'provider'"),
        ("jwt: {provider: corp, allow_missing: 1}", "jwt.allow_missing", "true or false"),
        ("jwt: corp\nrequire: {}", "require", "an empty requirement always holds"),
        ("jwt: corp\nrequir: {}", "requir", "did you mean 'require'?"),
        ("rate_limit: per_ip", "rate_limit", "did you mean 'per-ip'?"),
        ("rate_limit: [per-ip, per-ip]", "rate_limit[1]", "listed twice"),
        ("rate_limit: {name: x}", "rate_limit", "expected a list"),
        ("rate_limit: [3]", "rate_limit[0]", "expected a string"),
        ("[]", "", "expected a mapping"),
    ],
)
def test_bad_route_policies_are_located(policy: str, path: str, complaint: str) -> None:
    issue = _policy_issue(policy)
    assert issue.path == "routes[0].policy" + (f".{path}" if path else "")
    assert complaint in issue.message


def test_require_needs_jwt_on_the_same_policy() -> None:
    issue = _policy_issue("require: {claims: {role: admin}}")
    assert issue.path == "routes[0].policy.require"
    assert "require needs jwt: name the provider whose claims it checks" in issue.message


def test_rate_limit_names_one_or_several() -> None:
    assert _policy("rate_limit: per-ip").rate_limits == ("per-ip",)
    both = _policy("jwt: corp\nrate_limit: [per-ip, per-user]")
    assert both.rate_limits == ("per-ip", "per-user")
    assert _policy("rate_limit: []").rate_limits == ()


def test_claim_keyed_rate_limit_needs_jwt_on_the_route() -> None:
    issue = _policy_issue("rate_limit: per-user")
    assert issue.path == "routes[0].policy.rate_limit"
    assert "keys on claim 'sub'" in issue.message and "verifies no JWT" in issue.message
    assert _policy("jwt: {provider: corp, allow_missing: true}\nrate_limit: per-user")


def test_requirement_forms() -> None:
    policy = _policy(
        """\
        jwt: corp
        require:
          claims:
            role: admin
            scope: [read, write, read]
            tenant.id: {any: [a, b]}
            groups: {all: g}
          any:
          - claims:
            - {claim: org, equals: acme}
            - {path: [https://x.test/roles], any: [r1]}
          - all:
            - claims: {email_verified: 'true'}
        """
    )
    require = policy.require
    where = "routes[0].policy.require"
    assert require.location == where
    assert require.claims == (
        m.ClaimRequirement(("role",), ("admin",), "all", f"{where}.claims.role"),
        m.ClaimRequirement(("scope",), ("read", "write"), "all", f"{where}.claims.scope"),
        m.ClaimRequirement(("tenant", "id"), ("a", "b"), "any", f"{where}.claims.tenant.id"),
        m.ClaimRequirement(("groups",), ("g",), "all", f"{where}.claims.groups"),
    )
    first, second = require.any_of
    assert first.claims == (
        m.ClaimRequirement(("org",), ("acme",), "all", f"{where}.any[0].claims[0]"),
        m.ClaimRequirement(("https://x.test/roles",), ("r1",), "any", f"{where}.any[0].claims[1]"),
    )
    (inner,) = second.all_of
    assert inner.claims[0].values == ("true",)
    assert require.all_of == ()


@pytest.mark.parametrize(
    ("require", "path", "complaint"),
    [
        ("{claims: {}}", "claims", "at least one claim"),
        ("{claims: []}", "claims", "at least one claim"),
        ("{claims: 5}", "claims", "expected a mapping of claim name to required values"),
        ("{claims: {role: 5}}", "claims.role", "quote it"),
        ("{claims: {role: []}}", "claims.role", "non-empty list"),
        ("{claims: {role: ''}}", "claims.role", "non-empty"),
        ("{claims: {role: {any: []}}}", "claims.role.any", "non-empty list"),
        ("{claims: {role: {any: [a], all: [b]}}}", "claims.role", "exactly one of any or all"),
        ("{claims: {a..b: x}}", "claims.a..b", "empty part between dots"),
        ("{claims: [{claim: a}]}", "claims[0]", "exactly one of any, all or equals"),
        ("{claims: [{equals: a}]}", "claims[0]", "exactly one of claim or path"),
        ("{claims: [{claim: a, equals: [a]}]}", "claims[0].equals", "expected a string"),
        ("{any: []}", "any", "non-empty list"),
        ("{any: [{}]}", "any[0]", "an empty requirement always holds"),
        ("{all: [{claims: {a: b}, nope: 1}]}", "all[0].nope", "unknown key 'nope'"),
    ],
)
def test_bad_requirements_are_located(require: str, path: str, complaint: str) -> None:
    issue = _policy_issue(f"jwt: corp\nrequire: {require}")
    assert issue.path == f"routes[0].policy.require.{path}"
    assert complaint in issue.message


def test_requirement_nesting_is_bounded() -> None:
    require = "{claims: {a: b}}"
    for _ in range(7):
        require = f"{{any: [{require}]}}"
    assert _policy(f"jwt: corp\nrequire: {require}").require.any_of
    deeper = f"{{all: [{require}]}}"
    issue = _policy_issue(f"jwt: corp\nrequire: {deeper}")
    assert "nest at most 8 levels deep" in issue.message
    assert issue.path == "routes[0].policy.require" + ".all[0]" + ".any[0]" * 6 + ".any"


# ------------------------------------------------------------ global policy


def test_top_level_policy_takes_rate_limits() -> None:
    config = _load(LIMITS + "policy: {rate_limit: per-ip}\nroutes: []\n")
    assert config.global_policy == m.RoutePolicy(rate_limits=("per-ip",), location="policy")


@pytest.mark.parametrize("key", ["jwt", "require"])
def test_jwt_and_require_at_top_level_say_they_belong_on_routes(key: str) -> None:
    issue = _issue(PROVIDERS + f"policy:\n  {key}: corp\nroutes: []\n")
    assert (issue.path, issue.line) == (f"policy.{key}", 4)
    assert f"{key} belongs on routes" in issue.message


def test_top_level_policy_cannot_key_on_claims() -> None:
    issue = _issue(LIMITS + "policy: {rate_limit: [per-ip, per-user]}\nroutes: []\n")
    assert issue.path == "policy.rate_limit[1]"
    assert "before any JWT is verified" in issue.message


# ------------------------------------------------------- gateway-wide keys


def test_trusted_proxies_accept_addresses_and_networks() -> None:
    config = _load("trusted_proxies: [192.0.2.7, '2001:db8::/32', '::1', 10.0.0.0/8, 10.0.0.0/8]\n")
    assert config.trusted_proxies == tuple(
        ipaddress.ip_network(n) for n in ("192.0.2.7/32", "2001:db8::/32", "::1/128", "10.0.0.0/8")
    )


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("10.0.0.1/8", "host bits set after the /8 prefix; did you mean '10.0.0.0/8'?"),
        ("'2001:db8::1/32'", "did you mean '2001:db8::/32'?"),
        ("10.0.0.0/33", "is not an IP address or network"),
        ("example.com", "is not an IP address or network"),
        ("5", "quote it"),
    ],
)
def test_bad_trusted_proxies_are_located(entry: str, complaint: str) -> None:
    issue = _issue(f"trusted_proxies:\n- 192.0.2.1\n- {entry}\n")
    assert (issue.path, issue.line, issue.column) == ("trusted_proxies[1]", 3, 3)
    assert complaint in issue.message


def test_path_normalization_all_or_some() -> None:
    assert _load("path_normalization: false\n").path_normalization == m.PathNormalization(
        False, False, False
    )
    assert _load("path_normalization: true\n").path_normalization == m.PathNormalization()
    some = _load("path_normalization: {merge_slashes: false}\n").path_normalization
    assert some == m.PathNormalization(True, False, True)
    issue = _issue("path_normalization: {merge_slashes: 0}\n")
    assert issue.path == "path_normalization.merge_slashes"
    issue = _issue("path_normalization: 'off'\n")
    assert "expected true, false or a mapping" in issue.message


def test_untrusted_request_headers() -> None:
    config = _load("untrusted_request_headers: [X-User, x-tenant, x-user]\n")
    assert config.untrusted_request_headers == ("x-user", "x-tenant")
    for bad, complaint in (("host", "cannot be removed"), ("'a b'", "invalid header name")):
        issue = _issue(f"untrusted_request_headers: [x, {bad}]\n")
        assert issue.path == "untrusted_request_headers[1]" and complaint in issue.message


def test_tracing_bool_or_enabled() -> None:
    assert _load("tracing: false\n").tracing is False
    assert _load("tracing: {enabled: false}\n").tracing is False
    assert _load("tracing: {enabled: true}\n").tracing is True
    issue = _issue("tracing: {enable: false}\n")
    assert issue.path == "tracing.enable" and "did you mean 'enabled'?" in issue.message
    issue = _issue("tracing: 1\n")
    assert issue.path == "tracing" and "expected true, false or {enabled" in issue.message


def test_tracing_sampled_flag_for_started_traces() -> None:
    assert _load("routes: []\n").trace_sampled is False
    config = _load("tracing: {sampled: true}\n")
    assert config.tracing is True and config.trace_sampled is True
    assert _load("tracing: {enabled: false, sampled: true}\n").tracing is False
    assert _issue("tracing: {sampled: 2}\n").path == "tracing.sampled"


def test_every_policy_error_in_a_file_is_reported_in_order() -> None:
    issues = _issues(
        f"""\
        jwt_providers:
          corp:
            issuer: https://i
            algorithms: [none]
            jwks: {INLINE}
        trusted_proxies: [10.0.0.1/8]
        rate_limits:
          r: {{algorithm: token_bucket, rate: 5/s}}
        policy: {{jwt: corp}}
        routes:
        - match: {{prefix: /}}
          direct_response: {{status: 200}}
          policy: {{jwt: corp, rate_limit: q}}
        """
    )
    assert [(i.line, i.path) for i in issues] == [
        (4, "jwt_providers.corp.algorithms[0]"),
        (6, "trusted_proxies[0]"),
        (8, "rate_limits.r"),
        (9, "policy.jwt"),
        (13, "routes[0].policy.rate_limit"),
    ]
    assert all(str(i).startswith(f"gw.yaml:{i.line}:") for i in issues)


def test_unusable_keys_are_refused_at_load_by_the_runtime_parser() -> None:
    """``gwcore check`` catches what the gateway would refuse at runtime: here an RSA key
    below 2048 bits, which the key set parser skips, leaving no usable key."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    weak = RSAAlgorithm.to_jwk(
        rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(), as_dict=True
    )
    issue = _issue(_provider("", jwks="{inline: " + flow({"keys": [weak]}) + "}") + "routes: []\n")
    assert issue.path == "jwt_providers.p.jwks.inline"
    assert "2048" in issue.message
