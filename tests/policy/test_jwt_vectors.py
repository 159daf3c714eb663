"""Third-party vectors: Wycheproof JWS/JWK, the RFC 7520 JOSE cookbook, PyJWT's test keys.

Wycheproof's verdicts are compared with ours one by one; where we differ, the
test names each case and the reason (a few Wycheproof labels are themselves wrong or
assume a looser key policy than ours), and fails if any other case differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from test_jwt_support import ALL_ALGORITHMS, ISSUER, NOW, VECTORS, claims, provider, sign

from gwcore.policy.jwks import JwksError, JwksKeySet
from gwcore.policy.jwt import JwtAuthenticator, JwtError, VerifiedToken, verify_jws

WYCHEPROOF = VECTORS / "wycheproof-jose" / "testvectors"
COOKBOOK = VECTORS / "ietf-jose-cookbook"
PYJWT_KEYS = VECTORS / "pyjwt-test-keys" / "tests" / "keys"


def _load(path: Path) -> Any:
    if not path.exists():
        pytest.skip(f"vectors not available: {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def _verdict(document: Any, jws: Any) -> tuple[str, str]:
    """('valid' | 'invalid', why) for a JWS checked against a JWKS with our code."""
    token = jws if isinstance(jws, str) else json.dumps(jws)
    try:
        keys = JwksKeySet.parse(document, ALL_ALGORITHMS)
    except JwksError as exc:
        return "invalid", f"key set refused: {exc}"
    try:
        verify_jws(token, keys, ALL_ALGORITHMS)
    except JwtError as exc:
        return "invalid", exc.reason
    return "valid", "verified"


def _keyset(group: dict[str, Any]) -> dict[str, Any]:
    """The verification keys of a Wycheproof group: its public key(s), else the
    symmetric key given as 'private'."""
    key = group.get("public") or group["private"]
    return key if "keys" in key else {"keys": [key]}


# --------------------------------------------------------------- Wycheproof JWS

# tcId -> why our verdict differs from Wycheproof's label.
SIGNATURE_DISAGREEMENTS = {
    346: "RFC 7520 fig. 20 is PS384 but the JWK says alg PS256: a key is used only with its alg",
    350: "same as 346, key_ops variant",
    347: "RFC 7520 fig. 27: the JWK says alg 'ES521', not a JWA name, so the key is refused",
    351: "same as 347, key_ops variant",
    367: "labelled invalid, but the text is identical to the valid case 357",
    370: "labelled invalid, but the text is identical to the valid case 357",
    372: "'?' inside the header: not base64url, refused (RFC 7515 section 2)",
    373: "'?' inside the payload: not base64url, refused (RFC 7515 section 2)",
}


def _signature_cases() -> list[tuple[int, str, str, dict[str, Any], Any, list[str]]]:
    path = WYCHEPROOF / "json_web_signature_test.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        (t["tcId"], t["comment"], t["result"], _keyset(g), t["jws"], t["flags"])
        for g in data["testGroups"]
        for t in g["tests"]
    ]


SIGNATURE_CASES = _signature_cases()


@pytest.mark.skipif(not SIGNATURE_CASES, reason="Wycheproof vectors not available")
def test_wycheproof_signature_file_is_complete() -> None:
    assert len(SIGNATURE_CASES) == 401
    assert {result for _, _, result, _, _, _ in SIGNATURE_CASES} == {"valid", "invalid"}


@pytest.mark.parametrize(
    ("tc_id", "comment", "expected", "document", "jws", "flags"),
    SIGNATURE_CASES,
    ids=[f"tc{case[0]}-{case[1]}" for case in SIGNATURE_CASES],
)
def test_wycheproof_signature(
    tc_id: int, comment: str, expected: str, document: Any, jws: Any, flags: list[str]
) -> None:
    verdict, why = _verdict(document, jws)
    if tc_id in SIGNATURE_DISAGREEMENTS:
        assert verdict != expected, f"tc{tc_id} now agrees; drop it from the list"
        return
    assert verdict == expected, f"tc{tc_id} {comment}: {why}"
    if "AlgIsNone" in flags:
        assert why == "bad_algorithm"
    if "ModifiedSignature" in flags or "ModifiedPadding" in flags:
        assert why == "bad_signature"
    if "JsonSerialization" in flags:
        assert why == "malformed"


@pytest.mark.skipif(not SIGNATURE_CASES, reason="Wycheproof vectors not available")
def test_wycheproof_disagreements_are_safe_side_except_the_mislabelled() -> None:
    """Every case where we differ is one we refuse, except the two whose text is the
    valid case 357 verbatim."""
    by_id = {case[0]: case for case in SIGNATURE_CASES}
    for tc_id in SIGNATURE_DISAGREEMENTS:
        _, _, expected, document, jws, _ = by_id[tc_id]
        verdict, _ = _verdict(document, jws)
        if tc_id in (367, 370):
            assert jws == by_id[357][4]
            assert verdict == "valid"
        else:
            assert (expected, verdict) == ("valid", "invalid")


# --------------------------------------------------------------- Wycheproof JWK


def _key_cases() -> list[tuple[int, str, str, dict[str, Any], str, list[str]]]:
    path = WYCHEPROOF / "json_web_key_test.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        (t["tcId"], f"{g['comment']}-{t['comment']}", t["result"], _keyset(g), t["jws"], t["flags"])
        for g in data["testGroups"]
        for t in g["tests"]
    ]


KEY_CASES = _key_cases()


@pytest.mark.parametrize(
    ("tc_id", "comment", "expected", "document", "jws", "flags"),
    KEY_CASES,
    ids=[f"tc{case[0]}-{case[1]}" for case in KEY_CASES],
)
def test_wycheproof_key_sets(
    tc_id: int, comment: str, expected: str, document: Any, jws: str, flags: list[str]
) -> None:
    """Mixed symmetric/public sets, duplicate kids, ROCA and 1024-bit RSA keys, e=1,
    short/empty HMAC keys, alg/curve/kty mismatches, AES keys: all refused."""
    verdict, why = _verdict(document, jws)
    assert verdict == expected, f"tc{tc_id} {comment}: {why}"


@pytest.mark.skipif(not KEY_CASES, reason="Wycheproof vectors not available")
def test_wycheproof_key_set_skip_reasons_are_specific() -> None:
    reasons: dict[str, str] = {}
    for _, comment, expected, document, _, _ in KEY_CASES:
        if expected == "valid":
            continue
        try:
            keys = JwksKeySet.parse(document, ALL_ALGORITHMS)
        except JwksError as exc:
            reasons[comment] = str(exc)
        else:
            reasons[comment] = "; ".join(keys.skipped)
    assert "ROCA" in reasons["jws_rsa_roca_key-rejectsKeyWithRocaVulnerability"]
    assert "1024 bits" in reasons["keysize_too_small-rejects1024bitRsaKey"]
    assert "share it" in reasons["jws_duplicate_kid-rejectsDuplicateKid"]
    assert "also holds public keys" in reasons["jws_mixedSymmetryKeyset-rejectsValid"]
    assert "too short" in reasons["HS256-key_too_short"]
    assert "does not fit" in reasons["wrong_algorithm-mismatchedAlgAndCurve"]
    assert "use is 'enc'" in reasons["invalid_use-rejectsModifiedKey"]


def _crypto_cases() -> list[tuple[int, str, str, dict[str, Any], Any]]:
    path = WYCHEPROOF / "json_web_crypto_test.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        (t["tcId"], f"{g['comment']}-{t['comment']}", t["result"], _keyset(g), t["jws"])
        for g in data["testGroups"]
        for t in g["tests"]
        if "jws" in t
    ]


CRYPTO_CASES = _crypto_cases()


@pytest.mark.parametrize(
    ("tc_id", "comment", "expected", "document", "jws"),
    CRYPTO_CASES,
    ids=[f"tc{case[0]}-{case[1]}" for case in CRYPTO_CASES],
)
def test_wycheproof_crypto_jws(
    tc_id: int, comment: str, expected: str, document: Any, jws: Any
) -> None:
    verdict, why = _verdict(document, jws)
    assert verdict == expected, f"tc{tc_id} {comment}: {why}"


def test_wycheproof_jwe_tokens_are_not_accepted_as_jws() -> None:
    data = _load(WYCHEPROOF / "json_web_crypto_test.json")
    keys = JwksKeySet.parse({"keys": [{"kty": "oct", "k": "A" * 43 + "g"}]}, ["HS256"])
    jwes = [t["jwe"] for g in data["testGroups"] for t in g["tests"] if "jwe" in t]
    assert len(jwes) == 34
    for jwe in jwes:
        token = jwe if isinstance(jwe, str) else json.dumps(jwe)
        with pytest.raises(JwtError) as caught:
            verify_jws(token, keys, ["HS256"])
        assert caught.value.reason == "malformed"


# ------------------------------------------------------- RFC 7520 JOSE cookbook

COOKBOOK_EXAMPLES = [
    ("4_1.rsa_v15_signature.json", "3_3.rsa_public_key.json", "RS256"),
    ("4_2.rsa-pss_signature.json", "3_3.rsa_public_key.json", "PS384"),
    ("4_3.ecdsa_signature.json", "3_1.ec_public_key.json", "ES512"),
    ("4_4.hmac-sha2_integrity_protection.json", "3_5.symmetric_key_mac_computation.json", "HS256"),
]


@pytest.mark.parametrize(("example", "key_file", "alg"), COOKBOOK_EXAMPLES)
def test_cookbook_signed_examples_verify_with_the_cookbook_keys(
    example: str, key_file: str, alg: str
) -> None:
    data = _load(COOKBOOK / "jws" / example)
    public = _load(COOKBOOK / "jwk" / key_file)
    assert data["input"]["alg"] == alg
    assert data["input"]["key"]["kid"] == public["kid"]
    compact: str = data["output"]["compact"]
    keys = JwksKeySet.parse({"keys": [public]}, [alg])
    header, payload = verify_jws(compact, keys, [alg])
    assert header["alg"] == alg
    assert header["kid"] == public["kid"]
    assert payload == data["input"]["payload"].encode("utf-8")

    # Through a provider configured for that algorithm: the signature passes, and the
    # cookbook's payload (prose, not a claims object) is what stops the token.
    auth = JwtAuthenticator(provider([public], algorithms=(alg,), cache_size=0))
    result = auth.authenticate(compact, NOW)
    assert isinstance(result, JwtError)
    assert (result.reason, result.description) == (
        "malformed",
        "the token payload is not a JSON object",
    )

    # One flipped character in the signature; a verifier allowing another algorithm.
    head, body, signature = compact.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    tampered = auth.authenticate(f"{head}.{body}.{flipped}", NOW)
    assert isinstance(tampered, JwtError) and tampered.reason == "bad_signature"
    with pytest.raises(JwtError) as caught:
        verify_jws(compact, keys, ["RS512" if alg != "RS512" else "RS256"])
    assert caught.value.reason == "bad_algorithm"


def test_cookbook_detached_content_is_not_verified_as_an_empty_payload() -> None:
    data = _load(COOKBOOK / "jws" / "4_5.signature_with_detached_content.json")
    public = _load(COOKBOOK / "jwk" / "3_5.symmetric_key_mac_computation.json")
    keys = JwksKeySet.parse({"keys": [public]}, ["HS256"])
    with pytest.raises(JwtError) as caught:
        verify_jws(data["output"]["compact"], keys, ["HS256"])
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize(
    "example",
    [
        "4_6.protecting_specific_header_fields.json",
        "4_7.protecting_content_only.json",
        "4_8.multiple_signatures.json",
    ],
)
def test_cookbook_json_serialization_is_refused(example: str) -> None:
    data = _load(COOKBOOK / "jws" / example)
    public = _load(COOKBOOK / "jwk" / "3_5.symmetric_key_mac_computation.json")
    keys = JwksKeySet.parse({"keys": [public]}, ["HS256", "RS256"])
    for form in ("json", "json_flat"):
        if form in data["output"]:
            with pytest.raises(JwtError) as caught:
                verify_jws(json.dumps(data["output"][form]), keys, ["HS256", "RS256"])
            assert caught.value.reason == "malformed"


def test_rfc7797_unencoded_payloads_are_refused() -> None:
    data = _load(COOKBOOK / "rfc7797" / "hmac-sha2_b64_false.json")
    keys = JwksKeySet.parse({"keys": [data["input"]["key"]]}, ["HS256"])
    compact: str = data["output"]["compact"]
    head, _, signature = compact.split(".")
    for token in (compact, f"{head}..{signature}"):
        with pytest.raises(JwtError) as caught:
            verify_jws(token, keys, ["HS256"])
        assert caught.value.reason == "malformed"


# --------------------------------------------------------------- PyJWT test keys

PYJWT_PAIRS = [
    ("jwk_rsa_key.json", "jwk_rsa_pub.json", "RS256"),
    ("jwk_rsa_key.json", "jwk_rsa_pub.json", "PS512"),
    ("jwk_ec_key_P-256.json", "jwk_ec_pub_P-256.json", "ES256"),
    ("jwk_ec_key_P-384.json", "jwk_ec_pub_P-384.json", "ES384"),
    ("jwk_ec_key_P-521.json", "jwk_ec_pub_P-521.json", "ES512"),
    ("jwk_ec_key_secp256k1.json", "jwk_ec_pub_secp256k1.json", "ES256K"),
    ("jwk_okp_key_Ed25519.json", "jwk_okp_pub_Ed25519.json", "EdDSA"),
    ("jwk_okp_key_Ed448.json", "jwk_okp_pub_Ed448.json", "EdDSA"),
    ("jwk_hmac.json", "jwk_hmac.json", "HS256"),
]


@pytest.mark.parametrize(("private_file", "public_file", "alg"), PYJWT_PAIRS)
def test_pyjwt_keys_sign_and_verify(private_file: str, public_file: str, alg: str) -> None:
    private = _load(PYJWT_KEYS / private_file)
    public = _load(PYJWT_KEYS / public_file)
    signing_key = jwt.PyJWK(private, algorithm=alg).key
    token = sign(claims(), signing_key, alg, kid=public.get("kid"))
    auth = JwtAuthenticator(provider([public], algorithms=(alg,)))
    result = auth.authenticate(token, NOW)
    assert isinstance(result, VerifiedToken), result
    assert result.claims["iss"] == ISSUER

    # The private JWK itself is not a verification key.
    if private_file != public_file:
        with pytest.raises(JwksError, match="private key material"):
            JwksKeySet.parse({"keys": [private]}, [alg])


def test_pyjwt_key_set_with_an_encryption_key_keeps_only_the_signing_key() -> None:
    document = _load(PYJWT_KEYS / "jwk_keyset_with_unknown_alg.json")
    keys = JwksKeySet.parse(document, ALL_ALGORITHMS)
    assert len(keys) == 1
    assert keys.kids == {document["keys"][0]["kid"]}
    assert len(keys.skipped) == 1
    assert "use is 'enc'" in keys.skipped[0]


def test_pyjwt_key_set_with_only_an_encryption_key_is_refused() -> None:
    document = _load(PYJWT_KEYS / "jwk_keyset_only_unknown_alg.json")
    with pytest.raises(JwksError, match="no usable signing key"):
        JwksKeySet.parse(document, ALL_ALGORITHMS)
    empty = PYJWT_KEYS / "jwk_empty.json"
    if empty.exists():
        with pytest.raises(JwksError, match="not valid JSON"):
            JwksKeySet.parse(empty.read_bytes(), ALL_ALGORITHMS)


def test_pyjwt_pem_keys() -> None:
    """The PEM/SSH test keys: the 2048-bit RSA, P-256 and both Ed25519 pairs verify,
    across the two Ed25519 pairs they do not; the 1024-bit PKCS#1 key and the
    secp192r1 key are refused."""
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_pem_public_key,
        load_ssh_public_key,
    )

    pairs = [
        ("testkey_rsa.priv", "testkey_rsa.pub", "RS384"),
        ("testkey_ed25519", "testkey_ed25519.pub", "EdDSA"),
        ("testkey_ed25519.pem", "testkey_ed25519.pub.pem", "EdDSA"),
        ("testkey_ec.priv", "testkey_ec.pub", "ES256"),
    ]
    keys: dict[str, dict[str, Any]] = {}
    tokens: dict[str, str] = {}
    for private_file, public_file, alg in pairs:
        private_path, public_path = PYJWT_KEYS / private_file, PYJWT_KEYS / public_file
        if not private_path.exists():
            pytest.skip("PyJWT test keys not available")
        private = load_pem_private_key(private_path.read_bytes(), password=None)
        raw_public = public_path.read_bytes()
        public = (
            load_ssh_public_key(raw_public)
            if raw_public.startswith((b"ssh-", b"ecdsa-"))
            else load_pem_public_key(raw_public)
        )
        algorithm = jwt.get_algorithm_by_name(alg)
        public_jwk = algorithm.to_jwk(public, as_dict=True)
        public_jwk["kid"] = public_file
        token = sign(claims(), private, alg, kid=public_file)
        auth = JwtAuthenticator(provider([public_jwk], algorithms=(alg,)))
        assert isinstance(auth.authenticate(token, NOW), VerifiedToken), public_file
        keys[public_file] = public_jwk
        tokens[private_file] = token

    other = dict(keys["testkey_ed25519.pub.pem"], kid="testkey_ed25519.pub")
    crossed = JwtAuthenticator(provider([other], algorithms=("EdDSA",)))
    result = crossed.authenticate(tokens["testkey_ed25519"], NOW)
    assert isinstance(result, JwtError) and result.reason == "bad_signature"

    small = load_pem_public_key((PYJWT_KEYS / "testkey_pkcs1.pub.pem").read_bytes())
    small_jwk = jwt.get_algorithm_by_name("RS256").to_jwk(small, as_dict=True)
    with pytest.raises(JwksError, match="1024 bits"):
        JwksKeySet.parse({"keys": [small_jwk]}, ["RS256"])

    p192 = load_pem_private_key((PYJWT_KEYS / "testkey_ec_secp192r1.priv").read_bytes(), None)
    assert isinstance(p192, ec.EllipticCurvePrivateKey)
    numbers = p192.public_key().public_numbers()
    p192_jwk = {
        "kty": "EC",
        "crv": "P-192",
        "x": jwt.utils.base64url_encode(numbers.x.to_bytes(24, "big")).decode(),
        "y": jwt.utils.base64url_encode(numbers.y.to_bytes(24, "big")).decode(),
    }
    with pytest.raises(JwksError, match="unsupported EC curve"):
        JwksKeySet.parse({"keys": [p192_jwk]}, ALL_ALGORITHMS)
