"""SMS rules (SPEC §5, issue 8), pure: segments, the smart-SMS text, unsubscribe, whitelist, and
the decision what to do with a message that reached X, as one table.

No I/O, no clock. ``api.sms`` gathers the facts (pool, binding, unsubscribes, settings) and
applies the outcome.

Decisions (documented in ``docs/api.md`` "SMS" too):

* **Segments**: 70 Unicode code points per segment, for Chinese and ASCII alike (the SPEC's
  rule, not GSM 7-bit packing). A smart SMS counts the text as sent: signature + text + suffix
  (14 + n code points); an intercepted or held message counts the text as received. An empty
  text is **1 segment**: it still took one message on the network and one record here.
* **Unsubscribe**: the text, trimmed and NFKC-normalised (so a full-width ``Ｔ`` typed on a
  Chinese keyboard counts), is ``T`` or ``t``.
* **Whitelist**: a keyword matches when it occurs in the text, case-insensitively (casefold,
  NFKC), blank keywords never match.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "SEGMENT_CHARS",
    "SIGNATURE",
    "UNSUBSCRIBE_SUFFIX",
    "Action",
    "Mode",
    "Outcome",
    "Reach",
    "SmsFacts",
    "decide",
    "is_unsubscribe",
    "segments",
    "smart_text",
    "text_digest",
    "whitelisted",
]

#: Unicode code points per billed segment (SPEC §5/§7).
SEGMENT_CHARS: Final = 70
#: Prepended to every smart SMS.
SIGNATURE: Final = "【号码隐私保护】"
#: Appended to every smart SMS: "reply T to unsubscribe".
UNSUBSCRIBE_SUFFIX: Final = "【回T退订】"


def segments(text: str) -> int:
    """Billed segments of ``text``: ⌈code points / 70⌉, at least 1 (an empty SMS is one)."""
    return max(1, -(-len(text) // SEGMENT_CHARS))


def smart_text(text: str) -> str:
    """The text a smart SMS carries: signature, the sender's text, unsubscribe suffix."""
    return f"{SIGNATURE}{text}{UNSUBSCRIBE_SUFFIX}"


def _normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def is_unsubscribe(text: str) -> bool:
    """``T`` or ``t`` (trimmed; full-width forms too): the recipient's unsubscribe reply."""
    return unicodedata.normalize("NFKC", text).strip() in ("T", "t")


def whitelisted(text: str, keywords: Iterable[str]) -> bool:
    """Whether any non-blank keyword occurs in ``text`` (case-insensitive)."""
    body = _normal(text)
    return any(k.strip() and _normal(k.strip()) in body for k in keywords)


# Per process: a plain hash of a short text ("T", a code) could be looked up from the log.
_DIGEST_KEY: Final = secrets.token_bytes(16)


def text_digest(text: str) -> str:
    """What logs may say about a text besides its length: 16 hex digits of its HMAC-SHA256 under
    this process's random key (two log lines of one process about one message can be matched;
    neither the text nor a hash anyone could recompute is logged)."""
    return hmac.new(_DIGEST_KEY, text.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


class Mode(StrEnum):
    """A pool's SMS mode (the values of ``store.SmsMode``; routing does not import store)."""

    OFF = "off"
    INTERCEPT = "intercept"
    FULL_INTERCEPT = "full_intercept"
    SMART = "smart"


class Reach(StrEnum):
    """What the binding index says about the sender → X (``BindingIndex.resolve``)."""

    NO_BINDING = "no_binding"  # no binding for the sender (or expired, or not in the AXG group)
    BLOCKED = "blocked"  # a binding, but blacklisted / restricted / no default B / extension
    ROUTED = "routed"  # a binding and a peer to deliver to


class Action(StrEnum):
    """What happens to the message."""

    REFUSE = "refuse"  # answered 403/404, nothing stored
    UNSUBSCRIBE = "unsubscribe"  # the sender's T: persisted, reported, not delivered
    INTERCEPT = "intercept"  # stored and reported with the content, not delivered
    HOLD = "hold"  # stored pending the tenant's confirmation
    DELIVER = "deliver"  # sent as a smart SMS to the peer


@dataclass(frozen=True, slots=True)
class SmsFacts:
    """Everything the decision depends on."""

    in_pool: bool  # X belongs to a pool
    pool_is_95: bool  # that pool is 95AXN
    mode: Mode
    reach: Reach
    unsubscribe: bool  # the text is the unsubscribe reply
    recipient_unsubscribed: bool  # the peer unsubscribed from this X
    whitelisted: bool  # the text matches a keyword of the pool
    confirm: bool  # the pool holds smart SMS for confirmation


@dataclass(frozen=True, slots=True)
class Outcome:
    """The decision: the action, the SIP answer, and why (``cause``: a stable word for reports
    and logs; ``reason``: the SIP reason phrase)."""

    action: Action
    status: int
    reason: str
    cause: str


# (row name, condition, outcome) in order: the first row whose condition holds decides.
_TAKEN: Final = 202
_ROWS: Final[tuple[tuple[str, str, Outcome], ...]] = (
    ("no_pool", "X is in no pool",
     Outcome(Action.REFUSE, 404, "X not in service", "no_pool")),
    ("95axn", "95AXN pools never take SMS",
     Outcome(Action.REFUSE, 403, "SMS not supported on 95AXN numbers", "95axn")),
    ("off", "the pool's SMS mode is off",
     Outcome(Action.REFUSE, 403, "SMS off for this pool", "sms_off")),
    ("unsubscribe", "the text is T: honoured whatever the binding (an opt-out always counts)",
     Outcome(Action.UNSUBSCRIBE, _TAKEN, "Accepted (unsubscribed)", "unsubscribe")),
    ("full_no_binding", "no binding, full intercept: stored and reported",
     Outcome(Action.INTERCEPT, _TAKEN, "Accepted (intercepted)", "no_binding")),
    ("no_binding", "no binding, other modes: refused",
     Outcome(Action.REFUSE, 404, "No binding for this sender on X", "no_binding")),
    ("blocked", "a binding that cannot deliver (blacklist, restriction, no peer)",
     Outcome(Action.INTERCEPT, _TAKEN, "Accepted (intercepted)", "blocked")),
    ("intercept", "intercept modes without a whitelist keyword",
     Outcome(Action.INTERCEPT, _TAKEN, "Accepted (intercepted)", "intercept_mode")),
    ("unsubscribed", "the recipient unsubscribed from this X: intercepted, not sent",
     Outcome(Action.INTERCEPT, _TAKEN, "Accepted (recipient unsubscribed)", "unsubscribed")),
    ("confirm", "the pool confirms before sending: held",
     Outcome(Action.HOLD, _TAKEN, "Accepted (held for confirmation)", "confirm")),
    ("deliver", "smart SMS (or a whitelisted one in an intercept mode)",
     Outcome(Action.DELIVER, _TAKEN, "Accepted", "smart")),
)  # fmt: skip
_OUTCOMES: Final = {name: outcome for name, _, outcome in _ROWS}


def _row(facts: SmsFacts) -> str:
    if not facts.in_pool:
        return "no_pool"
    if facts.pool_is_95:
        return "95axn"
    if facts.mode is Mode.OFF:
        return "off"
    if facts.unsubscribe:
        return "unsubscribe"
    if facts.reach is Reach.NO_BINDING:
        return "full_no_binding" if facts.mode is Mode.FULL_INTERCEPT else "no_binding"
    if facts.reach is Reach.BLOCKED:
        return "blocked"
    if facts.mode is not Mode.SMART and not facts.whitelisted:
        return "intercept"
    if facts.recipient_unsubscribed:
        return "unsubscribed"
    if facts.confirm:
        return "confirm"
    return "deliver"


def decide(facts: SmsFacts) -> Outcome:
    """The outcome of the first row of the decision table that ``facts`` meet."""
    return _OUTCOMES[_row(facts)]
