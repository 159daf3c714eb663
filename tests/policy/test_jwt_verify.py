"""Token verification with generated keys: attacks, claims, time, malformed input, cache.

Keys are made by cryptography in the test run; tokens are signed by PyJWT, or built
by hand when they must be broken in a precise way.
"""

from __future__ import annotations

import base64
import itertools
import json
import string
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_jwt_support import (
    ALL_ALGORITHMS,
    AUDIENCE,
    ISSUER,
    NOW,
    authenticator,
    b64url,
    claims,
    craft,
    ec_key,
    ed25519_key,
    oct_jwk,
    provider,
    public_jwk,
    rsa_key,
    sign,
)

import gwcore.policy.jwt as jwt_module
from gwcore.config import model as m
from gwcore.policy.jwks import MAX_KEYS, JwksError, JwksKeySet
from gwcore.policy.jwt import (
    DESCRIPTIONS,
    INTERNAL_ERROR_DESCRIPTION,
    REASONS,
    JwtAuthenticator,
    JwtError,
    KeysNeeded,
    VerifiedToken,
    verify_jws,
)

SECRET = bytes(range(32))
SAFE_DESCRIPTION = set(string.printable) - set('"\\\t\n\r\x0b\x0c')


def _rsa_auth(**overrides: Any) -> JwtAuthenticator:
    return authenticator([public_jwk(rsa_key(), "rsa-1")], **overrides)


def _reason(result: object) -> str:
    assert isinstance(result, JwtError), result
    assert result.reason in REASONS
    assert set(result.description) <= SAFE_DESCRIPTION, result.description
    assert result.description != INTERNAL_ERROR_DESCRIPTION
    return result.reason


def _ok(result: object) -> VerifiedToken:
    assert isinstance(result, VerifiedToken), result
    return result


class CountingVerifier:
    """Counts signature checks (wraps the module's ``_verify_signature``)."""

    def __init__(self, inner: Callable[..., bool]) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, *args: Any) -> bool:
        self.calls += 1
        return self.inner(*args)


@pytest.fixture
def verifier(monkeypatch: pytest.MonkeyPatch) -> CountingVerifier:
    counting = CountingVerifier(jwt_module._verify_signature)
    monkeypatch.setattr(jwt_module, "_verify_signature", counting)
    return counting


# ------------------------------------------------------------------- happy paths


@pytest.mark.parametrize(
    ("alg", "key", "jwk"),
    [
        ("RS256", rsa_key(), public_jwk(rsa_key(), "k")),
        ("RS512", rsa_key(), public_jwk(rsa_key(), "k")),
        ("PS256", rsa_key(), public_jwk(rsa_key(), "k")),
        ("ES256", ec_key("P-256"), public_jwk(ec_key("P-256"), "k")),
        ("ES384", ec_key("P-384"), public_jwk(ec_key("P-384"), "k")),
        ("ES512", ec_key("P-521"), public_jwk(ec_key("P-521"), "k")),
        ("ES256K", ec_key("secp256k1"), public_jwk(ec_key("secp256k1"), "k")),
        ("EdDSA", ed25519_key(), public_jwk(ed25519_key(), "k")),
        ("HS256", SECRET, oct_jwk(SECRET, "k")),
    ],
)
def test_each_algorithm_verifies(alg: str, key: Any, jwk: dict[str, Any]) -> None:
    auth = authenticator([jwk], algorithms=(alg,))
    result = _ok(auth.authenticate(sign(claims(), key, alg, kid="k"), NOW))
    assert result.provider == "idp"
    assert result.expires_at == NOW + 300
    assert result.claims["sub"] == "user-1"
    # without a kid, every key of the algorithm is tried
    _ok(auth.authenticate(sign(claims(), key, alg), NOW))


def test_verified_claims_are_read_only() -> None:
    token = sign(claims(), rsa_key(), "RS256", kid="rsa-1")
    result = _ok(_rsa_auth().authenticate(token, NOW))
    assert result.token == token
    with pytest.raises(TypeError):
        result.claims["sub"] = "admin"  # type: ignore[index]


def test_no_kid_tries_each_key_of_the_algorithm() -> None:
    keys = [public_jwk(rsa_key(1), "a"), public_jwk(rsa_key(0), "b"), public_jwk(ec_key(), "c")]
    auth = authenticator(keys)
    _ok(auth.authenticate(sign(claims(), rsa_key(0), "RS256"), NOW))
    _ok(auth.authenticate(sign(claims(), ec_key(), "ES256"), NOW))
    stranger = sign(claims(), rsa_key(2), "RS256")
    assert _reason(auth.authenticate(stranger, NOW)) == "bad_signature"


def test_a_kid_selects_exactly_one_key() -> None:
    auth = authenticator([public_jwk(rsa_key(1), "a"), public_jwk(rsa_key(0), "b")])
    # signed by b's key but naming a: a's key does not verify it
    assert _reason(auth.authenticate(sign(claims(), rsa_key(0), "RS256", kid="a"), NOW)) == (
        "bad_signature"
    )


# --------------------------------------------------------------------- alg: none


def _case_variants(word: str) -> list[str]:
    return ["".join(chars) for chars in itertools.product(*((c.lower(), c.upper()) for c in word))]


@pytest.mark.parametrize("alg", _case_variants("none"))
def test_alg_none_in_every_case_is_refused(alg: str) -> None:
    auth = _rsa_auth(algorithms=("RS256", "none", "None", "NONE"))
    for signature in (b"", b"x"):
        token = craft({"alg": alg, "kid": "rsa-1"}, claims())
        token = token + b64url(signature)
        assert _reason(auth.authenticate(token, NOW)) == "bad_algorithm"
    keys = JwksKeySet.parse({"keys": [oct_jwk(SECRET, "k")]}, ["HS256"])
    with pytest.raises(JwtError) as caught:
        verify_jws(craft({"alg": alg}, claims()), keys, ["HS256", alg])
    assert caught.value.reason == "bad_algorithm"


def test_null_signature_is_refused() -> None:
    """CVE-2020-28042: a real header and payload with the signature cut off."""
    token = sign(claims(), rsa_key(), "RS256", kid="rsa-1")
    head, body, _ = token.split(".")
    assert _reason(_rsa_auth().authenticate(f"{head}.{body}.", NOW)) == "bad_signature"


# ----------------------------------------------------------- HS/RS key confusion


def _public_secrets() -> list[tuple[str, bytes]]:
    public = rsa_key().public_key()
    jwk_json = json.dumps(public_jwk(rsa_key(), "rsa-1")).encode()
    return [
        ("spki-pem", public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)),
        ("pkcs1-pem", public.public_bytes(Encoding.PEM, PublicFormat.PKCS1)),
        ("spki-der", public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)),
        ("openssh", public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)),
        ("jwk-json", jwk_json),
        ("modulus", public.public_numbers().n.to_bytes(256, "big")),
    ]


@pytest.mark.parametrize(("label", "secret"), _public_secrets(), ids=lambda v: str(v)[:12])
def test_hs256_signed_with_the_public_key_is_refused(label: str, secret: bytes) -> None:
    """CVE-2016-5431: the attacker HMACs the token with the (public) RSA key."""
    for algorithms in (("RS256",), ("RS256", "HS256"), ALL_ALGORITHMS):
        auth = _rsa_auth(algorithms=algorithms)
        with_kid = craft({"alg": "HS256", "kid": "rsa-1"}, claims(), secret, "HS256")
        without_kid = craft({"alg": "HS256"}, claims(), secret, "HS256")
        if "HS256" not in algorithms:
            assert _reason(auth.authenticate(with_kid, NOW)) == "bad_algorithm"
            assert _reason(auth.authenticate(without_kid, NOW)) == "bad_algorithm"
        else:
            refused = auth.authenticate(with_kid, NOW)
            assert _reason(refused) == "bad_algorithm"
            assert isinstance(refused, JwtError)
            assert refused.description == "the key does not support the token algorithm"
            assert _reason(auth.authenticate(without_kid, NOW)) == "unknown_kid"


def test_hs256_signed_with_the_ec_public_key_is_refused() -> None:
    public = ec_key().public_key()
    auth = authenticator([public_jwk(ec_key(), "ec-1")], algorithms=ALL_ALGORITHMS)
    for fmt in (PublicFormat.SubjectPublicKeyInfo, PublicFormat.UncompressedPoint):
        encoding = Encoding.PEM if fmt is PublicFormat.SubjectPublicKeyInfo else Encoding.X962
        secret = public.public_bytes(encoding, fmt)
        token = craft({"alg": "HS256", "kid": "ec-1"}, claims(), secret, "HS256")
        assert _reason(auth.authenticate(token, NOW)) == "bad_algorithm"


def test_rsa_token_against_an_ec_key_and_the_reverse() -> None:
    auth = authenticator([public_jwk(ec_key(), "ec-1"), public_jwk(rsa_key(), "rsa-1")])
    assert _reason(auth.authenticate(sign(claims(), rsa_key(), "RS256", kid="ec-1"), NOW)) == (
        "bad_algorithm"
    )
    assert _reason(auth.authenticate(sign(claims(), ec_key(), "ES256", kid="rsa-1"), NOW)) == (
        "bad_algorithm"
    )


def test_es256_with_a_key_of_another_curve() -> None:
    # a P-384 key under the kid: it only does ES384
    auth = authenticator([public_jwk(ec_key("P-384"), "k")], algorithms=("ES256", "ES384"))
    token = sign(claims(), ec_key("P-256"), "ES256", kid="k")
    assert _reason(auth.authenticate(token, NOW)) == "bad_algorithm"
    # a JWK claiming ES256 on a P-384 curve is not a key at all
    with pytest.raises(JwksError, match="does not fit"):
        JwksKeySet.parse({"keys": [public_jwk(ec_key("P-384"), "k", alg="ES256")]}, ["ES256"])
    # a P-384 token when only ES256 is allowed
    only_256 = authenticator([public_jwk(ec_key("P-256"), "k")], algorithms=("ES256",))
    p384 = sign(claims(), ec_key("P-384"), "ES384", kid="k")
    assert _reason(only_256.authenticate(p384, NOW)) == "bad_algorithm"


def test_eddsa_keys() -> None:
    auth = authenticator([public_jwk(ed25519_key(), "ed")], algorithms=("EdDSA",))
    _ok(auth.authenticate(sign(claims(), ed25519_key(), "EdDSA", kid="ed"), NOW))
    forged = sign(claims(), ed25519_key(1), "EdDSA", kid="ed")
    assert _reason(auth.authenticate(forged, NOW)) == "bad_signature"
    # an X25519 (key agreement) OKP key is not a signing key
    x25519 = {"kty": "OKP", "crv": "X25519", "x": b64url(bytes(32)), "kid": "x"}
    with pytest.raises(JwksError, match="unsupported OKP curve"):
        JwksKeySet.parse({"keys": [x25519]}, ["EdDSA"])


# --------------------------------------------------- embedded keys, kid, jku


def test_embedded_jwk_header_is_ignored() -> None:
    """CVE-2018-0114: the token brings its own key in the header."""
    attacker = rsa_key(3)
    header = {"jwk": public_jwk(attacker, "rsa-1")}
    for kid in ("rsa-1", None):
        token = sign(claims(), attacker, "RS256", kid=kid, headers=header)
        assert _reason(_rsa_auth().authenticate(token, NOW)) == "bad_signature"


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../etc/passwd",
        "/dev/null",
        "../../dev/null",
        "' OR '1'='1",
        "1; DROP TABLE keys --",
        "$(id)",
        "`id`",
        "http://evil.example/key.pem",
        "\x00",
        "rsa-1\x00",
        'rsa-1" error="x',
        "k\\",
        "\u00e9t\u00e9",
        "RSA-1",
        " rsa-1",
        "",
        "k" * 6000,
    ],
    ids=lambda kid: repr(kid)[:24],
)
def test_kid_injection_is_just_an_unknown_kid(kid: str) -> None:
    auth = _rsa_auth(max_token_bytes=16384)
    token = sign(claims(), rsa_key(), "RS256", kid=kid)
    result = auth.authenticate(token, NOW)
    assert _reason(result) == "unknown_kid"
    assert isinstance(result, JwtError)
    assert result.description == DESCRIPTIONS["unknown_kid"]


def test_jku_and_x5u_headers_never_select_a_key_or_a_url() -> None:
    headers = {"jku": "https://evil.example/jwks.json", "x5u": "https://evil.example/c.pem"}
    attacker = sign(claims(), rsa_key(3), "RS256", kid="evil", headers=headers)
    auth = JwtAuthenticator(provider(remote=True))
    assert auth.authenticate(attacker, NOW) == KeysNeeded("idp")
    assert auth.take_fetch(NOW) == "https://issuer.example/.well-known/jwks.json"


# ------------------------------------------------------------- time and skew


@pytest.mark.parametrize(
    ("overrides", "at", "expected"),
    [
        ({"exp": NOW + 1}, NOW, None),
        ({"exp": NOW}, NOW, None),  # within the 60 s skew
        ({"exp": NOW - 59.5}, NOW, None),
        ({"exp": NOW - 60}, NOW, "expired"),  # exp + skew reached
        ({"exp": NOW - 3600}, NOW, "expired"),
        ({"nbf": NOW + 60}, NOW, None),
        ({"nbf": NOW + 60.5}, NOW, "not_yet_valid"),
        ({"nbf": NOW - 10}, NOW, None),
        ({"iat": NOW + 60}, NOW, None),
        ({"iat": NOW + 61}, NOW, "issued_in_future"),
        ({"exp": NOW + 10.25, "nbf": NOW - 0.5, "iat": NOW}, NOW, None),
    ],
)
def test_time_claims_with_skew(overrides: dict[str, Any], at: float, expected: str | None) -> None:
    token = sign(claims(**overrides), rsa_key(), "RS256", kid="rsa-1")
    result = _rsa_auth().authenticate(token, at)
    if expected is None:
        _ok(result)
    else:
        assert _reason(result) == expected


def test_zero_skew_is_exact() -> None:
    auth = _rsa_auth(clock_skew=0.0)
    token = sign(claims(exp=NOW + 5, nbf=NOW - 5), rsa_key(), "RS256", kid="rsa-1")
    assert _reason(auth.authenticate(token, NOW + 5)) == "expired"
    assert _reason(auth.authenticate(token, NOW - 5.001)) == "not_yet_valid"
    _ok(auth.authenticate(token, NOW - 5))
    _ok(auth.authenticate(token, NOW + 4.999))


@pytest.mark.parametrize(
    "raw_value",
    ['"1700000300"', "true", "null", "[1700000300]", '{"t":1}', "1" + "0" * 400, "1e999"],
    ids=["string", "bool", "null", "list", "object", "huge-int", "overflowing-float"],
)
def test_time_claims_must_be_finite_numbers(raw_value: str) -> None:
    auth = authenticator([oct_jwk(SECRET, None)], algorithms=("HS256",))
    for name in ("exp", "nbf", "iat"):
        payload = claims()
        payload[name] = "PLACEHOLDER"
        raw = json.dumps(payload).replace('"PLACEHOLDER"', raw_value).encode()
        token = craft({"alg": "HS256"}, raw, SECRET, "HS256")
        result = auth.authenticate(token, NOW)
        assert _reason(result) == "malformed"
        assert isinstance(result, JwtError) and name in result.description


def test_nan_and_infinity_literals_are_malformed() -> None:
    auth = authenticator([oct_jwk(SECRET, None)], algorithms=("HS256",))
    for literal in ("NaN", "Infinity", "-Infinity"):
        raw = json.dumps(claims()).replace(f"{NOW + 300}", literal).encode()
        assert literal.encode() in raw
        token = craft({"alg": "HS256"}, raw, SECRET, "HS256")
        assert _reason(auth.authenticate(token, NOW)) == "malformed"


# ---------------------------------------------------- iss, aud, required claims


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"iss": "https://evil.example"}, "bad_issuer"),
        ({"iss": ISSUER + "/"}, "bad_issuer"),
        ({"iss": None}, "bad_issuer"),
        ({"iss": [ISSUER]}, "bad_issuer"),
        ({"aud": "other"}, "bad_audience"),
        ({"aud": ["other", AUDIENCE]}, None),
        ({"aud": [AUDIENCE]}, None),
        ({"aud": []}, "bad_audience"),
        ({"aud": ["other", "x"]}, "bad_audience"),
        ({"aud": None}, "bad_audience"),
        ({"aud": 7}, "malformed"),
        ({"aud": [AUDIENCE, 7]}, "malformed"),
        ({"exp": None}, "missing_claim"),
    ],
)
def test_issuer_audience_and_required_claims(
    overrides: dict[str, Any], expected: str | None
) -> None:
    token = sign(claims(**overrides), rsa_key(), "RS256", kid="rsa-1")
    result = _rsa_auth().authenticate(token, NOW)
    if expected is None:
        _ok(result)
    else:
        assert _reason(result) == expected


def test_audiences_empty_means_aud_is_not_checked() -> None:
    auth = _rsa_auth(audiences=())
    for aud in ("anything", None, 7):
        _ok(auth.authenticate(sign(claims(aud=aud), rsa_key(), "RS256", kid="rsa-1"), NOW))


def test_custom_required_claims_and_no_exp() -> None:
    auth = _rsa_auth(required_claims=("sub", "scope"))
    missing = auth.authenticate(sign(claims(), rsa_key(), "RS256", kid="rsa-1"), NOW)
    assert _reason(missing) == "missing_claim"
    assert isinstance(missing, JwtError)
    assert missing.description == "the token lacks the required claim scope"
    # exp not required: a token without exp is valid, without an expiry
    token = sign(claims(exp=None, scope="read"), rsa_key(), "RS256", kid="rsa-1")
    assert _ok(auth.authenticate(token, NOW)).expires_at is None


def test_required_claim_names_from_config_cannot_break_the_description() -> None:
    auth = _rsa_auth(required_claims=('we"ird\\name\n',))
    result = auth.authenticate(sign(claims(), rsa_key(), "RS256", kid="rsa-1"), NOW)
    assert _reason(result) == "missing_claim"


# --------------------------------------------------------------- malformed


def _valid_parts() -> tuple[str, str, str]:
    head, body, sig = sign(claims(), rsa_key(), "RS256", kid="rsa-1").split(".")
    return head, body, sig


MALFORMED = {"malformed"}
EITHER = {"malformed", "bad_signature"}


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda h, b, s: "", MALFORMED),
        (lambda h, b, s: h, MALFORMED),
        (lambda h, b, s: f"{h}.{b}", MALFORMED),
        (lambda h, b, s: f"{h}.{b}.{s}.", MALFORMED),
        (lambda h, b, s: f"{h}.{b}.{s}.{s}", MALFORMED),
        (lambda h, b, s: f"{h}.{b}.{s}.{h}.{b}", MALFORMED),
        (lambda h, b, s: f".{b}.{s}", MALFORMED),
        (lambda h, b, s: f"{h}.{b}=.{s}", MALFORMED),
        (lambda h, b, s: f"{h}=.{b}.{s}", MALFORMED),
        (lambda h, b, s: f"{h}.{b}.{s}==", MALFORMED),
        (lambda h, b, s: f"{h}.{b}+.{s}", MALFORMED),
        (lambda h, b, s: f"{h}.{b}.{s[:-1]}/", MALFORMED),
        (lambda h, b, s: f"{h}.{b}.{s[:-1]}", MALFORMED),
        (lambda h, b, s: f"{h}.{b}.{s[:-1]}B", MALFORMED),
        (lambda h, b, s: f"{h}.{b}.{s[:-2]}", {"bad_signature"}),
        (lambda h, b, s: f"{h} .{b}.{s}", MALFORMED),
        (lambda h, b, s: f"{h}.{b}.{s}\n", MALFORMED),
        (lambda h, b, s: f"{h}.{b}\u00e9.{s}", MALFORMED),
        (lambda h, b, s: f"{h}.{b[:-1]}.{s}", EITHER),
        (lambda h, b, s: f"{h[:-1]}.{b}.{s}", EITHER),
        (lambda h, b, s: f"{b}.{h}.{s}", MALFORMED),
    ],
    ids=[
        "empty",
        "one-part",
        "two-parts",
        "trailing-dot",
        "four-parts",
        "five-parts-jwe",
        "empty-header",
        "padded-payload",
        "padded-header",
        "padded-signature",
        "plus-in-payload",
        "slash-in-signature",
        "signature-length-mod-4-is-1",
        "signature-unused-bits-set",
        "truncated-signature",
        "space",
        "newline",
        "non-ascii",
        "truncated-payload",
        "truncated-header",
        "header-and-payload-swapped",
    ],
)
def test_malformed_structure(build: Any, expected: set[str]) -> None:
    head, body, signature = _valid_parts()
    assert len(signature) % 4 == 2  # 256 bytes: the last character carries 4 unused bits
    token = build(head, body, signature)
    assert _reason(_rsa_auth().authenticate(token, NOW)) in expected


@pytest.mark.parametrize(
    ("header", "payload", "description"),
    [
        (b"not json", None, "the token header is not a JSON object"),
        (b'["RS256"]', None, "the token header is not a JSON object"),
        (b'"RS256"', None, "the token header is not a JSON object"),
        (b'{"alg":"RS256","alg":"none"}', None, "the token header is not a JSON object"),
        (b'{"alg":"RS256"} x', None, "the token header is not a JSON object"),
        (b"\xff\xfe{}", None, "the token header is not a JSON object"),
        (b"[" * 3000 + b"]" * 3000, None, "the token header is not a JSON object"),
        (b"{}", None, "the token header has no alg"),
        (b'{"alg":256}', None, "the token header has no alg"),
        (b'{"alg":""}', None, "the token header has no alg"),
        (b'{"alg":"RS256","kid":7}', None, "the token kid is not a string"),
        (
            b'{"alg":"RS256","crit":["exp"],"exp":1}',
            None,
            "the token uses critical header extensions",
        ),
        (
            b'{"alg":"RS256","b64":false,"crit":["b64"]}',
            None,
            "the token uses critical header extensions",
        ),
        (b'{"alg":"RS256","b64":false}', None, "unencoded token payloads are not supported"),
        (None, b"[1,2]", "the token payload is not a JSON object"),
        (None, b'"sub"', "the token payload is not a JSON object"),
        (None, b"42", "the token payload is not a JSON object"),
        (None, b"null", "the token payload is not a JSON object"),
        (None, b"", "the token payload is not a JSON object"),
        (None, b"\xc3\x28{}", "the token payload is not a JSON object"),
        (None, b'{"sub":"a","sub":"b"}', "the token payload is not a JSON object"),
        (None, b"\xef\xbb\xbf{}", "the token payload is not a JSON object"),
        (None, b'{"a":' * 1500 + b"1" + b"}" * 1500, "the token payload is not a JSON object"),
    ],
)
def test_malformed_header_and_payload(
    header: bytes | None, payload: bytes | None, description: str
) -> None:
    head = header if header is not None else b'{"alg":"RS256","kid":"rsa-1"}'
    body = payload if payload is not None else json.dumps(claims()).encode()
    token = craft(head, body, rsa_key(), "RS256")
    result = _rsa_auth(max_token_bytes=20000).authenticate(token, NOW)
    assert _reason(result) == "malformed"
    assert isinstance(result, JwtError)
    assert result.description == description


def test_token_size_is_checked_before_anything_else(verifier: CountingVerifier) -> None:
    token = sign(claims(pad="x" * 5000), rsa_key(), "RS256", kid="rsa-1")
    auth = _rsa_auth(max_token_bytes=len(token))
    _ok(auth.authenticate(token, NOW))
    smaller = _rsa_auth(max_token_bytes=len(token) - 1)
    assert _reason(smaller.authenticate(token, NOW)) == "too_large"
    assert _reason(smaller.authenticate("!" * (len(token) + 1), NOW)) == "too_large"
    assert _reason(smaller.authenticate("é" * 100_000, NOW)) == "too_large"
    assert verifier.calls == 1


@pytest.mark.parametrize("alg", ["HS1", "RS1", "ES521", "ES224", "RSA-OAEP", "A256GCM", "rs256"])
def test_unsupported_algorithms(alg: str) -> None:
    auth = _rsa_auth(algorithms=("RS256", alg))
    token = craft({"alg": alg, "kid": "rsa-1"}, claims(), SECRET, "HS256")
    assert _reason(auth.authenticate(token, NOW)) == "bad_algorithm"


# ------------------------------------------------------------------- the cache


def test_cache_skips_the_signature_check(verifier: CountingVerifier) -> None:
    auth = _rsa_auth()
    token = sign(claims(), rsa_key(), "RS256", kid="rsa-1")
    first = _ok(auth.authenticate(token, NOW))
    assert _ok(auth.authenticate(token, NOW + 1)) is first
    assert verifier.calls == 1
    assert auth.cached == 1


def test_cache_is_never_used_past_exp(verifier: CountingVerifier) -> None:
    auth = _rsa_auth()  # 60 s skew
    token = sign(claims(exp=NOW + 10), rsa_key(), "RS256", kid="rsa-1")
    _ok(auth.authenticate(token, NOW))
    _ok(auth.authenticate(token, NOW + 9.9))
    assert verifier.calls == 1
    _ok(auth.authenticate(token, NOW + 10))  # past exp, within skew: checked again
    assert verifier.calls == 2
    assert auth.cached == 0  # ... and not cached again
    _ok(auth.authenticate(token, NOW + 11))
    assert verifier.calls == 3
    assert _reason(auth.authenticate(token, NOW + 70)) == "expired"


def test_cache_is_not_used_before_nbf_minus_skew(verifier: CountingVerifier) -> None:
    auth = _rsa_auth()
    token = sign(claims(nbf=NOW + 100), rsa_key(), "RS256", kid="rsa-1")
    _ok(auth.authenticate(token, NOW + 50))
    _ok(auth.authenticate(token, NOW + 60))
    assert verifier.calls == 1
    # the wall clock went back
    assert _reason(auth.authenticate(token, NOW + 30)) == "not_yet_valid"
    assert verifier.calls == 2


def test_only_successes_are_cached(verifier: CountingVerifier) -> None:
    auth = _rsa_auth()
    forged = sign(claims(), rsa_key(2), "RS256", kid="rsa-1")
    for _ in range(3):
        assert _reason(auth.authenticate(forged, NOW)) == "bad_signature"
    assert verifier.calls == 3
    assert auth.cached == 0


def test_cache_is_bounded_lru(verifier: CountingVerifier) -> None:
    auth = _rsa_auth(cache_size=2)
    tokens = [sign(claims(n=i), rsa_key(), "RS256", kid="rsa-1") for i in range(3)]
    for token in tokens[:2]:
        _ok(auth.authenticate(token, NOW))
    _ok(auth.authenticate(tokens[0], NOW))  # 0 is now the most recent
    _ok(auth.authenticate(tokens[2], NOW))  # evicts 1
    assert auth.cached == 2
    assert verifier.calls == 3
    _ok(auth.authenticate(tokens[0], NOW))
    assert verifier.calls == 3
    _ok(auth.authenticate(tokens[1], NOW))
    assert verifier.calls == 4


def test_cache_size_zero_disables_it(verifier: CountingVerifier) -> None:
    auth = _rsa_auth(cache_size=0)
    token = sign(claims(), rsa_key(), "RS256", kid="rsa-1")
    for _ in range(3):
        _ok(auth.authenticate(token, NOW))
    assert verifier.calls == 3
    assert auth.cached == 0


@st.composite
def _timed_calls(draw: st.DrawFn) -> list[tuple[int, float]]:
    return draw(
        st.lists(
            st.tuples(st.integers(0, 3), st.floats(NOW - 400, NOW + 400, allow_nan=False)),
            min_size=1,
            max_size=25,
        )
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    times=st.lists(
        st.tuples(
            st.sampled_from([None, NOW - 100, NOW, NOW + 50, NOW + 200]),
            st.sampled_from([None, NOW - 50, NOW + 30, NOW + 120]),
            st.sampled_from([None, NOW - 20, NOW + 80]),
        ),
        min_size=4,
        max_size=4,
    ),
    calls=_timed_calls(),
    skew=st.sampled_from([0.0, 0.5, 60.0]),
)
def test_cache_never_changes_an_answer(
    times: list[tuple[float | None, float | None, float | None]],
    calls: list[tuple[int, float]],
    skew: float,
) -> None:
    """The same calls, with and without the cache, get the same answers; and the
    answers follow the exp/nbf/iat rules with skew."""
    keys = [oct_jwk(SECRET, "k")]
    options = {"algorithms": ("HS256",), "clock_skew": skew, "required_claims": ()}
    cached = authenticator(keys, cache_size=2, **options)
    uncached = authenticator(keys, cache_size=0, **options)
    tokens = [
        sign(claims(exp=exp, nbf=nbf, iat=iat, n=i), SECRET, "HS256", kid="k")
        for i, (exp, nbf, iat) in enumerate(times)
    ]
    for index, now in calls:
        a = cached.authenticate(tokens[index], now)
        b = uncached.authenticate(tokens[index], now)
        assert type(a) is type(b)
        exp, nbf, iat = times[index]
        if exp is not None and now >= exp + skew:
            expected: str | None = "expired"
        elif nbf is not None and now < nbf - skew:
            expected = "not_yet_valid"
        elif iat is not None and now < iat - skew:
            expected = "issued_in_future"
        else:
            expected = None
        if expected is None:
            assert isinstance(a, VerifiedToken) and isinstance(b, VerifiedToken)
            assert a.claims == b.claims
        else:
            assert _reason(a) == _reason(b) == expected


# --------------------------------------------------------- never raises, safe text

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _hostile_tokens(draw: st.DrawFn) -> str:
    header: dict[str, Any] = draw(
        st.dictionaries(
            st.sampled_from(["alg", "kid", "crit", "b64", "typ", "jwk", "x"]), _JSON, max_size=4
        )
    )
    if draw(st.booleans()):
        header["alg"] = draw(st.sampled_from(["RS256", "ES256", "HS256", "none", "EdDSA"]))
    if draw(st.booleans()):
        header["kid"] = draw(st.sampled_from(["rsa-1", "nope", "../x"]))
    payload = draw(
        st.one_of(
            _JSON,
            st.fixed_dictionaries(
                {},
                optional={
                    "iss": st.sampled_from([ISSUER, "x"]) | _JSON,
                    "aud": st.sampled_from([AUDIENCE, [AUDIENCE]]) | _JSON,
                    "exp": st.floats(NOW - 100, NOW + 100) | _JSON,
                    "nbf": _JSON,
                    "iat": _JSON,
                },
            ),
        )
    )
    token = craft(header, json.dumps(payload).encode(), SECRET, "HS256")
    mangle = draw(st.sampled_from(["none", "drop-char", "add-char", "swap-part"]))
    if mangle == "drop-char" and token:
        at = draw(st.integers(0, len(token) - 1))
        token = token[:at] + token[at + 1 :]
    elif mangle == "add-char":
        at = draw(st.integers(0, len(token)))
        token = token[:at] + draw(st.sampled_from([".", "=", "A", " ", "\x00", "é"])) + token[at:]
    elif mangle == "swap-part":
        parts = token.split(".")
        draw(st.randoms()).shuffle(parts)
        token = ".".join(parts)
    return token


@settings(max_examples=300, deadline=None)
@given(token=_hostile_tokens() | st.text(max_size=200))
def test_authenticate_never_raises_and_descriptions_are_safe(token: str) -> None:
    auth = authenticator(
        [public_jwk(rsa_key(), "rsa-1"), public_jwk(ec_key(), "ec-1")],
        algorithms=("RS256", "ES256", "EdDSA"),
    )
    result = auth.authenticate(token, NOW)
    assert not isinstance(result, KeysNeeded)  # inline keys: never waits
    if isinstance(result, JwtError):
        _reason(result)
        assert result.status == 401
        for piece in token.split("."):
            if len(piece) >= 8:
                assert piece not in result.description
    else:
        assert isinstance(result, VerifiedToken)


# ------------------------------------------------------------- JwtError itself


def test_jwt_error_defaults_and_challenge() -> None:
    error = JwtError("expired")
    assert (error.reason, error.description, error.status) == (
        "expired",
        "the token has expired",
        401,
    )
    assert str(error) == "expired: the token has expired"
    assert error.www_authenticate('my "realm"') == (
        'Bearer realm="my realm", error="invalid_token", error_description="the token has expired"'
    )
    assert JwtError("missing").www_authenticate("gw") == 'Bearer realm="gw"'
    assert JwtError("malformed", 'bad "x" \\ \r\n\x00ok').description == "bad x  ok"
    assert set(DESCRIPTIONS) == REASONS
    for description in DESCRIPTIONS.values():
        assert set(description) <= SAFE_DESCRIPTION


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=40), last=st.sampled_from("AQgw_-0Bz9"), cut=st.integers(0, 3))
def test_base64url_is_strict_and_canonical(raw: bytes, last: str, cut: int) -> None:
    """Only the one unpadded base64url encoding of some bytes is accepted: a
    changed last character (unused bits set) or a bad length is not."""
    encoded = b64url(raw)
    assert jwt_module._b64url_decode(encoded) == raw
    variant = (encoded[:-1] + last) if encoded else last
    variant = variant[: max(0, len(variant) - cut)]
    reference: bytes | None = None
    if len(variant) % 4 != 1:
        decoded = base64.urlsafe_b64decode(variant + "=" * (-len(variant) % 4))
        reference = decoded if b64url(decoded) == variant else None
    assert jwt_module._b64url_decode(variant) == reference
    for padded in (encoded + "=", encoded + "==", " " + encoded, encoded.replace("A", "+")):
        if padded != encoded:
            assert jwt_module._b64url_decode(padded) is None


def test_oct_key_holding_a_public_key_is_refused() -> None:
    """An operator pasting the RSA public key (PEM, DER, OpenSSH or JWK JSON) as a
    shared secret would let anyone sign HS256 tokens with it: PyJWT's key preparation
    refuses it, and the key is skipped."""
    for label, secret in _public_secrets():
        if label == "modulus":
            continue  # opaque bytes: indistinguishable from a random secret
        document = {"keys": [oct_jwk(secret, "s")]}
        with pytest.raises(JwksError, match="malformed key"):
            JwksKeySet.parse(document, ["HS256"])


# ----------------------------------------------------------------- key sets


def test_jwks_document_errors() -> None:
    documents: list[tuple[Any, str]] = [
        (b"{", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        ("[]", "JSON object"),
        ({"keys": {}}, '"keys" array'),
        ({"nokeys": []}, '"keys" array'),
        ({"keys": []}, "no keys"),
        ({"keys": [1, "x", None]}, "no usable signing key"),
    ]
    for document, message in documents:
        with pytest.raises(JwksError, match=message):
            JwksKeySet.parse(document, ["RS256"])
    with pytest.raises(JwksError, match="no supported signature algorithm"):
        JwksKeySet.parse({"keys": [public_jwk(rsa_key(), "a")]}, ["none", "RSA-OAEP"])


def test_jwks_accepts_text_bytes_and_a_bom() -> None:
    document = {"keys": [public_jwk(rsa_key(), "a")]}
    text = json.dumps(document)
    for form in (document, text, text.encode(), b"\xef\xbb\xbf" + text.encode()):
        assert JwksKeySet.parse(form, ["RS256"]).kids == {"a"}


def test_jwks_key_filters() -> None:
    good = public_jwk(rsa_key(), "good")
    cases = [
        (public_jwk(rsa_key(1), "enc", use="enc"), "use is 'enc'"),
        (public_jwk(rsa_key(1), "ops", key_ops=["encrypt"]), "key_ops"),
        (public_jwk(rsa_key(1), "ops2", key_ops="verify"), "key_ops"),
        (public_jwk(rsa_key(1), "alg", alg="RS512"), "none of its algorithms"),
        (public_jwk(rsa_key(1), "fit", alg="ES256"), "does not fit"),
        (dict(public_jwk(rsa_key(1), None), kid=7), "kid is not a string"),
        ({"kty": "RSA", "kid": "broken", "n": "AQAB"}, "malformed key"),
        (
            {
                "kty": "EC",
                "kid": "pt",
                "crv": "P-256",
                "x": b64url(bytes(32)),
                "y": b64url(bytes(32)),
            },
            "malformed key",
        ),
        ({"kid": "nokty"}, "no kty"),
        ({"kty": "XYZ", "kid": "kty"}, "unsupported kty"),
        (dict(public_jwk(rsa_key(1), "priv"), d="AQAB"), "private key material"),
        (oct_jwk(SECRET, "mixed"), "also holds public keys"),
        (public_jwk(rsa_key(1, 1024), "small"), "1024 bits"),
    ]
    keys = JwksKeySet.parse({"keys": [good] + [raw for raw, _ in cases]}, ["RS256", "ES256"])
    assert keys.kids == {"good"}
    assert len(keys.skipped) == len(cases)
    for (_, fragment), reason in zip(cases, keys.skipped, strict=True):
        assert fragment in reason, reason
    # key_ops including verify, use sig: usable
    usable = public_jwk(rsa_key(1), "ok", use="sig", key_ops=["verify", "sign"], alg="RS256")
    assert JwksKeySet.parse({"keys": [usable]}, ["RS256"]).kids == {"ok"}


def test_jwks_duplicate_kids_are_all_dropped() -> None:
    document = {
        "keys": [
            public_jwk(rsa_key(0), "dup"),
            public_jwk(rsa_key(1), "dup"),
            public_jwk(rsa_key(2), "other"),
            # an encryption key sharing a signing key's kid does not count
            public_jwk(rsa_key(3), "other", use="enc"),
        ]
    }
    keys = JwksKeySet.parse(document, ["RS256"])
    assert keys.kids == {"other"}
    assert any("2 keys share it" in reason for reason in keys.skipped)
    auth = authenticator(document["keys"])
    token = sign(claims(), rsa_key(0), "RS256", kid="dup")
    assert _reason(auth.authenticate(token, NOW)) == "unknown_kid"


def test_jwks_symmetric_keys() -> None:
    only_oct = {"keys": [oct_jwk(SECRET, "s"), oct_jwk(bytes(64), "long", alg="HS512")]}
    keys = JwksKeySet.parse(only_oct, ["HS256", "HS384", "HS512"])
    assert keys.kids == {"s", "long"}
    by_kid = {key.kid: key.algorithms for key in keys.keys}
    assert by_kid == {"s": frozenset({"HS256"}), "long": frozenset({"HS512"})}
    with pytest.raises(JwksError, match="not accepted from this source"):
        JwksKeySet.parse(only_oct, ["HS256"], allow_symmetric=False)
    with pytest.raises(JwksError, match="too short"):
        JwksKeySet.parse({"keys": [oct_jwk(bytes(31), "s")]}, ["HS256"])
    with pytest.raises(JwksError, match="empty HMAC secret"):
        JwksKeySet.parse({"keys": [oct_jwk(b"", "s")]}, ["HS256"])
    # the secret never shows in the key set's text
    assert SECRET.hex() not in repr(keys) and b64url(SECRET) not in repr(keys)


def test_jwks_key_count_is_bounded() -> None:
    jwk = public_jwk(ec_key(), None)
    document = {"keys": [dict(jwk, kid=f"k{i}") for i in range(MAX_KEYS + 5)]}
    keys = JwksKeySet.parse(document, ["ES256"])
    assert len(keys) == MAX_KEYS
    assert keys.skipped == (f"5 keys beyond the first {MAX_KEYS} ignored",)


def test_jwks_fingerprint_tracks_the_usable_keys() -> None:
    a, b = public_jwk(rsa_key(0), "a"), public_jwk(rsa_key(1), "b")
    first = JwksKeySet.parse({"keys": [a, b]}, ["RS256"])
    reordered = JwksKeySet.parse(json.dumps({"keys": [b, a, {"kty": "?"}]}), ["RS256"])
    assert first.fingerprint == reordered.fingerprint
    assert first.fingerprint != JwksKeySet.parse({"keys": [a]}, ["RS256"]).fingerprint
    assert first.fingerprint != JwksKeySet.parse({"keys": [a, b]}, ["RS256", "PS256"]).fingerprint
    renamed = dict(b, kid="c")
    assert first.fingerprint != JwksKeySet.parse({"keys": [a, renamed]}, ["RS256"]).fingerprint


def test_authenticator_construction_errors() -> None:
    with pytest.raises(JwksError, match="not loaded"):
        JwtAuthenticator(m.JwtProvider("p", ISSUER, m.JwksSource("file", path="/x.json")))
    with pytest.raises(JwksError, match="needs a uri"):
        JwtAuthenticator(m.JwtProvider("p", ISSUER, m.JwksSource("remote")))
    with pytest.raises(JwksError, match="no supported signature algorithm"):
        JwtAuthenticator(provider(remote=True, algorithms=("none", "HS1")))
    with pytest.raises(JwksError, match="no usable signing key"):
        authenticator([public_jwk(rsa_key(), "a", use="enc")])
    auth = authenticator([public_jwk(rsa_key(), "a")])
    assert auth.take_fetch(NOW) is None
    assert not auth.fetching
    assert auth.keys is not None and auth.keys.kids == {"a"}
    assert auth.provider.name == "idp"
