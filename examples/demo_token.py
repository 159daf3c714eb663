"""Mint a token for the demo gateway (``make run``), signed with the committed demo
key (``examples/keys/``; never use it for anything real).

    python examples/demo_token.py                       # sub=demo-user, role=admin
    python examples/demo_token.py --scope admin:write --role user --minutes 5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jwt

KEYS = Path(__file__).resolve().parent / "keys"
ISSUER = "https://idp.demo.gwcore.test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sub", default="demo-user")
    parser.add_argument("--role", default="admin")
    parser.add_argument("--scope", default="orders:read", help="space-separated scopes")
    parser.add_argument("--minutes", type=float, default=60.0, help="lifetime")
    args = parser.parse_args()
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "demo-api",
        "sub": args.sub,
        "role": args.role,
        "scope": args.scope,
        "iat": now,
        "exp": now + int(args.minutes * 60),
    }
    key = (KEYS / "demo-signing-key.pem").read_bytes()
    print(jwt.encode(claims, key, algorithm="ES256", headers={"kid": "demo-1"}))


if __name__ == "__main__":
    main()
