"""maskline's sans-IO SIP core (RFC 3261, RFC 6026): standard library only, no sockets, no clock.

Public entry points used outside the repository: ``parse_message`` and
``SipParseError``; every message has ``to_bytes()``.
"""

# First, before any module of the package: a compiled module (build_compiled.py) must have been
# compiled from the .py beside it, or the import fails here naming it and the fix.
from sip.compiled_guard import verify_compiled

verify_compiled(__path__[0], __name__)

from sip.dialog import Dialog, DialogId, DialogRole, DialogState
from sip.endpoint import Endpoint
from sip.errors import (
    BadExtension,
    CallDoesNotExist,
    MessageTooLarge,
    MethodNotImplemented,
    RequestPending,
    SipError,
    SipParseError,
    SipUsageError,
    TooManyHops,
    UnsupportedUriScheme,
    VersionNotSupported,
)
from sip.headers import CSeq, HeaderList, NameAddr, Via
from sip.message import Message, Request, Response
from sip.parser import StreamFramer, parse_message, parse_stream_message
from sip.uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri

__all__ = [
    "AbsoluteUri",
    "BadExtension",
    "CSeq",
    "CallDoesNotExist",
    "Dialog",
    "DialogId",
    "DialogRole",
    "DialogState",
    "Endpoint",
    "HeaderList",
    "Message",
    "MessageTooLarge",
    "MethodNotImplemented",
    "NameAddr",
    "Request",
    "RequestPending",
    "Response",
    "SipError",
    "SipParseError",
    "SipUri",
    "SipUsageError",
    "StreamFramer",
    "TelUri",
    "TooManyHops",
    "UnsupportedUriScheme",
    "Uri",
    "VersionNotSupported",
    "Via",
    "parse_message",
    "parse_stream_message",
    "parse_uri",
]
