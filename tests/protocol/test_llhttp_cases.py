"""llhttp's own request test cases replayed against the server codec.

Each case in llhttp's ``test/request/*.md`` is an input (```http block) and the parser
callbacks llhttp produces (```log block). Contract checked here:

* every case llhttp's *strict* mode rejects, we reject too (a ProtocolError, or the
  offending bytes are never parsed because the connection is closing);
* every case llhttp accepts is either accepted by us with the same method, target,
  headers and body, or rejected for a reason listed in ``STRICTER`` below;
* every case that only a lenient llhttp flag accepts is rejected by us (we have no
  lenient modes), unless listed in ``LENIENT_ACCEPTED``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gwcore.protocol import (
    Data,
    EndOfMessage,
    Http1ServerCodec,
    ProtocolError,
    RequestHead,
)

# shared/ sits beside the repository (in CI too: a copy of it next to the clone).
ROOT = (
    Path(__file__).resolve().parents[3] / "shared" / "vectors" / "llhttp-tests" / "test" / "request"
)
FILES = [
    "content-length.md",
    "transfer-encoding.md",
    "invalid.md",
    "connection.md",
    "pipelining.md",
    "method.md",
    "uri.md",
    "sample.md",
    "lenient-headers.md",
    "lenient-header-value-relaxed.md",
    "lenient-version.md",
    "finish.md",
]
# llhttp "errors" that are really hand-offs: the caller takes over the connection.
PAUSE_CODES = {"21", "22", "23"}  # paused, CONNECT/Upgrade, PRI (HTTP/2 preface)


# --- reading llhttp's markdown ------------------------------------------------------


@dataclass
class Expected:
    """One message as llhttp reports it."""

    method: str = ""
    url: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False


@dataclass
class Case:
    file: str
    title: str
    kind: str  # "request", "request-lenient-...", "request-finish"
    meta: dict[str, object]
    data: bytes
    messages: list[Expected]
    error: str | None  # llhttp's error reason, if it rejects (pauses excluded)

    @property
    def key(self) -> str:
        return f"{self.file}: {self.title}"


_ESCAPE_RE = re.compile(rb"\\(x[0-9A-Fa-f]{2}|[0-7]{1,3}|[rntf])")


def _unescape(raw: bytes) -> bytes:
    def one(match: re.Match[bytes]) -> bytes:
        code = match[1]
        simple = {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"f": b"\f"}
        if code in simple:
            return simple[code]
        if code[:1] == b"x":
            return bytes([int(code[1:], 16)])
        return bytes([int(code, 8) & 0xFF])

    return _ESCAPE_RE.sub(one, raw)


def decode_http_block(text: str) -> bytes:
    """llhttp's md-test convention (see SOURCE.md)."""
    if text.endswith("\n"):
        text = text[:-1]
    text = text.replace("\\\n", "")
    return _unescape(text.replace("\n", "\r\n").encode("utf-8"))


_SPAN_RE = re.compile(r"^off=\d+ len=\d+ span\[(\w+)\]=(.*)$")


def _span_value(raw: str) -> bytes:
    if raw == "cr":
        return b"\r"
    if raw == "lf":
        return b"\n"
    assert raw.startswith('"') and raw.endswith('"'), raw
    return _unescape(raw[1:-1].encode("utf-8"))


def parse_log(log: str) -> tuple[list[Expected], str | None]:
    messages: list[Expected] = []
    current = Expected()
    in_body = False
    last_span = ""
    for line in log.splitlines():
        if line.endswith("message begin"):
            current = Expected()
            messages.append(current)
            in_body = False
            last_span = ""
        elif line.split(" ", 1)[-1].startswith("headers complete"):
            in_body = True
        elif line.endswith("message complete"):
            current.complete = True
        elif line.startswith("off=NULL finish=") and not line.endswith("=0"):
            return messages, "unsafe to finish (EOF inside a message)"
        elif " error code=" in line:
            code = line.split("error code=")[1].split()[0]
            if code in PAUSE_CODES:
                return messages, None
            return messages, line.split("reason=", 1)[1].strip('"')
        elif match := _SPAN_RE.match(line):
            kind, value = match[1], _span_value(match[2])
            if kind == "method":
                current.method += value.decode("latin-1")
            elif kind == "url":
                current.url += value.decode("latin-1")
            elif kind == "header_field" and not in_body:
                if last_span == "header_field":
                    name, _ = current.headers[-1]
                    current.headers[-1] = (name + value.decode("latin-1"), "")
                else:
                    current.headers.append((value.decode("latin-1"), ""))
            elif kind == "header_value" and not in_body:
                name, old = current.headers[-1]
                current.headers[-1] = (name, old + value.decode("latin-1"))
            elif kind == "body":
                current.body += value
            last_span = kind
    return messages, None


_CASE_RE = re.compile(
    r"<!--\s*meta=(\{.*?\})\s*-->\s*```http\n(.*?)```[^`]*```log\n(.*?)```", re.DOTALL
)


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for name in FILES:
        path = ROOT / name
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        for match in _CASE_RE.finditer(text):
            headings = re.findall(r"^#+ (.*)$", text[: match.start()], re.MULTILINE)
            meta = json.loads(match[1])
            if "${" in match[2] or "pause" in meta or meta.get("skipBody"):
                continue
            messages, error = parse_log(match[3])
            cases.append(
                Case(
                    file=name,
                    title=headings[-1] if headings else "?",
                    kind=str(meta["type"]),
                    meta=meta,
                    data=decode_http_block(match[2]),
                    messages=messages,
                    error=error,
                )
            )
    return cases


CASES = load_cases()
pytestmark = pytest.mark.skipif(not CASES, reason="llhttp test vectors not available")


# --- running a case through the codec -----------------------------------------------


@dataclass
class Outcome:
    requests: list[tuple[RequestHead, bytes]]  # complete requests, with their body
    error: ProtocolError | None
    closed_with_unread_bytes: bool  # "Connection: close" and more bytes: never parsed
    waiting: bool  # no verdict yet: the input ends inside a message

    @property
    def rejected(self) -> bool:
        return self.error is not None or self.closed_with_unread_bytes


def run(data: bytes, finish: bool = False) -> Outcome:
    """Feed ``data`` at once; answer each complete request with 200 and continue."""
    codec = Http1ServerCodec()
    requests: list[tuple[RequestHead, bytes]] = []
    pending = codec.receive(data)
    if finish:
        pending += codec.receive(b"")
    head: RequestHead | None = None
    body = b""
    while True:
        for message in pending:
            if isinstance(message, ProtocolError):
                return Outcome(requests, message, False, False)
            if isinstance(message, RequestHead):
                head, body = message, b""
            elif isinstance(message, Data):
                body += message.data
            elif isinstance(message, EndOfMessage):
                assert head is not None
                requests.append((head, body))
                head = None
        if not codec.request_complete:
            waiting = codec.buffered_bytes > 0 or (head is not None and not finish)
            return Outcome(requests, None, False, waiting and not finish)
        unread = codec.buffered_bytes > 0
        keep_alive = codec.keep_alive
        codec.send_local_response(200)
        pending = codec.response_done()
        if not keep_alive:
            return Outcome(requests, None, unread, False)


INJECTED_HOST = ("host", "llhttp.test")
_REQUEST_LINE_RE = re.compile(rb"^([A-Z][A-Z-]* \S+ HTTP/1\.1\r\n)", re.MULTILINE)


def _inject_host(data: bytes) -> bytes:
    """Add ``Host: llhttp.test`` to every HTTP/1.1 head that has none."""

    def add(match: re.Match[bytes]) -> bytes:
        rest = data[match.end() :]
        head = rest[: rest.find(b"\r\n\r\n") + 2]
        if re.search(rb"(?im)^host:", head):
            return match[1]
        return match[1] + b"Host: llhttp.test\r\n"

    return _REQUEST_LINE_RE.sub(add, data)


def verdict(case: Case) -> tuple[Outcome, str]:
    """Our outcome, plus how it was obtained ("", "completed", "injected-host").

    llhttp rejects some heads before they end; we judge a head when it is complete.
    When the input stops mid-head we complete it (CRLF CRLF, then EOF) to get our
    verdict. llhttp leaves a missing Host to the application; we refuse it (RFC 9112
    §3.2), so such cases are replayed with a Host header to compare everything else.
    """
    finish = case.kind == "request-finish"
    how = ""
    outcome = run(case.data, finish)
    data = case.data
    if outcome.waiting:
        how, data = "completed", case.data + b"\r\n\r\n"
        outcome = run(data, finish)
        if outcome.waiting:
            outcome = run(data, finish=True)
    if outcome.error is not None and outcome.error.reason == "missing Host header":
        injected = _inject_host(data)
        how, outcome = (how + ", " if how else "") + "injected-host", run(injected, finish)
    return outcome, how


# --- where we are stricter than llhttp -----------------------------------------------

CONNECT = "CONNECT gets 501: the gateway is not a forward proxy (no tunnels)"
METHOD = "methods outside DEFAULT_METHODS get 501 (RFC 9110 §9.1): SSDP/ICE verbs are not HTTP APIs"
PROTOCOL = "only HTTP/1.0 and HTTP/1.1 request lines are accepted (no RTSP/, ICE/, HTTP/0.9)"
TARGET = (
    "request target must be origin-form, http(s) absolute-form without userinfo, or '*': "
    "no fragment, no raw '|', '\"', '{', '}', non-ASCII (routing must see one spelling)"
)
UPGRADE = (
    "protocol upgrades are not implemented (we never answer 101): the bytes after an Upgrade "
    "request are parsed as the next HTTP request, and these are not HTTP"
)
TE_LIST = "Transfer-Encoding must be exactly 'chunked'; other codings are 501"

STRICTER: dict[str, str] = {
    "transfer-encoding.md: POST with `chunked` as last transfer-encoding": TE_LIST,
    "transfer-encoding.md: POST with `chunked` as last transfer-encoding (multiple headers)": (
        TE_LIST
    ),
    "method.md: CONNECT request": CONNECT,
    "method.md: CONNECT request with CAPS": CONNECT,
    "method.md: CONNECT with body": CONNECT,
    "uri.md: Underscore in hostname": CONNECT,
    "method.md: M-SEARCH request": METHOD,
    "method.md: SOURCE request": METHOD,
    "method.md: SOURCE request with ICE": PROTOCOL,
    "method.md: OPTIONS request with RTSP": PROTOCOL,
    "method.md: ANNOUNCE request with RTSP": PROTOCOL,
    "method.md: PRI request HTTP2": "the HTTP/2 preface on an HTTP/1 port is refused (505/501)",
    "sample.md: No HTTP version": PROTOCOL,
    "uri.md: Quotes in URI": TARGET,
    "uri.md: Query URL with vertical bar character": TARGET,
    "uri.md: Fragment in URI": TARGET,
    "uri.md: `host:port` and basic auth": TARGET,
    "connection.md: Upgrade GET request": UPGRADE,
    "connection.md: Upgrade POST request": UPGRADE,
}
"""Cases llhttp's strict mode accepts and we refuse, with why."""

LENIENT_ACCEPTED: dict[str, str] = {}
"""Cases only a lenient llhttp flag accepts and we accept too, with why it is safe."""


def _their_headers(expected: Expected) -> list[tuple[str, str]]:
    return [(name.lower(), value.strip(" \t")) for name, value in expected.headers]


def _same_headers(ours: list[tuple[str, str]], theirs: list[tuple[str, str]]) -> bool:
    """Our values are latin-1 (one char per byte); llhttp's log shows the bytes as
    UTF-8 text, except a lone non-UTF-8 byte, which it shows as that code point."""

    def same(our: str, their: str) -> bool:
        return our == their or our == their.encode("latin-1").decode("utf-8", "replace")

    return len(ours) == len(theirs) and all(
        a[0] == b[0] and same(a[1], b[1]) for a, b in zip(ours, theirs, strict=True)
    )


def classify(case: Case) -> str:
    outcome, how = verdict(case)
    suffix = f" ({how})" if how else ""
    strict = case.kind in ("request", "request-finish")
    if case.error is not None or not strict:
        if outcome.rejected:
            return "both reject" + suffix
        if case.key in LENIENT_ACCEPTED:
            return "accepted like lenient llhttp (listed)"
        return "LLHTTP REJECTS, WE ACCEPT"
    if outcome.rejected:
        return "we are stricter (listed)" if case.key in STRICTER else "STRICTER, UNLISTED"
    complete = [m for m in case.messages if m.complete]
    # Completing a cut-off input may complete one more request than llhttp saw.
    extra = len(outcome.requests) - len(complete)
    assert extra == 0 or (extra == 1 and "completed" in how), case.key
    for (head, body), expected in zip(outcome.requests, complete, strict=False):
        assert head.method == expected.method, case.key
        assert head.target == expected.url, case.key
        ours = [h for h in head.headers if not ("injected-host" in how and h == INJECTED_HOST)]
        assert _same_headers(ours, _their_headers(expected)), (case.key, ours)
        assert body == expected.body, case.key
    return "both accept, same message" + suffix


def test_llhttp_request_cases_are_rejected_or_agree() -> None:
    counts: Counter[str] = Counter()
    bad: list[str] = []
    for case in CASES:
        outcome = classify(case)
        counts[outcome] += 1
        if outcome.isupper() or "UNLISTED" in outcome or "WE ACCEPT" in outcome:
            bad.append(f"{outcome}: {case.key}: {verdict(case)}")
    print(f"\n{len(CASES)} llhttp request cases:")
    for outcome, count in sorted(counts.items()):
        print(f"  {count:3d}  {outcome}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("key", sorted(STRICTER))
def test_every_stricter_case_exists_and_is_refused(key: str) -> None:
    (case,) = [c for c in CASES if c.key == key]
    outcome, _ = verdict(case)
    assert case.error is None, "llhttp rejects it too: not a 'stricter' case"
    assert outcome.rejected, STRICTER[key]


def test_cases_refused_for_their_fragment_are_still_refused_without_it() -> None:
    """Some transfer-encoding cases use a target with ``#hey``, which we refuse first;
    with the fragment removed they must still be refused for their framing."""
    checked = 0
    for case in CASES:
        if case.error is None or b"#hey " not in case.data:
            continue
        outcome = run(case.data.replace(b"#hey ", b" "))
        assert outcome.rejected, case.key
        assert outcome.error is not None and "target" not in outcome.error.reason
        checked += 1
    assert checked >= 4
