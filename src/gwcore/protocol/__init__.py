"""Protocol codecs: wire bytes <-> the neutral message model in :mod:`.messages`.

No h11/h2 type leaves this package. See :mod:`.http1` for HTTP/1.x and
:mod:`.http2` for HTTP/2.
"""

from gwcore.protocol.http1 import Http1ClientCodec, Http1ServerCodec
from gwcore.protocol.http1_parser import H11Parser, Http1Parser
from gwcore.protocol.http2 import (
    ConnectionTerminated,
    GoAwayReceived,
    H2ClientEvent,
    H2ServerEvent,
    Http2ClientCodec,
    Http2ServerCodec,
    StreamReset,
    WindowOpened,
    h2c_upgrade_settings,
    looks_like_h2_preface,
)
from gwcore.protocol.http2_frames import ErrorCode
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
    "ConnectionTerminated",
    "Data",
    "EndOfMessage",
    "ErrorCode",
    "FixedLength",
    "GoAwayReceived",
    "H2ClientEvent",
    "H2ServerEvent",
    "H11Parser",
    "Headers",
    "Http1ClientCodec",
    "Http1Parser",
    "Http1ServerCodec",
    "Http2ClientCodec",
    "Http2ServerCodec",
    "NoBody",
    "ProtocolError",
    "RequestHead",
    "RequestMessage",
    "ResponseHead",
    "ResponseMessage",
    "StreamReset",
    "UnknownLength",
    "WindowOpened",
    "h2c_upgrade_settings",
    "looks_like_h2_preface",
]
