"""Garbage anywhere in the policy sections is a ConfigError, never another exception.

Each test starts from a valid config that uses every new key, puts a random value
(scalars of every YAML type, huge and non-finite numbers, nested lists and mappings,
near-miss strings) at one place, and loads it as a mapping and as YAML text.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from real_keys import EC_JWK, RSA_JWK

from gwcore.config import ConfigError, load_config, load_config_text
from gwcore.config import model as m

BASE_DIR = Path(tempfile.mkdtemp(prefix="gwcore-fuzz-"))
(BASE_DIR / "jwks.json").write_text(json.dumps({"keys": [RSA_JWK]}))

VALID: dict[str, Any] = {
    "jwt_providers": {
        "p": {
            "issuer": "https://i",
            "audiences": ["api"],
            "algorithms": ["RS256"],
            "jwks": {"file": "jwks.json"},
            "clock_skew": "30s",
            "from": [{"header": "authorization", "prefix": "Bearer"}, {"query": "t"}],
            "forward": False,
            "claims_to_headers": [{"claim": "tenant.id", "header": "x-tenant"}],
            "required_claims": ["exp"],
            "max_token_bytes": "8KiB",
            "cache_size": 10,
            "realm": "api",
        },
        "q": {
            "issuer": "https://q",
            "jwks": {
                "remote": {
                    "uri": "https://q/jwks",
                    "cache_duration": "5m",
                    "timeout": "1s",
                    "max_stale": "1h",
                    "retry_interval": "10s",
                    "refetch_cooldown": "30s",
                    "unavailable_status": 503,
                }
            },
        },
        "r": {"issuer": "https://r", "jwks": {"inline": {"keys": [EC_JWK]}}},
    },
    "trusted_proxies": ["10.0.0.0/8", "::1"],
    "rate_limits": {
        "tb": {
            "algorithm": "token_bucket",
            "rate": "10/s",
            "burst": 5,
            "key": ["client_ip", {"claim": "sub"}],
            "max_keys": 100,
            "missing_key": "shared",
        },
        "sw": {"algorithm": "sliding_window", "limit": 5, "window": "1m", "key": ["route"]},
    },
    "policy": {"rate_limit": ["sw"]},
    "path_normalization": {"merge_slashes": False},
    "untrusted_request_headers": ["x-user"],
    "tracing": {"enabled": True},
    "virtual_hosts": [
        {
            "name": "api",
            "domains": ["*"],
            "request_headers": {"set": {"x-vh": "%ROUTE_NAME%"}},
            "response_headers_to_add": [{"header": {"key": "x-a", "value": "%REQUEST_ID%"}}],
            "routes": [
                {
                    "match": {"prefix": "/"},
                    "direct_response": {"status": 200},
                    "policy": {
                        "jwt": {"provider": "p", "allow_missing": False},
                        "require": {
                            "claims": {"scope": {"any": ["a", "b"]}},
                            "any": [{"claims": [{"claim": "role", "equals": "admin"}]}],
                        },
                        "rate_limit": ["tb", "sw"],
                    },
                    "request_headers": {
                        "add": [{"name": "x-ip", "value": "%CLIENT_IP%"}],
                        "set": {"x-t": "%CLAIM(tenant.id)%"},
                        "remove": ["x-debug"],
                        "rename": {"x-old": "x-new"},
                    },
                    "request_headers_to_add": [
                        {"header": {"key": "x-h", "value": "%REQ(x-in)%"}, "append": False}
                    ],
                    "response_headers": {"add": {"x-r": "1"}},
                }
            ],
        }
    ],
}

ROUTE = ("virtual_hosts", 0, "routes", 0)
VHOST = ("virtual_hosts", 0)
PROVIDER = ("jwt_providers", "p")
SLOTS: list[tuple[Any, ...]] = [
    ("jwt_providers",),
    PROVIDER,
    *[(*PROVIDER, key) for key in VALID["jwt_providers"]["p"]],
    (*PROVIDER, "jwks", "file"),
    (*PROVIDER, "from", 0),
    (*PROVIDER, "from", 0, "prefix"),
    (*PROVIDER, "claims_to_headers", 0),
    (*PROVIDER, "claims_to_headers", 0, "claim"),
    ("jwt_providers", "q", "jwks"),
    ("jwt_providers", "q", "jwks", "remote"),
    *[
        ("jwt_providers", "q", "jwks", "remote", key)
        for key in VALID["jwt_providers"]["q"]["jwks"]["remote"]
    ],
    ("jwt_providers", "r", "jwks", "inline"),
    ("jwt_providers", "r", "jwks", "inline", "keys"),
    ("jwt_providers", "r", "jwks", "inline", "keys", 0),
    ("trusted_proxies",),
    ("trusted_proxies", 0),
    ("rate_limits",),
    ("rate_limits", "tb"),
    *[("rate_limits", "tb", key) for key in VALID["rate_limits"]["tb"]],
    *[("rate_limits", "sw", key) for key in VALID["rate_limits"]["sw"]],
    ("rate_limits", "tb", "key", 1),
    ("policy",),
    ("policy", "rate_limit"),
    ("path_normalization",),
    ("path_normalization", "merge_slashes"),
    ("untrusted_request_headers",),
    ("untrusted_request_headers", 0),
    ("tracing",),
    ("tracing", "enabled"),
    (*VHOST, "request_headers"),
    (*VHOST, "request_headers", "set"),
    (*VHOST, "response_headers_to_add"),
    (*ROUTE, "policy"),
    (*ROUTE, "policy", "jwt"),
    (*ROUTE, "policy", "jwt", "provider"),
    (*ROUTE, "policy", "jwt", "allow_missing"),
    (*ROUTE, "policy", "require"),
    (*ROUTE, "policy", "require", "claims"),
    (*ROUTE, "policy", "require", "claims", "scope"),
    (*ROUTE, "policy", "require", "any"),
    (*ROUTE, "policy", "require", "any", 0),
    (*ROUTE, "policy", "require", "any", 0, "claims", 0),
    (*ROUTE, "policy", "rate_limit"),
    (*ROUTE, "policy", "rate_limit", 0),
    (*ROUTE, "request_headers"),
    (*ROUTE, "request_headers", "add"),
    (*ROUTE, "request_headers", "add", 0),
    (*ROUTE, "request_headers", "add", 0, "value"),
    (*ROUTE, "request_headers", "set"),
    (*ROUTE, "request_headers", "set", "x-t"),
    (*ROUTE, "request_headers", "remove"),
    (*ROUTE, "request_headers", "rename"),
    (*ROUTE, "request_headers", "rename", "x-old"),
    (*ROUTE, "request_headers_to_add", 0, "header", "value"),
    (*ROUTE, "response_headers"),
]

# Strings that are almost right somewhere: names, units, templates, addresses.
NEAR_MISSES = st.sampled_from(
    [
        "",
        " ",
        "none",
        "None",
        "HS256",
        "RS256",
        "token_bucket",
        "sliding_window",
        "client_ip",
        "route",
        "p",
        "q",
        "tb",
        "sw",
        "tb ",
        "10/s",
        "0/s",
        "1e9/h",
        "5m",
        "0s",
        "99999999999999999999999h",
        "-1s",
        "64KiB",
        "1GiB",
        "https://",
        "http://[::1",
        "https://h:0/",
        "file:///etc/passwd",
        "10.0.0.1/8",
        "::/0",
        "300.1.1.1",
        "%",
        "%%",
        "%CLAIM(",
        "%CLAIM(a..b)%",
        "%REQ()%",
        "%FOO%",
        "a\r\nb",
        "\x00",
        "host",
        ":path",
        "x y",
        "jwks.json",
        "/",
        ".",
        "..",
        "nonexistent.json",
        '{"keys": []}',
        "[[[[",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**320),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    NEAR_MISSES,
)
GARBAGE = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(NEAR_MISSES, st.text(max_size=8)), inner, max_size=4),
        st.dictionaries(st.integers(), inner, max_size=2),
    ),
    max_leaves=12,
)


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    config = copy.deepcopy(VALID)
    target: Any = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return config


def _must_load_or_config_error(config: dict[str, Any], *, as_yaml: bool = True) -> None:
    """Load ``config`` as a mapping (and, with ``as_yaml``, as YAML text, which is
    slower but checks located errors)."""
    try:
        loaded = load_config(config, base_dir=BASE_DIR)
    except ConfigError as exc:
        assert exc.issues, "a ConfigError always lists its issues"
        for issue in exc.issues:
            assert issue.message and issue.source == "<dict>"
    else:
        assert isinstance(loaded, m.GatewayConfig)
    if not as_yaml:
        return
    try:
        text = yaml.safe_dump(config)
    except yaml.YAMLError:
        return
    try:
        load_config_text(text, "fuzz.yaml", base_dir=BASE_DIR)
    except ConfigError as exc:
        for issue in exc.issues:
            assert issue.source == "fuzz.yaml"
            # Validation errors point into the document (only YAML problems have no path).
            assert issue.path or issue.message.startswith(("invalid YAML", "invalid config"))


def test_the_fuzz_base_config_is_valid() -> None:
    config = load_config(VALID, base_dir=BASE_DIR)
    assert set(config.jwt_providers) == {"p", "q", "r"}
    route = config.virtual_hosts[0].routes[0]
    assert route.policy.rate_limits == ("tb", "sw") and not route.policy.require.empty
    assert len(route.request_headers.add) == 3 and route.request_headers.rename


@pytest.mark.parametrize("path", SLOTS, ids=lambda p: ".".join(map(str, p)))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=GARBAGE, as_yaml=st.integers(0, 5).map(lambda n: n == 0))
def test_garbage_in_any_policy_slot_is_a_config_error(
    path: tuple[Any, ...], value: Any, as_yaml: bool
) -> None:
    _must_load_or_config_error(_with(path, value), as_yaml=as_yaml)


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.tuples(st.sampled_from(SLOTS), GARBAGE), min_size=2, max_size=5),
)
def test_garbage_in_several_slots_at_once_is_a_config_error(
    data: list[tuple[tuple[Any, ...], Any]],
) -> None:
    config = copy.deepcopy(VALID)
    for path, value in data:
        target: Any = config
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this slot
    _must_load_or_config_error(config)


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_jwks_file_content_is_a_config_error_or_loads(content: bytes) -> None:
    path = BASE_DIR / "fuzzed.json"
    path.write_bytes(content)
    config = _with((*PROVIDER, "jwks"), {"file": "fuzzed.json"})
    _must_load_or_config_error(config)


YAML_BITS = st.sampled_from(
    [
        "{",
        "}",
        "[",
        "]",
        ":",
        ", ",
        "- ",
        "\n",
        "  ",
        "'",
        '"',
        "%",
        "a",
        "1",
        "/",
        "s",
        "null",
        "true",
        "~",
        "&a",
        "*a",
        "!!str",
        "#",
        "\t",
        "key: ",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    section=st.sampled_from(
        [
            "jwt_providers",
            "rate_limits",
            "trusted_proxies",
            "policy",
            "path_normalization",
            "untrusted_request_headers",
            "tracing",
        ]
    ),
    body=st.lists(YAML_BITS, max_size=12).map("".join),
)
def test_random_yaml_text_in_a_section_is_a_config_error(section: str, body: str) -> None:
    text = f"{section}: {body}\nroutes: []\n"
    with contextlib.suppress(ConfigError):
        load_config_text(text, "fuzz.yaml", base_dir=BASE_DIR)
