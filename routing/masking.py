"""Phone-number masking for logs and anything else a person may read (``138****8000``).

Pure and cheap: one precompiled regular expression, no phone-number library. The rule is the
familiar one for Chinese mobiles (first 3 and last 4 digits shown) and degrades so that shorter
numbers always hide at least four digits, or everything when they have four or fewer.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["mask_number", "mask_numbers_in_text"]

_MASK_CHAR: Final = "*"
_HEAD_DIGITS: Final = 3
_TAIL_DIGITS: Final = 4
_MIN_HIDDEN: Final = 4

# What counts as a number in free text, first match wins:
# - "+" and 7+ digits, single spaces or dashes allowed between them ("+86 138 0013 8000");
# - the usual 3-4-4 grouping of a Chinese mobile ("138 0013 8000", "138-0013-8000");
# - any run of 7+ digits: the shortest national numbers (7-digit local landlines) and longer.
# Dates ("2024-01-01") stay readable: their groups are too short for all three forms.
# \d also matches non-ASCII digits (full-width １３８...), which must not slip through unmasked.
# Written as one leading character class, then the three forms told apart by lookbehinds: the
# regex engine then skips quickly over text without "+" or digits (about twice as fast on log
# lines as the plain three-way alternation).
_NUMBER_RUN: Final = re.compile(
    r"[+\d](?:"
    r"(?<=\+)\d(?:[ -]?\d){6,}"  # "+" then 7+ digits, maybe spaced
    r"|(?<!\d\d)(?<=\d)\d{2}[ -]\d{4}[ -]\d{4}(?!\d)"  # 3-4-4, not inside a longer run
    r"|(?<=\d)\d{6,}"  # 7+ digits
    r")"
)
_NOT_DIGIT: Final = re.compile(r"\D")

# ITU-T E.164 country codes are prefix-free: 1 and 7 are one digit, these are two digits, every
# other code is three. Enough to keep "+86" visible in "+86138****8000".
_TWO_DIGIT_COUNTRY_CODES: Final = frozenset(
    {
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45",
        "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61",
        "62", "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94",
        "95", "98",
    }
)  # fmt: skip


def _country_code_length(digits: str) -> int:
    if digits[:1] in ("1", "7"):
        return 1
    if digits[:2] in _TWO_DIGIT_COUNTRY_CODES:
        return 2
    return 3


def _mask_digits(digits: str) -> str:
    """Mask a string of digits: 3 + hidden + 4 when long, at least 4 hidden when short."""
    count = len(digits)
    if count <= _MIN_HIDDEN:
        return _MASK_CHAR * count
    hidden = max(_MIN_HIDDEN, count - _HEAD_DIGITS - _TAIL_DIGITS)
    shown = count - hidden
    # Split what is shown between head and tail, the tail getting the extra digit (the end of
    # a number is what people compare), capped at 3 + 4.
    tail = min(_TAIL_DIGITS, (shown + 1) // 2)
    head = min(_HEAD_DIGITS, shown - tail)
    hidden = count - head - tail
    return digits[:head] + _MASK_CHAR * hidden + digits[count - tail :]


def mask_number(s: str) -> str:
    """Mask one phone number: ``13800138000`` → ``138****8000``.

    A leading ``+`` keeps its country code visible (``+8613800138000`` → ``+86138****8000``).
    Separators (spaces, dashes, dots, parentheses) are dropped, so the result is compact.
    Shorter numbers hide at least four digits (``12345678`` → ``12****78``), numbers of four or
    fewer digits are hidden entirely. A string with no digit at all is returned unchanged.
    """
    digits = _NOT_DIGIT.sub("", s)
    if not digits:
        return s
    if not s.lstrip().startswith("+"):
        return _mask_digits(digits)
    cc_length = _country_code_length(digits)
    national = digits[cc_length:]
    if len(national) < 7:
        # Too short to be a real international number; do not reveal a "country code".
        return "+" + _mask_digits(digits)
    return "+" + digits[:cc_length] + _mask_digits(national)


def _mask_match(match: re.Match[str]) -> str:
    return mask_number(match.group())


def mask_numbers_in_text(text: str) -> str:
    """Replace every run of 7 or more digits (optionally ``+``-prefixed) with its mask.

    Also catches the spaced forms people type: ``+86 138 0013 8000`` and ``138 0013 8000``.

    Errs on the side of masking: long ids made of digits are masked too, which costs some
    readability in logs but never leaks a number.
    """
    return _NUMBER_RUN.sub(_mask_match, text)
