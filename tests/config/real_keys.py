"""Real public JWKs for config tests: the loader checks key sets with the same parser
the gateway uses at runtime, so placeholder key material no longer loads."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

RSA_JWK: dict[str, Any] = dict(
    RSAAlgorithm.to_jwk(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(), as_dict=True
    )
)
EC_JWK: dict[str, Any] = dict(
    ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
)
OKP_JWK: dict[str, Any] = dict(
    OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate().public_key(), as_dict=True)
)


def flow(document: Any) -> str:
    """``document`` as YAML flow text (JSON is valid YAML)."""
    return json.dumps(document)
