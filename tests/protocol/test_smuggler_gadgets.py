"""Every Transfer-Encoding gadget of defparam/smuggler, wrapped as the tool sends it.

The gateway must either refuse the request (4xx/501) or understand it with framing
that cannot be read two ways, and then forward only canonical framing: no
Transfer-Encoding unless it is exactly ``chunked`` without a Content-Length.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from gwcore.protocol import (
    Data,
    EndOfMessage,
    FixedLength,
    Http1ClientCodec,
    Http1ServerCodec,
    NoBody,
    ProtocolError,
    RequestHead,
    UnknownLength,
)

# shared/ sits beside the repository (in CI too: a copy of it next to the clone).
VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"
CORPUS = VECTORS / "defparam-smuggler" / "smuggler-te-gadgets.json"
SETS = json.loads(CORPUS.read_text()) if CORPUS.exists() else {"sets": {}}
GADGETS = [
    (set_name, name, bytes.fromhex(entry["hex"]))
    for set_name, entries in SETS["sets"].items()
    for name, entry in entries.items()
]

pytestmark = pytest.mark.skipif(not GADGETS, reason="smuggler corpus not available")


def wrap(gadget: bytes) -> bytes:
    """The request template smuggler uses around each gadget."""
    return b"POST / HTTP/1.1\r\n" + gadget + b"\r\nHost: x\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"


def reserialise(head: RequestHead, body: bytes) -> bytes:
    client = Http1ClientCodec()
    return client.send_request(head) + client.send_data(body) + client.send_end()


def forwarded_head_lines(wire: bytes) -> list[bytes]:
    head = wire.split(b"\r\n\r\n", 1)[0]
    return [line.lower() for line in head.split(b"\r\n")[1:]]


def classify(gadget: bytes) -> str:
    codec = Http1ServerCodec()
    messages = codec.receive(wrap(gadget))
    if isinstance(messages[-1], ProtocolError):
        status = messages[-1].status
        assert 400 <= status < 500 or status == 501, messages[-1]
        return f"rejected-{status}"
    head = messages[0]
    assert isinstance(head, RequestHead)
    assert isinstance(messages[-1], EndOfMessage), messages
    body = b"".join(m.data for m in messages if isinstance(m, Data))
    wire = reserialise(head, body)
    lines = forwarded_head_lines(wire)
    te = [line for line in lines if line.startswith(b"transfer-encoding")]
    cl = [line for line in lines if line.startswith(b"content-length")]
    if te:
        assert te == [b"transfer-encoding: chunked"] and not cl, wire
        assert isinstance(head.body, UnknownLength)
        return "accepted-as-chunked"
    assert isinstance(head.body, FixedLength | NoBody)
    assert len(cl) <= 1, wire
    if isinstance(head.body, FixedLength):
        assert cl == [f"content-length: {head.body.length}".encode()]
        assert body == b"0\r\n\r\n"
        return "accepted-as-CL"
    return "accepted-no-body"


def test_no_gadget_makes_the_gateway_forward_ambiguous_framing() -> None:
    outcomes: Counter[str] = Counter()
    per_set: dict[str, Counter[str]] = {}
    for set_name, _name, gadget in GADGETS:
        outcome = classify(gadget)
        outcomes[outcome] += 1
        per_set.setdefault(set_name, Counter())[outcome] += 1
    for set_name, counts in per_set.items():
        print(f"{set_name} ({sum(counts.values())}): {dict(sorted(counts.items()))}")
    print(f"all ({len(GADGETS)}): {dict(sorted(outcomes.items()))}")
    assert sum(outcomes.values()) == 134 + 966 + 668
    # Both a CL and a TE arrive in every wrapped request, so no gadget may be
    # understood as chunked: a chunked reading means the CL was silently dropped.
    assert outcomes["accepted-as-chunked"] == 0


@pytest.mark.parametrize(
    "gadget",
    [
        b"Transfer-Encoding: chunked",  # plain CL + TE
        b" Transfer-Encoding: chunked",  # obs-fold onto the request line
        b"Transfer-Encoding : chunked",  # whitespace before the colon
        b"Transfer-Encoding:\x0bchunked",  # vertical tab
        b"Transfer-Encoding: chunked\nX: y",  # bare LF
        b"Transfer-Encoding: Chunked",  # case variant
        b"Transfer-Encoding: chunked, identity",
        b"X: y\r\n\tTransfer-Encoding: chunked",  # obs-fold continuation
    ],
)
def test_classic_te_gadgets_are_rejected(gadget: bytes) -> None:
    assert classify(gadget).startswith("rejected-")
