"""routing.numbers: normalisation, trunk forms, SIP user parts, home location."""

import time

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing import numbers
from routing.model import PhoneNumber
from routing.numbers import (
    MOBILE_NUMBER_ILLEGAL,
    NUMBER_ILLEGAL,
    InvalidNumberError,
    Location,
    for_trunk,
    from_sip_user,
    home_location,
    is_nationwide,
    national,
    normalize,
)

MOBILE = "+8613800138000"
BEIJING = "+861012345678"
SHENZHEN = "+8675512345678"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("13800138000", MOBILE),
        ("+86 138 0013 8000", MOBILE),
        ("+8613800138000", MOBILE),
        ("8613800138000", MOBILE),
        ("008613800138000", MOBILE),
        ("0086 138 0013 8000", MOBILE),
        ("+86-138-0013-8000", MOBILE),
        ("138-0013-8000", MOBILE),
        (" 13800138000 ", MOBILE),
        ("１３８００１３８０００", MOBILE),  # full-width digits
        ("＋８６ １３８ ００１３ ８０００", MOBILE),
        ("010-12345678", BEIJING),
        ("(010) 1234 5678", BEIJING),
        ("01012345678", BEIJING),
        ("+86 10 1234 5678", BEIJING),
        ("+86 (0)10 1234 5678", BEIJING),
        ("861012345678", BEIJING),
        ("0086 10 1234 5678", BEIJING),
        ("0755-12345678", SHENZHEN),
        ("075512345678", SHENZHEN),
        ("0771-1234567", "+867711234567"),  # 7-digit local number
        # X numbers: 170/171 virtual-operator mobiles and 950 nationwide numbers.
        ("17012345678", "+8617012345678"),
        ("171 1234 5678", "+8617112345678"),
        ("9501300000", "+869501300000"),
        ("95013000000", "+8695013000000"),
        ("950130000000", "+86950130000000"),  # 12 digits: beyond the library, accepted
        ("+86 950 1300 0000 0", "+86950130000000"),
        ("400-123-4567", "+864001234567"),
        ("+1 650 253 0000", "+16502530000"),  # abroad: valid is valid
        ("+852 2123 4567", "+85221234567"),
    ],
)
def test_normalize_accepts_the_common_forms(raw: str, e164: str) -> None:
    assert normalize(raw) == e164


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", NUMBER_ILLEGAL),
        ("   ", NUMBER_ILLEGAL),
        ("abc", NUMBER_ILLEGAL),
        ("12345", NUMBER_ILLEGAL),
        ("+1 555", NUMBER_ILLEGAL),
        ("+", NUMBER_ILLEGAL),
        ("95588", NUMBER_ILLEGAL),  # a 5-digit service number is not bindable
        ("9501", NUMBER_ILLEGAL),
        ("9501300000000", NUMBER_ILLEGAL),  # 13 digits
        ("2012345678", NUMBER_ILLEGAL),  # landline without its trunk 0
        ("010-1234", NUMBER_ILLEGAL),
        ("1380013800", MOBILE_NUMBER_ILLEGAL),  # 10 digits
        ("138001380000", MOBILE_NUMBER_ILLEGAL),  # 12 digits
        ("13800138", MOBILE_NUMBER_ILLEGAL),
        ("+86 138 0013 800", MOBILE_NUMBER_ILLEGAL),
        ("1380013800O", MOBILE_NUMBER_ILLEGAL),  # letter O
        ("13800138000x", MOBILE_NUMBER_ILLEGAL),
        ("1-800-FLOWERS", NUMBER_ILLEGAL),  # vanity letters are not read
        ("12012345678", NUMBER_ILLEGAL),  # 120… is no mobile range nor an area code
        ("10012345678", NUMBER_ILLEGAL),
        ("13800138000;x=1", MOBILE_NUMBER_ILLEGAL),
        ("+86+13800138000", MOBILE_NUMBER_ILLEGAL),
    ],
)
def test_normalize_refuses_with_a_code(raw: str, code: str) -> None:
    with pytest.raises(InvalidNumberError) as caught:
        normalize(raw)
    assert caught.value.code == code
    assert isinstance(caught.value, ValueError)


def test_error_message_masks_the_input() -> None:
    with pytest.raises(InvalidNumberError) as caught:
        normalize("138001380001")
    message = caught.value.message
    assert "138001380001" not in message
    assert "138*****0001" in message
    assert "mobile" in message


@given(st.text(max_size=30))
def test_normalize_raises_only_invalid_number_error_and_returns_valid_e164(raw: str) -> None:
    try:
        number = normalize(raw)
    except InvalidNumberError as exc:
        assert exc.code in (MOBILE_NUMBER_ILLEGAL, NUMBER_ILLEGAL)
        return
    assert number.startswith("+")
    assert number[1:].isdigit()
    parsed = phonenumbers.parse(number, None)
    assert phonenumbers.is_valid_number(parsed) or is_nationwide(number)
    assert normalize(number) == number  # idempotent


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_every_valid_mobile_form_gives_the_same_e164(digits: str) -> None:
    try:  # the library refuses some ranges outright (179…: "too short")
        valid = phonenumbers.is_valid_number(phonenumbers.parse(digits, "CN"))
    except phonenumbers.NumberParseException:
        valid = False
    if not valid:
        with pytest.raises(InvalidNumberError) as caught:
            normalize(digits)
        assert caught.value.code == MOBILE_NUMBER_ILLEGAL
        return
    e164 = "+86" + digits
    spaced = f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}"
    for form in (digits, "86" + digits, "0086" + digits, e164, spaced):
        assert normalize(form) == e164


def test_national_and_trunk_forms() -> None:
    assert national(PhoneNumber(MOBILE)) == "13800138000"
    assert national(PhoneNumber(BEIJING)) == "01012345678"
    assert national(PhoneNumber(SHENZHEN)) == "075512345678"
    assert national(PhoneNumber("+86950130000000")) == "950130000000"
    assert national(PhoneNumber("+864001234567")) == "4001234567"
    assert national(PhoneNumber("+16502530000")) == "0016502530000"
    assert for_trunk(PhoneNumber(BEIJING), "national") == "01012345678"
    assert for_trunk(PhoneNumber(BEIJING), "e164") == BEIJING
    with pytest.raises(ValueError, match="format"):
        for_trunk(PhoneNumber(BEIJING), "E.164")


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("+8613800138000", MOBILE),
        ("8613800138000", MOBILE),
        ("13800138000", MOBILE),
        ("008613800138000", MOBILE),
        ("+86-138-0013-8000", MOBILE),
        ("138.0013.8000", MOBILE),
        ("%2B8613800138000", MOBILE),
        ("+8613800138000;phone-context=example.com", MOBILE),
        ("01012345678", BEIJING),
        ("010-1234-5678", BEIJING),
        ("(010)12345678", BEIJING),
        ("+861012345678", BEIJING),
        ("861012345678", BEIJING),
        ("1012345678", BEIJING),  # carriers may drop the trunk 0: lenient here
        ("1795113800138000", MOBILE),  # IP-dialling prefix 17951, stripped by the library
        ("075512345678", SHENZHEN),
        ("950130000000", "+86950130000000"),
        ("+16502530000", "+16502530000"),
        (None, None),
        ("", None),
        ("anonymous", None),
        ("Anonymous", None),
        ("+", None),
        ("95588", None),
        ("12345", None),
        ("+13800138000", None),  # "+" then 11 digits is +1 380…, not a Chinese mobile
        ("1380013800", None),
        ("x" * 1000, None),
        ("1" * 1000, None),
    ],
)
def test_from_sip_user(user: str | None, expected: str | None) -> None:
    assert from_sip_user(user) == expected


@given(st.text(max_size=40))
def test_from_sip_user_never_raises(user: str) -> None:
    number = from_sip_user(user)
    assert number is None or number.startswith("+")


@given(st.from_regex(r"(\+?86)?1[0-9]{10}", fullmatch=True))
def test_from_sip_user_fast_path_agrees_with_the_library(user: str) -> None:
    digits = user.removeprefix("+")
    try:
        parsed = phonenumbers.parse("+" + digits if digits.startswith("86") else digits, "CN")
    except phonenumbers.NumberParseException:
        expected = None  # e.g. "11000…": the library strips 110xx as a carrier-selection prefix
    else:
        expected = (
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            if phonenumbers.is_valid_number(parsed)
            else None
        )
    assert from_sip_user(user) == expected


def test_from_sip_user_speed() -> None:
    """Printed, not asserted: the call path parses the R-URI and the caller per call."""
    samples = ["+8613800138000", "13912345678", "8618612345678", "01012345678", "+861012345678"]
    rounds = 20_000
    for sample in samples:
        from_sip_user(sample)  # warm the cache of the slow path
        start = time.perf_counter()
        for _ in range(rounds):
            from_sip_user(sample)
        per_call_ns = (time.perf_counter() - start) / rounds * 1e9
        print(f"from_sip_user({sample!r}): {per_call_ns:.0f} ns/call")
    start = time.perf_counter()
    for sample in samples * 20:
        normalize(sample)
    print(f"normalize: {(time.perf_counter() - start) / 100 * 1e6:.1f} µs/call")


@pytest.mark.parametrize(
    ("number", "location"),
    [
        (MOBILE, Location(city="北京市", province="北京市", description="北京市")),
        (BEIJING, Location(city="北京市", province="北京市", description="北京市")),
        ("+862212345678", Location(city="天津市", province="天津市", description="天津市")),
        (SHENZHEN, Location(city="深圳市", province="广东省", description="广东省深圳市")),
        ("+8613500000000", Location(city="广州市", province="广东省", description="广东省广州市")),
        (
            "+8689812345678",
            Location(city="海口市", province="海南省", description="海南省海口市"),
        ),
        (
            "+867711234567",
            Location(city="南宁市", province="广西壮族自治区", description="广西南宁市"),
        ),
        (
            "+869911234567",
            Location(city="乌鲁木齐市", province="新疆维吾尔自治区", description="新疆乌鲁木齐市"),
        ),
        (
            "+864711234567",
            Location(city="呼和浩特市", province="内蒙古自治区", description="内蒙古呼和浩特市"),
        ),
        (
            "+869511234567",  # 0951 Yinchuan, not a 95 number
            Location(city="银川市", province="宁夏回族自治区", description="宁夏银川市"),
        ),
        (
            "+86950130000000",
            Location(city=None, province=None, nationwide=True, description="全国"),
        ),
        ("+864001234567", Location(city=None, province=None, nationwide=True, description="全国")),
        # New ranges the geocoder knows only as "China".
        ("+8617012345678", Location(city=None, province=None, description="中国")),
        ("+16502530000", Location(city=None, province=None, description="美国")),
        (
            "+85221234567",
            Location(city="香港特别行政区", province="香港特别行政区", description="香港"),
        ),
    ],
)
def test_home_location(number: str, location: Location) -> None:
    assert home_location(PhoneNumber(number)) == location


@settings(max_examples=1000)  # the pattern itself is covered by the from_sip_user test above
@given(st.from_regex(r"(\+86|86)?1[0-9]{10}", fullmatch=True))
def test_normalize_fast_path_agrees_with_the_full_parse(raw: str) -> None:
    """normalize's shortcut for plain mobiles answers as the full phonenumbers parse does."""
    try:
        expected: str | None = numbers._parse(raw, "CN", need_trunk_prefix=True)
    except InvalidNumberError:
        expected = None
    try:
        got: str | None = normalize(raw)
    except InvalidNumberError:
        got = None
    assert got == expected


@settings(max_examples=1000)
@given(st.from_regex(r"\+861[0-9]{10}", fullmatch=True))
def test_the_direct_e164_object_geocodes_and_formats_as_parse_does(number: str) -> None:
    direct = numbers._parse_e164(PhoneNumber(number))
    parsed = phonenumbers.parse(number, None)
    assert direct == parsed
    assert phonenumbers.geocoder.description_for_number(
        direct, "zh"
    ) == phonenumbers.geocoder.description_for_number(parsed, "zh")
    assert phonenumbers.format_number(
        direct, phonenumbers.PhoneNumberFormat.NATIONAL
    ) == phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
