"""A stand-in identity provider for tests: key pairs that mint tokens, and a real JWKS
endpoint on 127.0.0.1 (plain or TLS) that counts its fetches and can rotate keys.
Shared by tests/e2e and tests/asgi (``pythonpath`` in pyproject puts this folder on
``sys.path``)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.example.test"
REMOTE_ISSUER = "https://remote-idp.example.test"


@dataclass
class Signer:
    """A key pair with a kid, minting tokens the way an identity provider would."""

    kid: str
    alg: str
    private: Any = field(repr=False)

    @classmethod
    def rsa(cls, kid: str) -> Signer:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> Signer:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        key = dict(algorithm.to_jwk(self.private.public_key(), as_dict=True))
        key.update(kid=self.kid, use="sig", alg=self.alg)
        return key

    def token(self, issuer: str = ISSUER, lifetime: float = 300, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": issuer, "aud": "api", "iat": now, "exp": now + int(lifetime), **claims}
        return jwt.encode(payload, self.private, algorithm=self.alg, headers={"kid": self.kid})


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class JwksServer:
    """A real JWKS endpoint on 127.0.0.1 (plain, or TLS with ``ssl_context``) that counts
    its fetches; keys can rotate and answers can be slowed down."""

    def __init__(self, ssl_context: Any = None) -> None:
        self.keys: list[dict[str, Any]] = []
        self.delay = 0.0
        self._fetches = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._lock:
                    outer._fetches += 1
                time.sleep(outer.delay)
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.tls = ssl_context is not None
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.daemon = True
        self.thread.start()

    @property
    def fetches(self) -> int:
        with self._lock:
            return self._fetches

    def url(self, host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.server.server_address[1]}/jwks.json"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """Accepts connections (the kernel's backlog) and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/jwks.json"

    def stop(self) -> None:
        self.sock.close()
