"""Error hierarchy of the SIP core.

Whoever detects a fault knows which status a UAS must answer with, so every
error carries it (pattern of h11's ``error_status_hint``).  The engine renders
the response in one place; nothing here touches I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sip.headers import HeaderList


class SipError(Exception):
    """Root of every error the SIP core raises about a peer's message."""

    status_code: int = 500
    default_reason: str = "Server Internal Error"

    def __init__(self, detail: str = "", *, status_code: int | None = None) -> None:
        super().__init__(detail or self.default_reason)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code

    @property
    def reason_phrase(self) -> str:
        """Reason phrase naming the problem, e.g. ``Bad Request (invalid CSeq)``."""
        if self.detail:
            return f"{self.default_reason} ({self.detail})"
        return self.default_reason


class SipParseError(SipError):
    """The bytes are not an acceptable SIP message.

    ``partial_headers`` holds the header lines that could be split before the
    fault was found, so a UAS can still copy Via/From/To/Call-ID/CSeq into its
    error response; ``is_response`` tells the transport to drop instead of
    answering (RFC 3261 §18.1.2: malformed responses are discarded).
    """

    status_code = 400
    default_reason = "Bad Request"

    def __init__(
        self,
        detail: str = "",
        *,
        status_code: int | None = None,
        partial_headers: HeaderList | None = None,
        is_response: bool = False,
    ) -> None:
        super().__init__(detail, status_code=status_code)
        self.partial_headers = partial_headers
        self.is_response = is_response


class VersionNotSupported(SipParseError):
    """Well-formed SIP-Version other than 2.0 (RFC 3261 §8.2.2... §21.5.20)."""

    status_code = 505
    default_reason = "Version Not Supported"


class MessageTooLarge(SipParseError):
    """Message larger than the configured limit (RFC 3261 §21.4.12)."""

    status_code = 513
    default_reason = "Message Too Large"


class MethodNotImplemented(SipParseError):
    """CSeq names another method and the request method is unknown (RFC 4475 §3.1.2.18)."""

    status_code = 501
    default_reason = "Not Implemented"


class UnsupportedUriScheme(SipError):
    """Request-URI scheme the UAS cannot serve (RFC 3261 §8.2.2.1)."""

    status_code = 416
    default_reason = "Unsupported URI Scheme"


class BadExtension(SipError):
    """A Require option tag the UAS does not support (RFC 3261 §8.2.2.3)."""

    status_code = 420
    default_reason = "Bad Extension"

    def __init__(self, unsupported: list[str]) -> None:
        super().__init__(", ".join(unsupported))
        self.unsupported = unsupported

    @property
    def reason_phrase(self) -> str:
        return self.default_reason


class CallDoesNotExist(SipError):
    """In-dialog request for no known dialog or transaction (RFC 3261 §12.2.2)."""

    status_code = 481
    default_reason = "Call/Transaction Does Not Exist"


class TooManyHops(SipError):
    """Max-Forwards exhausted on a request we would forward (RFC 3261 §16.3 item 2)."""

    status_code = 483
    default_reason = "Too Many Hops"


class RequestPending(SipError):
    """Glare on a re-INVITE (RFC 3261 §14.2)."""

    status_code = 491
    default_reason = "Request Pending"


class CSeqOutOfOrder(SipError):
    """In-dialog request whose CSeq is not above the last one seen (RFC 3261 §12.2.2).

    The RFC words it "lower than"; an equal number that reaches the dialog is
    not a retransmission (the transaction layer absorbs those), so it is out of
    order too.  Raised by ``sip.dialog`` (which exports it too); defined here because its
    class attributes override ``SipError``'s, which a class compiled with mypyc would not do.
    """

    status_code = 500
    default_reason = "CSeq out of order"


class SipUsageError(Exception):
    """The local application misused the core (e.g. answered a transaction twice).

    Deliberately not a ``SipError``: it is our bug, not the peer's, and must
    never be turned into a response on the wire.
    """
