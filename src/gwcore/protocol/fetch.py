"""A sans-IO HTTP/1.1 GET, for fetching a JWKS document (the ``FetchJwks`` action).

:class:`HttpGet` does everything about the fetch that is not I/O: it checks the URL,
says where to connect (``host``, ``port``, ``tls``), produces the request bytes and
turns the response bytes into an outcome. An adapter only connects (TLS with SNI =
``host`` when ``tls``), writes :attr:`HttpGet.request`, feeds what it reads to
:meth:`HttpGet.receive` (``b""`` at EOF) until an outcome comes back, bounds the whole
thing by a timeout, and maps its own errors with :func:`failure` /
:func:`timed_out`::

    get = HttpGet(url, max_bytes)            # ValueError: a bad URL
    sock = connect(get.host, get.port, tls=get.tls)
    sock.sendall(get.request)
    while (outcome := get.receive(sock.recv(65536))) is None:
        pass

The outcome is a :class:`FetchResponse` (any status, with its whole body) or a
:class:`FetchFailure` (a malformed response, a body over ``max_bytes``, EOF before the
end). Built on h11's public API; no h11 type leaves this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, urlsplit

import h11

USER_AGENT: Final = "gwcore"
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
MAX_HEAD_BYTES: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class FetchResponse:
    """A complete response: its status and body (the caller judges the status)."""

    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class FetchFailure:
    """No usable response, and why (for a log line or ``JwksFetchFailed.reason``)."""

    reason: str


FetchOutcome = FetchResponse | FetchFailure


class HttpGet:
    """One ``GET url`` over one connection (``Connection: close``).

    Raises ``ValueError`` for a URL it cannot fetch: a scheme other than ``http`` or
    ``https``, no host, a bad port, credentials, or characters that are not allowed
    unencoded (spaces, controls, non-ASCII).
    """

    def __init__(self, url: str, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.url = url
        self.max_bytes = max_bytes
        parts = _split(url)
        self.tls = parts.scheme == "https"
        self.host: str = parts.hostname or ""
        port = parts.port  # ValueError when out of range or not a number
        self.port: int = port if port is not None else DEFAULT_PORTS[parts.scheme]
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        name = f"[{self.host}]" if ":" in self.host else self.host
        authority = (
            name if port is None or port == DEFAULT_PORTS[parts.scheme] else f"{name}:{port}"
        )
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        head = h11.Request(
            method="GET",
            target=self.target,
            headers=[
                ("Host", authority),
                ("Accept", "application/json"),
                ("User-Agent", USER_AGENT),
                ("Connection", "close"),
            ],
        )
        self.request: bytes = (self._h11.send(head) or b"") + (
            self._h11.send(h11.EndOfMessage()) or b""
        )
        self._status: int | None = None
        self._body = bytearray()
        self._start = bytearray()
        self.outcome: FetchOutcome | None = None

    def receive(self, data: bytes | bytearray) -> FetchOutcome | None:
        """Feed bytes read from the connection (``b""``: the server closed it). Returns
        the outcome once there is one (and from then on), ``None`` while more is needed."""
        if self.outcome is not None:
            return self.outcome
        eof = not data
        if len(self._start) < 5:  # fail fast when the peer does not speak HTTP at all
            self._start += data[: 5 - len(self._start)]
            if not b"HTTP/".startswith(bytes(self._start)):
                self.outcome = FetchFailure(
                    f"malformed response: not HTTP ({bytes(self._start)!r})"
                )
                return self.outcome
        try:
            self._h11.receive_data(bytes(data))
            while self.outcome is None:
                event = self._h11.next_event()
                if event is h11.NEED_DATA:
                    if eof:  # h11 only asks for more after EOF in a state it cannot end
                        self.outcome = FetchFailure(self._cut_short())
                    break
                self._event(event)
        except h11.RemoteProtocolError as exc:
            reason = self._cut_short() if eof else f"malformed response: {exc}"
            self.outcome = FetchFailure(reason)
        return self.outcome

    def _event(self, event: object) -> None:
        if isinstance(event, h11.InformationalResponse):
            return  # 1xx: the real response follows
        if isinstance(event, h11.Response):
            self._status = event.status_code
            for name, value in event.headers:
                if name == b"content-length" and int(value) > self.max_bytes:
                    self.outcome = FetchFailure(self._too_long(f"Content-Length {int(value)}"))
        elif isinstance(event, h11.Data):
            self._body += event.data
            if len(self._body) > self.max_bytes:
                self.outcome = FetchFailure(self._too_long("the body"))
        elif isinstance(event, h11.EndOfMessage):
            assert self._status is not None
            self.outcome = FetchResponse(self._status, bytes(self._body))
        elif isinstance(event, h11.ConnectionClosed):
            self.outcome = FetchFailure(self._cut_short())

    def _too_long(self, what: str) -> str:
        return f"response body too long: {what} is over max_bytes ({self.max_bytes})"

    def _cut_short(self) -> str:
        if self._status is None:
            return "connection closed before the end of the response head"
        return f"connection closed before the end of the response body ({len(self._body)} bytes)"


def failure(exc: BaseException) -> FetchFailure:
    """An adapter's connect/TLS/read error as a failure: its type and message. A cause
    names the real problem (trio wraps ``ssl`` errors); a group of causes (every address
    of a host refused) is listed after the summary."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        causes = "; ".join(_describe(e) for e in cause.exceptions)
        return FetchFailure(f"{_describe(exc)} ({causes})")
    return FetchFailure(_describe(cause or exc))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def timed_out(timeout: float) -> FetchFailure:
    """The fetch did not finish within ``timeout`` seconds."""
    return FetchFailure(f"timed out: no complete response within {timeout:g} s")


def _split(url: str) -> SplitResult:
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise ValueError(f"URL has characters that must be percent-encoded: {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"URL scheme must be http or https: {url!r}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"URL must not carry credentials: {url!r}")
    return parts
