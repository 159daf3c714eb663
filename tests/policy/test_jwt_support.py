"""Shared helpers for the JWT tests: keys made with cryptography, JWKS documents,
token signing (well-formed through PyJWT, deliberately broken ones by hand) and
provider configs. Imported by the other ``test_jwt_*`` modules (rootdir-relative, like
``tests/routing/strategies.py``); it holds no tests itself.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from gwcore.config import model as m
from gwcore.policy.jwt import JwtAuthenticator

# shared/ sits beside the repository (in CI too: a copy of it next to the clone).
VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"

NOW = 1_700_000_000.0
ISSUER = "https://issuer.example"
AUDIENCE = "api"
JWKS_URI = "https://issuer.example/.well-known/jwks.json"
ALL_ALGORITHMS = (
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "ES256K",
    "EdDSA",
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@functools.cache
def rsa_key(index: int = 0, bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def ec_key(curve: str = "P-256", index: int = 0) -> ec.EllipticCurvePrivateKey:
    curves: dict[str, ec.EllipticCurve] = {
        "P-256": ec.SECP256R1(),
        "P-384": ec.SECP384R1(),
        "P-521": ec.SECP521R1(),
        "secp256k1": ec.SECP256K1(),
    }
    return ec.generate_private_key(curves[curve])


@functools.cache
def ed25519_key(index: int = 0) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(
    key: PrivateKeyTypes | PublicKeyTypes, kid: str | None, **extra: Any
) -> dict[str, Any]:
    """The public JWK of ``key`` (through PyJWT's own JWK export), plus ``extra``."""
    public = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(public, rsa.RSAPublicKey):
        data = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        data = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        data = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    else:
        raise TypeError(f"no JWK for {type(public).__name__}")
    if kid is not None:
        data["kid"] = kid
    data.update(extra)
    return data


def oct_jwk(secret: bytes, kid: str | None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"kty": "oct", "k": b64url(secret)}
    if kid is not None:
        data["kid"] = kid
    data.update(extra)
    return data


def jwks(*keys: Mapping[str, Any]) -> dict[str, Any]:
    return {"keys": [dict(k) for k in keys]}


def claims(**overrides: Any) -> dict[str, Any]:
    """Claims that pass the default provider's checks at ``NOW``; ``None`` removes one."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": NOW - 10,
        "exp": NOW + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(
    payload: Mapping[str, Any],
    key: Any,
    alg: str,
    kid: str | None = None,
    headers: Mapping[str, Any] | None = None,
) -> str:
    """A well-formed token signed by PyJWT (its JWS layer: the claims are not checked,
    so tests can sign odd ones)."""
    extra = dict(headers or {})
    if kid is not None:
        extra["kid"] = kid
    body = json.dumps(dict(payload), separators=(",", ":")).encode()
    return jwt.PyJWS().encode(body, key, algorithm=alg, headers=extra or None)


def craft(
    header: Mapping[str, Any] | bytes,
    payload: Mapping[str, Any] | bytes,
    signer: Any = None,
    alg: str | None = None,
) -> str:
    """A token built by hand: raw JSON bytes allowed; ``signer`` is an HMAC secret
    (bytes) or a private key used with ``alg`` through PyJWT's algorithm object; no
    signer gives an empty signature."""
    head = header if isinstance(header, bytes) else json.dumps(dict(header)).encode()
    body = payload if isinstance(payload, bytes) else json.dumps(dict(payload)).encode()
    signing_input = f"{b64url(head)}.{b64url(body)}".encode()
    if signer is None:
        signature = b""
    elif isinstance(signer, bytes):
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
        signature = hmac.new(signer, signing_input, digest[alg or "HS256"]).digest()
    else:
        assert alg is not None
        signature = jwt.get_algorithm_by_name(alg).sign(signing_input, signer)
    return f"{signing_input.decode()}.{b64url(signature)}"


def provider(
    keys: Sequence[Mapping[str, Any]] = (),
    *,
    remote: bool = False,
    name: str = "idp",
    jwks_options: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> m.JwtProvider:
    """A provider with an inline JWKS of ``keys`` (or a remote one at ``JWKS_URI``)."""
    if remote:
        source = m.JwksSource("remote", uri=JWKS_URI, **dict(jwks_options or {}))
    else:
        source = m.JwksSource("inline", document=jwks(*keys), **dict(jwks_options or {}))
    fields: dict[str, Any] = {
        "audiences": (AUDIENCE,),
        "algorithms": ("RS256", "ES256"),
    }
    fields.update(overrides)
    return m.JwtProvider(name, ISSUER, source, **fields)


def authenticator(keys: Sequence[Mapping[str, Any]] = (), **overrides: Any) -> JwtAuthenticator:
    return JwtAuthenticator(provider(keys, **overrides))


def jwks_body(*keys: Mapping[str, Any]) -> bytes:
    return json.dumps(jwks(*keys)).encode()
