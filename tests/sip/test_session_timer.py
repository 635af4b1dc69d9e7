"""RFC 4028 session timer helpers: parsing, formatting, UAS and UAC negotiation."""

from __future__ import annotations

import pytest

from sip.errors import SipParseError
from sip.headers import HeaderList
from sip.session_timer import (
    Negotiated,
    Refresher,
    SessionExpires,
    TooSmall,
    expiry_after_s,
    format_session_expires,
    negotiate_as_uac,
    negotiate_as_uas,
    parse_min_se,
    parse_session_expires,
    refresh_after_s,
    supports_timer,
)


def headers(*fields: tuple[str, str]) -> HeaderList:
    result = HeaderList()
    for name, value in fields:
        result.add(name, value)
    return result


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1800", SessionExpires(1800)),
        (" 90 ", SessionExpires(90)),
        ("1800;refresher=uac", SessionExpires(1800, Refresher.UAC)),
        ("1800 ; Refresher=UAS", SessionExpires(1800, Refresher.UAS)),
        ("600;foo=bar;refresher=uas", SessionExpires(600, Refresher.UAS)),
        ("600;foo", SessionExpires(600)),
    ],
)
def test_parse_session_expires(text: str, expected: SessionExpires) -> None:
    assert parse_session_expires(text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "-5", "0", "1.5", "1800;refresher=proxy", "99999999999", "١٢٣"]
)
def test_parse_session_expires_rejects(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_session_expires(text)


def test_format_round_trips() -> None:
    for value in (
        SessionExpires(1800),
        SessionExpires(90, Refresher.UAC),
        SessionExpires(120, Refresher.UAS),
    ):
        assert parse_session_expires(format_session_expires(value)) == value
    assert format_session_expires(SessionExpires(1800, Refresher.UAC)) == "1800;refresher=uac"


def test_parse_min_se() -> None:
    assert parse_min_se("90") == 90
    assert parse_min_se("120;x=y") == 120
    with pytest.raises(SipParseError):
        parse_min_se("soon")


def test_supports_timer_from_supported_require_and_compact_form() -> None:
    assert supports_timer(headers(("Supported", "100rel, Timer")))
    assert supports_timer(headers(("k", "timer")))
    assert supports_timer(headers(("Require", "timer")))
    assert not supports_timer(headers(("Supported", "100rel")))


UAS = {"min_se_s": 90, "session_expires_s": 1800}


def test_uas_reflects_the_callers_interval_and_the_caller_refreshes() -> None:
    result = negotiate_as_uas(headers(("Supported", "timer"), ("Session-Expires", "1800")), **UAS)
    assert result == Negotiated(1800, Refresher.UAC, local_refreshes=False)
    assert result.session_expires == SessionExpires(1800, Refresher.UAC)


def test_uas_honours_refresher_uas_asked_by_the_caller() -> None:
    result = negotiate_as_uas(headers(("Supported", "timer"), ("x", "600;refresher=uas")), **UAS)
    assert result == Negotiated(600, Refresher.UAS, local_refreshes=True)


def test_uas_below_min_se_gets_422_with_our_minimum() -> None:
    result = negotiate_as_uas(headers(("Supported", "timer"), ("Session-Expires", "30")), **UAS)
    assert result == TooSmall(90)
    assert negotiate_as_uas(
        headers(("Session-Expires", "100")), min_se_s=120, session_expires_s=1800
    ) == TooSmall(120)


def test_uas_caller_supports_but_asks_for_no_timer_gets_ours_at_least_its_min_se() -> None:
    assert negotiate_as_uas(headers(("Supported", "timer")), **UAS) == Negotiated(
        1800, Refresher.UAC, local_refreshes=False
    )
    assert negotiate_as_uas(
        headers(("Supported", "timer"), ("Min-SE", "3600")), **UAS
    ) == Negotiated(3600, Refresher.UAC, local_refreshes=False)


def test_uas_caller_without_timer_support() -> None:
    # §9: no Session-Expires and no support: no timer on the dialog.
    assert negotiate_as_uas(headers(), **UAS) is None
    # §9: a proxy inserted Session-Expires for a UAC without support: the UAS refreshes.
    assert negotiate_as_uas(headers(("Session-Expires", "900")), **UAS) == Negotiated(
        900, Refresher.UAS, local_refreshes=True
    )


def test_uas_malformed_header_raises_400() -> None:
    with pytest.raises(SipParseError) as raised:
        negotiate_as_uas(headers(("Session-Expires", "never")), **UAS)
    assert raised.value.status_code == 400


def test_uac_reads_the_2xx() -> None:
    assert negotiate_as_uac(headers()) is None
    assert negotiate_as_uac(headers(("Session-Expires", "90;refresher=uac"))) == Negotiated(
        90, Refresher.UAC, local_refreshes=True
    )
    assert negotiate_as_uac(headers(("Session-Expires", "90;refresher=uas"))) == Negotiated(
        90, Refresher.UAS, local_refreshes=False
    )
    assert negotiate_as_uac(headers(("Session-Expires", "120"))) == Negotiated(
        120, Refresher.UAC, local_refreshes=True
    )


def test_refresh_and_expiry_times() -> None:
    assert refresh_after_s(90) == 45
    assert expiry_after_s(90, local_refreshes=False) == 60  # 90 - min(32, 30)
    assert expiry_after_s(1800, local_refreshes=False) == 1768  # 1800 - 32
    assert expiry_after_s(90, local_refreshes=True) == 90
