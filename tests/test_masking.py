"""routing.masking: the masks people see in logs."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.masking import mask_number, mask_numbers_in_text


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("13800138000", "138****8000"),
        ("+8613800138000", "+86138****8000"),
        ("+86 138 0013 8000", "+86138****8000"),
        ("010-12345678", "010****5678"),
        ("01012345678", "010****5678"),
        ("075512345678", "075*****5678"),
        ("+12025550123", "+1202****123"),
        ("+447911123456", "+44791****456"),
        ("+85212345678", "+85212****78"),  # Hong Kong: three-digit country code
        ("1234567890", "123****890"),
        ("123456789", "12****789"),
        ("12345678", "12****78"),
        ("1234567", "1****67"),
        ("123456", "1****6"),
        ("12345", "****5"),
        ("1234", "****"),
        ("110", "***"),
        ("+86123", "+****3"),  # too short to show a country code
        ("", ""),
        ("anonymous", "anonymous"),
    ],
)
def test_mask_number(number: str, masked: str) -> None:
    assert mask_number(number) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("call from 13800138000 to 13912345678", "call from 138****8000 to 139****5678"),
        ("sip:+8613800138000@10.0.0.1:5060", "sip:+86138****8000@10.0.0.1:5060"),
        ("<sip:13800138000@trunk>;tag=1", "<sip:138****8000@trunk>;tag=1"),
        ("dial +86 138 0013 8000 now", "dial +86138****8000 now"),
        ("mobile 138 0013 8000.", "mobile 138****8000."),
        ("mobile 138-0013-8000", "mobile 138****8000"),
        ("office 010-12345678", "office 010-12****78"),
        ("at 2024-01-01 12:00:00 from 10.1.2.3:5060", "at 2024-01-01 12:00:00 from 10.1.2.3:5060"),
        ("short 123456 stays", "short 123456 stays"),
        ("1234567", "1****67"),
        ("１３８００１３８０００", "１３８****８０００"),  # full-width digits
        ("no digits here", "no digits here"),
    ],
)
def test_mask_numbers_in_text(text: str, masked: str) -> None:
    assert mask_numbers_in_text(text) == masked


@given(st.from_regex(r"\A1[3-9][0-9]{9}\Z", fullmatch=True))
def test_mobile_masks_keep_three_and_four(number: str) -> None:
    masked = mask_number(number)
    assert masked == number[:3] + "****" + number[-4:]
    assert mask_number("+86" + number) == "+86" + masked


@given(st.text(alphabet="0123456789+- abc:@;.", max_size=60))
def test_no_long_digit_run_survives(text: str) -> None:
    masked = mask_numbers_in_text(text)
    assert re.search(r"\d{7,}", masked) is None
    # Masking is stable: masking masked text changes nothing.
    assert mask_numbers_in_text(masked) == masked


@given(st.text(alphabet="0123456789", min_size=5, max_size=20))
def test_mask_hides_at_least_four_digits(digits: str) -> None:
    masked = mask_number(digits)
    assert masked.count("*") >= 4
    assert len(masked) == len(digits)
