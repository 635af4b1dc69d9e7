"""RFC 3262 helpers: RSeq/RAck parsing and formatting, the 100rel test, the first RSeq."""

from __future__ import annotations

import pytest

from sip.errors import SipParseError
from sip.message import Request
from sip.parser import parse_message
from sip.reliable import (
    RAck,
    first_rseq,
    format_rack,
    parse_rack,
    parse_rseq,
    requires_100rel,
)


def test_parse_rseq() -> None:
    assert parse_rseq(" 1 ") == 1
    assert parse_rseq("4294967295") == 2**32 - 1


@pytest.mark.parametrize("value", ["", "0", "-1", "4294967296", "12a", "1 2", "99999999999"])
def test_parse_rseq_rejects(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_rseq(value)


def test_parse_rack() -> None:
    assert parse_rack("776656 1 INVITE") == RAck(776656, 1, "INVITE")
    assert parse_rack("  5\t 314159   invite ") == RAck(5, 314159, "INVITE")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1 1",
        "1 1 INVITE x",
        "0 1 INVITE",
        "1 0 INVITE",
        "1 2147483648 INVITE",
        "a 1 INVITE",
        "1 1 IN-VITE",
    ],
)
def test_parse_rack_rejects(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_rack(value)


def test_format_rack_round_trips() -> None:
    rack = RAck(42, 7, "INVITE")
    assert format_rack(rack) == "42 7 INVITE"
    assert parse_rack(format_rack(rack)) == rack


def test_first_rseq_in_range() -> None:
    values = {first_rseq() for _ in range(200)}
    assert all(1 <= value <= 2**31 - 1 for value in values)
    assert len(values) > 1


def _invite(*extra: str) -> Request:
    lines = [
        "INVITE sip:x@example.com SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1",
        "From: <sip:a@example.com>;tag=1",
        "To: <sip:x@example.com>",
        "Call-ID: c1",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
        *extra,
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def test_requires_100rel() -> None:
    assert requires_100rel(_invite("Require: timer, 100REL"))
    assert not requires_100rel(_invite("Supported: 100rel"))
    assert not requires_100rel(_invite())
