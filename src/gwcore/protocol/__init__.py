"""Protocol codecs: wire bytes <-> the neutral message model in :mod:`.messages`.

No h11/h2 type leaves this package. See :mod:`.http1` for HTTP/1.x.
"""

from gwcore.protocol.http1 import Http1ClientCodec, Http1ServerCodec
from gwcore.protocol.http1_parser import H11Parser, Http1Parser
from gwcore.protocol.messages import (
    BodyFraming,
    Data,
    EndOfMessage,
    FixedLength,
    Headers,
    NoBody,
    ProtocolError,
    RequestHead,
    RequestMessage,
    ResponseHead,
    ResponseMessage,
    UnknownLength,
)

__all__ = [
    "BodyFraming",
    "Data",
    "EndOfMessage",
    "FixedLength",
    "H11Parser",
    "Headers",
    "Http1ClientCodec",
    "Http1Parser",
    "Http1ServerCodec",
    "NoBody",
    "ProtocolError",
    "RequestHead",
    "RequestMessage",
    "ResponseHead",
    "ResponseMessage",
    "UnknownLength",
]
