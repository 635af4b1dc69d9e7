"""Constructors for responses and transaction-generated requests (RFC 3261 §8.2.6, §17.1.1.3)."""

from __future__ import annotations

import os
import threading

from sip.headers import HeaderList
from sip.message import Request, Response

# Reason phrases of RFC 3261 §21 and the extensions we answer with.
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# Headers a response copies from its request (RFC 3261 §8.2.6.2).
_COPIED_KEYS = frozenset(("via", "from", "to", "call-id", "cseq"))


def reason_phrase(status_code: int) -> str:
    """Standard reason phrase for ``status_code`` (class default when unknown)."""
    return REASON_PHRASES.get(status_code) or REASON_PHRASES[status_code // 100 * 100]


class _Entropy:
    """Bytes of the kernel's CSPRNG (``os.urandom``), fetched 4 KiB at a time, each used once.

    A call needs about ten tags, branches and Call-IDs; one ``getrandom`` call per id
    cost more than the id itself.  The bytes are the same unguessable kernel output,
    just fetched in bulk: no byte serves two ids.  One per thread (no lock on the hot path,
    no two threads sharing an offset), and forgotten in a forked child so parent and
    child never hand out the same ids.
    """

    __slots__ = ("offset", "pool")

    def __init__(self) -> None:
        self.pool = b""
        self.offset = 0


# Each thread's _Entropy, kept in a plain threading.local. Not a subclass of threading.local:
# compiled by mypyc, such a class lays its attributes over the C type's own fields — touching
# the object from Python crashed the process (tests/test_compiled.py), and every thread shared
# the one pool.
_PER_THREAD = threading.local()
_POOL_BYTES = 4096


def _entropy() -> _Entropy:
    """This thread's pool (made on first use)."""
    try:
        entropy: _Entropy = _PER_THREAD.entropy
    except AttributeError:
        entropy = _PER_THREAD.entropy = _Entropy()
    return entropy


def _forget_entropy() -> None:
    _PER_THREAD.entropy = _Entropy()


os.register_at_fork(after_in_child=_forget_entropy)


def random_bytes(nbytes: int) -> bytes:
    """``nbytes`` fresh CSPRNG bytes (like ``secrets.token_bytes``), from the pool above."""
    entropy = _entropy()
    start = entropy.offset
    end = start + nbytes
    pool = entropy.pool
    if end > len(pool):
        pool = entropy.pool = os.urandom(max(_POOL_BYTES, nbytes))
        start, end = 0, nbytes
    entropy.offset = end
    return pool[start:end]


def random_hex(nbytes: int) -> str:
    """``nbytes`` fresh CSPRNG bytes as lower-case hex (like ``secrets.token_hex``)."""
    return random_bytes(nbytes).hex()


def new_tag() -> str:
    """A random tag with ≥ 32 bits of randomness (RFC 3261 §19.3): 48 bits here."""
    return random_hex(6)


def new_branch() -> str:
    """A fresh RFC 3261 branch: magic cookie plus 64 random bits (§8.1.1.7)."""
    return "z9hG4bK" + random_hex(8)


def new_call_id(host: str) -> str:
    """A globally unique Call-ID carrying no information about any party (§8.1.1.4)."""
    return f"{random_hex(12)}@{host}"


def response_from_headers(
    headers: HeaderList,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
) -> Response:
    """Build a response copying Via, From, To, Call-ID, CSeq verbatim from ``headers``.

    Works on the raw header lines of a request that failed to parse, so a
    stateless error response still reaches the right transaction.  ``to_tag``
    is added when To has none (§8.2.6.2); it is skipped for 100 Trying.
    """
    copied = HeaderList.subset_of(headers, _COPIED_KEYS)
    if to_tag is not None and status_code > 100:
        _add_to_tag(copied, to_tag)
    return Response(
        status_code, reason if reason is not None else reason_phrase(status_code), copied
    )


def _add_to_tag(headers: HeaderList, to_tag: str) -> None:
    to_value = headers.get("To")
    if to_value is None or ";tag=" in to_value.replace(" ", "").lower():
        return
    headers.set("To", f"{to_value};tag={to_tag}")


def make_response(
    request: Request,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """Response to a parsed request, copying the mandatory headers (RFC 3261 §8.2.6)."""
    headers = HeaderList.subset_of(request.headers, _COPIED_KEYS)
    if to_tag is not None and status_code > 100 and request.to_tag is None:
        to = request.to
        # A To without parameters (an initial request's, nearly always) gets ";tag=" appended
        # to its rendering: what rendering a copy with the tag would give, for less.
        headers.set("To", f"{to};tag={to_tag}" if not to.params else str(to.with_tag(to_tag)))
    add = headers.add
    for name, value in extra or ():
        add(name, value)
    if body and content_type is not None:
        add("Content-Type", content_type)
    return Response(
        status_code,
        reason if reason is not None else reason_phrase(status_code),
        headers,
        body,
    )


def make_non2xx_ack(invite: Request, response: Response) -> Request:
    """ACK for a non-2xx final response, built by the client transaction (§17.1.1.3).

    Request-URI, Call-ID, From, CSeq number and the top Via (same branch)
    come from the INVITE; To comes from the response (it carries the tag);
    Route headers are those of the INVITE.
    """
    headers = HeaderList()
    top_via = invite.headers.get("Via")
    if top_via is not None:
        headers.add("Via", str(invite.top_via))
    headers.copy_from(invite.headers, ("max-forwards", "from", "call-id", "route"))
    to_value = response.headers.get("To") or invite.headers.get("To") or ""
    headers.add("To", to_value)
    headers.add("CSeq", f"{invite.cseq.seq} ACK")
    return Request("ACK", invite.uri, headers)


def make_cancel(invite: Request) -> Request:
    """CANCEL for a pending INVITE (RFC 3261 §9.1).

    Same Request-URI, top Via, Call-ID, From, To and CSeq number as the INVITE.
    """
    headers = HeaderList()
    headers.add("Via", str(invite.top_via))
    headers.copy_from(invite.headers, ("max-forwards", "from", "to", "call-id", "route"))
    headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
    return Request("CANCEL", invite.uri, headers)
