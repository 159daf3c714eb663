"""Nothing a client or an upstream sends can make ``Gateway.handle`` raise."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playbook import Playbook

from gwcore.gateway import (
    ConnectionLost,
    EofReceived,
    OpenUpstream,
    UpstreamConnected,
    UpstreamConnectFailed,
    WritesBlocked,
    WritesDrained,
)
from gwcore.protocol import looks_like_h2_preface

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ROUTES: dict[str, Any] = {
    "clusters": {
        "h2": {"endpoints": ["127.0.0.1:9301"], "protocol": "http2"},
        "c": {"endpoints": ["127.0.0.1:9001"]},
    },
    "listeners": [
        {"name": "public", "address": "127.0.0.1:8080", "limits": {"max_body_bytes": 2000}}
    ],
    "routes": [
        {"match": {"path": "/d"}, "direct_response": {"status": 200, "body": "x"}},
        {"match": {"prefix": "/h2"}, "route": {"cluster": "h2", "timeout": "1s"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "c", "timeout": "1s"}},
    ],
}
VALID = [
    b"GET /d HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /h2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz",
    PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00",
]
RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"\x00\x00\x00\x04\x00\x00\x00\x00\x00",
]


def _mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in flips:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


chunks = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(VALID),
    st.builds(
        _mutate,
        st.sampled_from(VALID),
        st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    ),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("client"), chunks),
        st.tuples(
            st.just("upstream"), st.one_of(st.sampled_from(RESPONSES), st.binary(max_size=64))
        ),
        st.tuples(st.just("connect"), st.booleans()),
        st.tuples(st.just("eof"), st.sampled_from(["client", "upstream"])),
        st.tuples(st.just("lost"), st.sampled_from(["client", "upstream"])),
        st.tuples(st.just("writes"), st.booleans()),
        st.tuples(st.just("time"), st.floats(0, 90)),
    ),
    max_size=25,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_any_sequence_of_inputs_is_handled_without_raising(script: list[tuple[str, Any]]) -> None:
    book = Playbook.from_config(ROUTES)
    client = book.connect()
    upstreams: list[int] = []
    clock = 0.0
    for kind, value in script:
        if kind == "client":
            actions = book.send(client, value)
        elif kind == "upstream" and upstreams:
            actions = book.send(upstreams[-1], value)
        elif kind == "connect" and upstreams:
            conn = upstreams[-1]
            actions = book(UpstreamConnected(conn) if value else UpstreamConnectFailed(conn, "x"))
        elif kind == "eof":
            target = client if value == "client" or not upstreams else upstreams[-1]
            actions = book(EofReceived(target))
        elif kind == "lost":
            target = client if value == "client" or not upstreams else upstreams[-1]
            actions = book(ConnectionLost(target, "reset"))
        elif kind == "writes":
            actions = book(WritesBlocked(client) if value else WritesDrained(client))
        elif kind == "time":
            clock += value
            actions = book.advance_to(clock)
        else:
            continue
        upstreams += [a.conn for a in actions if isinstance(a, OpenUpstream)]


def test_preface_detection_is_incremental() -> None:
    assert looks_like_h2_preface(PREFACE[:5]) is None
    assert looks_like_h2_preface(b"GET / HTTP/1.1\r\n") is False
