"""Session timers (RFC 4028): Session-Expires / Min-SE parsing, formatting and negotiation.

Pure: the engine feeds the headers of a request or response and gets back what
to answer and how the session is to be kept alive; the clock and the timers are
the engine's.  Option tag ``timer`` (RFC 4028 §3); Session-Expires (compact
``x``, §4) and Min-SE (§5) carry delta-seconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from sip.errors import SipParseError
from sip.grammar import get_param, parse_params
from sip.headers import HeaderList

__all__ = [
    "ABSOLUTE_MIN_SE_S",
    "OPTION_TAG",
    "Negotiated",
    "Refresher",
    "SessionExpires",
    "TooSmall",
    "expiry_after_s",
    "format_session_expires",
    "negotiate_as_uac",
    "negotiate_as_uas",
    "parse_min_se",
    "parse_session_expires",
    "refresh_after_s",
    "supports_timer",
]

OPTION_TAG: Final = "timer"
# RFC 4028 §4: "the minimum value ... is 90 seconds"; also the Min-SE default (§5).
ABSOLUTE_MIN_SE_S: Final = 90
# delta-seconds is 1*DIGIT; RFC 3261 §25.1 caps delta-seconds at 2**32 - 1.
_DELTA_MAX: Final = 2**32 - 1


class Refresher(enum.Enum):
    """Who sends the refreshes (RFC 4028 §4 ``refresher`` parameter)."""

    UAC = "uac"
    UAS = "uas"


@dataclass(frozen=True, slots=True, init=False)
class SessionExpires:
    """A Session-Expires value: the session interval and, if given, the refresher."""

    delta_s: int
    refresher: Refresher | None = None

    # An explicit __init__ (the dataclass has init=False): mypyc compiles it, whereas the one
    # dataclasses generates stays interpreted, ~0.2 µs a field on every message.
    def __init__(self, delta_s: int, refresher: Refresher | None = None) -> None:
        object.__setattr__(self, "delta_s", delta_s)
        object.__setattr__(self, "refresher", refresher)


@dataclass(frozen=True, slots=True, init=False)
class TooSmall:
    """The request's interval is below our minimum: answer 422 with ``Min-SE: min_se_s`` (§8.1)."""

    min_se_s: int

    def __init__(self, min_se_s: int) -> None:
        object.__setattr__(self, "min_se_s", min_se_s)


@dataclass(frozen=True, slots=True, init=False)
class Negotiated:
    """A session timer in force on a dialog.

    ``refresher`` is as written in the 2xx (the UAC or UAS of the dialog);
    ``local_refreshes`` says whether that is us.
    """

    interval_s: int
    refresher: Refresher
    local_refreshes: bool

    def __init__(self, interval_s: int, refresher: Refresher, local_refreshes: bool) -> None:
        object.__setattr__(self, "interval_s", interval_s)
        object.__setattr__(self, "refresher", refresher)
        object.__setattr__(self, "local_refreshes", local_refreshes)

    @property
    def session_expires(self) -> SessionExpires:
        """The Session-Expires value describing this timer."""
        return SessionExpires(self.interval_s, self.refresher)


def _delta_seconds(text: str, *, what: str) -> int:
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise SipParseError(f"{what}: delta-seconds expected, got {text!r}")
    value = int(text)
    if value > _DELTA_MAX:
        raise SipParseError(f"{what}: delta-seconds out of range")
    return value


def parse_session_expires(value: str) -> SessionExpires:
    """Parse ``delta-seconds *(;se-params)`` (RFC 4028 §4); unknown parameters are ignored.

    A ``refresher`` other than ``uac``/``uas`` or a malformed value raises
    ``SipParseError`` (answered 400).
    """
    delta, semicolon, rest = value.partition(";")
    delta_s = _delta_seconds(delta, what="Session-Expires")
    if delta_s == 0:
        raise SipParseError("Session-Expires: must be positive")
    refresher = None
    if semicolon:
        raw = get_param(parse_params(rest, what="Session-Expires"), "refresher")
        if raw is not None:
            try:
                refresher = Refresher(raw.lower())
            except ValueError:
                raise SipParseError(f"Session-Expires: refresher {raw!r}") from None
    return SessionExpires(delta_s, refresher)


def format_session_expires(value: SessionExpires) -> str:
    """``1800`` or ``1800;refresher=uac``."""
    if value.refresher is None:
        return str(value.delta_s)
    return f"{value.delta_s};refresher={value.refresher.value}"


def parse_min_se(value: str) -> int:
    """Parse ``Min-SE: delta-seconds *(;generic-param)`` (RFC 4028 §5)."""
    return _delta_seconds(value.partition(";")[0], what="Min-SE")


def supports_timer(headers: HeaderList) -> bool:
    """True when the message lists ``timer`` in Supported or Require (§7.1, §9)."""
    tags = headers.get_list("Supported") + headers.get_list("Require")
    return any(tag.lower() == OPTION_TAG for tag in tags)


def _header(headers: HeaderList, name: str) -> str | None:
    value = headers.get(name)
    return None if value is None or not value.strip() else value


def negotiate_as_uas(
    headers: HeaderList, *, min_se_s: int, session_expires_s: int
) -> TooSmall | Negotiated | None:
    """What a UAS answers to an INVITE (or refresh) with these headers (RFC 4028 §9).

    * Session-Expires below ``min_se_s`` → :class:`TooSmall` (422, §8.1/§9).
    * Caller supports ``timer``: its interval (ours, ``session_expires_s``,
      raised to its Min-SE, when it sent none) with the refresher it asked for,
      else ``uac`` — the caller refreshes.
    * Caller does not support ``timer`` (§9 table): if a proxy inserted a
      Session-Expires, the UAS MUST be the refresher (``uas``); without one we
      run no timer on the dialog (None), which §9 allows: "the UAS MAY" insert one.

    Raises ``SipParseError`` for a malformed Session-Expires or Min-SE.
    """
    raw = _header(headers, "Session-Expires")
    requested = parse_session_expires(raw) if raw is not None else None
    raw_min = _header(headers, "Min-SE")
    their_min_s = parse_min_se(raw_min) if raw_min is not None else ABSOLUTE_MIN_SE_S
    if requested is not None and requested.delta_s < min_se_s:
        return TooSmall(min_se_s)
    if not supports_timer(headers):
        if requested is None:
            return None
        return Negotiated(requested.delta_s, Refresher.UAS, local_refreshes=True)
    if requested is None:
        interval_s = max(session_expires_s, their_min_s)
        return Negotiated(interval_s, Refresher.UAC, local_refreshes=False)
    refresher = requested.refresher or Refresher.UAC
    return Negotiated(requested.delta_s, refresher, local_refreshes=refresher is Refresher.UAS)


def negotiate_as_uac(headers: HeaderList) -> Negotiated | None:
    """The session timer a 2xx to our INVITE (or refresh) sets up (RFC 4028 §7.2).

    No Session-Expires in the 2xx → no session expiration (None).  A 2xx
    must name the refresher; a missing one is taken as ``uac`` (us), the safe
    reading: we keep the session alive ourselves.  Raises ``SipParseError``
    for a malformed value.
    """
    raw = _header(headers, "Session-Expires")
    if raw is None:
        return None
    value = parse_session_expires(raw)
    refresher = value.refresher or Refresher.UAC
    return Negotiated(value.delta_s, refresher, local_refreshes=refresher is Refresher.UAC)


def refresh_after_s(interval_s: int) -> float:
    """When the refresher sends its refresh: half the interval (RFC 4028 §7.4/§10)."""
    return interval_s / 2


def expiry_after_s(interval_s: int, *, local_refreshes: bool) -> float:
    """When a session without a successful refresh is over, counted from the last refresh.

    The side that does not refresh waits ``interval - min(32, interval/3)``
    (RFC 4028 §10, the BYE "at the session expiration" minus the slack the
    refresher's transaction may need); the refresher itself gives up at the
    full interval (§10: no 2xx before the session expires → BYE).
    """
    if local_refreshes:
        return float(interval_s)
    return interval_s - min(32.0, interval_s / 3)
