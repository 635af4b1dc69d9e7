"""Serialisation refuses what would inject lines into the start line."""

from __future__ import annotations

import pytest

import sip


@pytest.mark.parametrize("reason", ["OK\r\nInjected: yes", "OK\nInjected: yes", "OK\r"])
def test_reason_phrase_with_line_break_is_refused(reason: str) -> None:
    response = sip.Response(200, reason)
    with pytest.raises(sip.SipUsageError):
        response.to_bytes()


def test_method_with_line_break_is_refused() -> None:
    request = sip.Request("OPTIONS\r\nX-Evil: 1", "sip:a@example.com")
    with pytest.raises(sip.SipUsageError):
        request.to_bytes()


def test_plain_start_line_serialises() -> None:
    assert sip.Response(200, "OK").to_bytes().startswith(b"SIP/2.0 200 OK\r\n")
