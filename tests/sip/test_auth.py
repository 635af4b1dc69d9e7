"""Digest answers to trunk challenges, checked against RFC 2617 §3.5's worked example."""

from __future__ import annotations

import pytest

from sip.auth import authorization, parse_challenge
from sip.errors import SipParseError

# RFC 2617 §3.5 (HTTP, but the computation is the same; SIP uses the method and R-URI).
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def test_rfc2617_example_response() -> None:
    challenge = parse_challenge(RFC2617_CHALLENGE)
    value = authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        cnonce="0a4f113b",
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert "qop=auth" in value and "nc=00000001" in value
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in value


def test_challenge_without_qop_uses_rfc2069_response() -> None:
    challenge = parse_challenge('Digest realm="carrier", nonce="abc"')
    value = authorization(
        challenge,
        method="INVITE",
        uri="sip:13900139000@198.51.100.1",
        username="ml",
        password="pw",
        cnonce="x",
    )
    assert "qop" not in value and value.startswith('Digest username="ml", realm="carrier"')


@pytest.mark.parametrize(
    "value", ['Basic realm="x"', "Digest nonce=abc", 'Digest realm="r", nonce="n", algorithm=X']
)
def test_unusable_challenges_are_parse_errors(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_challenge(value)
