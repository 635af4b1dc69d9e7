"""Phone numbers: normalisation to E.164, trunk formats, SIP user parts, home location.

Built on ``phonenumbers`` (Google's libphonenumber metadata) with the default region CN.
What the library considers valid is the base rule, with these decisions on top:

- **Input forms** accepted by :func:`normalize`: ``13800138000``, ``+86 138 0013 8000``,
  ``+8613800138000``, ``8613800138000``, ``008613800138000``, ``010-12345678``,
  ``(010) 1234 5678``, ``01012345678``, ``0755-12345678``; spaces, ``-``, ``.`` and parentheses
  are visual separators; full-width characters are folded (NFKC).  Letters and anything else
  are refused (the library would silently read vanity letters or drop trailing junk).
- **Landlines need their area code with its trunk prefix 0** when written nationally
  (``2012345678`` is refused, ``020-12345678`` and ``+86 20 1234 5678`` are fine): a bind must
  never guess.  :func:`from_sip_user` is lenient here, as carriers are.
- **X numbers**: 170/171 virtual-operator mobiles are valid mobiles for the library already.
  95 numbers: the library knows ``950`` + 7–8 digits (shared cost, 10–11 digits); carriers also
  hand out 12-digit ``950…`` numbers (e.g. ``95013`` + 7), so ``950`` + 7–9 digits is accepted.
  Other 95 prefixes are refused: ``+86 951…955`` are Ningxia area codes (0951 Yinchuan … 0955
  Zhongwei), so only ``950`` is unambiguous in E.164, and 5-digit ``95xxx`` service numbers
  (``95588``) are short codes, not numbers that can be bound.
- **Other countries**: any number the library considers valid is accepted (callers may be
  abroad); whether a pool accepts it as A or B is the API's business.

Errors are :class:`InvalidNumberError` with ``code`` ``MOBILE_NUMBER_ILLEGAL`` when the input
looks like a Chinese mobile (its national digits start ``13``–``19``), else ``NUMBER_ILLEGAL``,
mirroring the reference service's ``isv.MOBILE_NUMBER_ILLEGAL``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Final
from urllib.parse import unquote

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType, geocoder
from phonenumbers.phonemetadata import PhoneMetadata

from routing.masking import mask_number
from routing.model import PhoneNumber, RoutingError

__all__ = [
    "InvalidNumberError",
    "Location",
    "for_trunk",
    "from_sip_user",
    "home_location",
    "is_nationwide",
    "national",
    "normalize",
]

DEFAULT_REGION: Final = "CN"
MOBILE_NUMBER_ILLEGAL: Final = "MOBILE_NUMBER_ILLEGAL"
NUMBER_ILLEGAL: Final = "NUMBER_ILLEGAL"

_CN_PREFIX: Final = "+86"
# What a typed number may contain after NFKC folding: one leading "+", digits, separators.
_ALLOWED: Final = re.compile(r"\+?[0-9 \t\-.()/]*[0-9][0-9 \t\-.()/]*")
_NOT_DIGIT: Final = re.compile(r"[^0-9]")
# National digits of something that looks like a Chinese mobile: 13x … 19x, 7 digits or more
# (a typo'd mobile; "1800" or "12345" are not mobiles gone wrong).
_LOOKS_MOBILE: Final = re.compile(r"1[3-9][0-9]{5}")
# 95 numbers we accept beyond the library (see module docstring): 950 + 7..9 digits.
_NATIONWIDE_95: Final = re.compile(r"950[0-9]{7,9}")


def _cn_mobile_pattern() -> re.Pattern[str]:
    # Taken from the library's own metadata so the fast path of from_sip_user can never disagree
    # with phonenumbers.is_valid_number about which 11-digit strings are mobiles (tested).
    metadata = PhoneMetadata.metadata_for_region(DEFAULT_REGION)
    assert metadata is not None and metadata.mobile is not None
    pattern = metadata.mobile.national_number_pattern
    assert pattern is not None
    return re.compile(pattern)


_CN_MOBILE: Final = _cn_mobile_pattern()
_SLOW_CACHE_SIZE: Final = 65_536


class InvalidNumberError(RoutingError, ValueError):
    """A phone number that cannot be normalised; never bound, never routed.

    ``code`` is ``MOBILE_NUMBER_ILLEGAL`` or ``NUMBER_ILLEGAL``; ``message`` names the input
    masked (``138****800``).
    """


@dataclass(frozen=True, slots=True)
class Location:
    """Home location (归属地) of a number, from the number-range geocoder.

    ``province`` is the official full name (``广东省``, ``北京市``, ``广西壮族自治区``),
    ``city`` the prefecture as the geocoder spells it (``深圳市``, ``喀什地区``,
    ``延边朝鲜族自治州``); for the four municipalities both are the municipality (``北京市``),
    likewise for Hong Kong and Macao (``香港特别行政区``).
    ``nationwide`` is true for non-geographic numbers (950 numbers, 400/800), whose city and
    province are None.  Both are None as well when the geocoder only knows the country (new
    mobile ranges such as some 170/199 numbers come back as just ``中国``) or for numbers abroad;
    ``description`` keeps the geocoder's raw text (``""`` when it has none).
    """

    city: str | None
    province: str | None
    nationwide: bool = False
    description: str = ""


# Province-level divisions: the short name the geocoder may use → the official full name.
# The geocoder's zh data writes provinces with 省 ("广东省深圳市"), autonomous regions by short
# name ("广西南宁市", "新疆喀什地区"), municipalities in full ("北京市"), and has a few entries
# without any suffix ("天津", "云南西双版纳"); all of these forms are handled.
_PROVINCES: Final[dict[str, str]] = {
    "北京": "北京市", "天津": "天津市", "上海": "上海市", "重庆": "重庆市",
    "河北": "河北省", "山西": "山西省", "辽宁": "辽宁省", "吉林": "吉林省", "黑龙江": "黑龙江省",
    "江苏": "江苏省", "浙江": "浙江省", "安徽": "安徽省", "福建": "福建省", "江西": "江西省",
    "山东": "山东省", "河南": "河南省", "湖北": "湖北省", "湖南": "湖南省", "广东": "广东省",
    "海南": "海南省", "四川": "四川省", "贵州": "贵州省", "云南": "云南省", "陕西": "陕西省",
    "甘肃": "甘肃省", "青海": "青海省", "台湾": "台湾省",
    "内蒙古": "内蒙古自治区", "广西": "广西壮族自治区", "西藏": "西藏自治区",
    "宁夏": "宁夏回族自治区", "新疆": "新疆维吾尔自治区",
    "香港": "香港特别行政区", "澳门": "澳门特别行政区",
}  # fmt: skip
# Province-level divisions that are one city: city = province.
_MUNICIPALITIES: Final = frozenset(
    {"北京市", "天津市", "上海市", "重庆市", "香港特别行政区", "澳门特别行政区"}
)
_PROVINCE_SUFFIXES: Final = ("省", "市", "壮族自治区", "回族自治区", "维吾尔自治区", "自治区")


def _digits_of(text: str) -> str:
    return _NOT_DIGIT.sub("", text)


def _national_digits(text: str) -> str:
    """The digits of ``text`` without a leading Chinese country code (+86, 0086, 86)."""
    digits = _digits_of(text)
    if text.lstrip().startswith("+"):
        return digits[2:] if digits.startswith("86") else ""
    if digits.startswith("00"):
        return digits[4:] if digits.startswith("0086") else ""
    if digits.startswith("86") and len(digits) >= 12:
        return digits[2:]
    return digits


def _error(raw: str, why: str) -> InvalidNumberError:
    national_digits = _national_digits(raw)
    code = MOBILE_NUMBER_ILLEGAL if _LOOKS_MOBILE.match(national_digits) else NUMBER_ILLEGAL
    shown = mask_number(raw) if raw.strip() else "(empty)"
    kind = "mobile number" if code == MOBILE_NUMBER_ILLEGAL else "phone number"
    return InvalidNumberError(code, f"{shown!r} is not a valid {kind}: {why}")


def _parse(raw: str, region: str, *, need_trunk_prefix: bool) -> PhoneNumber:
    """Shared core of normalize and from_sip_user; raises InvalidNumberError."""
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        raise _error(raw, "empty")
    if not _ALLOWED.fullmatch(text):
        raise _error(raw, "only digits, a leading '+' and separators (space - . ( ) /) allowed")
    try:
        parsed = phonenumbers.parse(text, region, keep_raw_input=False)
    except NumberParseException as exc:
        raise _error(raw, "not a phone number") from exc
    nsn = phonenumbers.national_significant_number(parsed)
    if parsed.country_code == 86 and _NATIONWIDE_95.fullmatch(nsn):
        return PhoneNumber(f"+86{nsn}")
    if not phonenumbers.is_valid_number(parsed):
        raise _error(raw, "wrong length or unknown number range")
    if (
        need_trunk_prefix
        and parsed.country_code == 86
        and phonenumbers.region_code_for_number(parsed) == "CN"
        and not text.startswith("+")
    ):
        digits = _digits_of(text)
        from_default_country = not (digits.startswith("0086") or digits.startswith("86" + nsn))
        if (
            from_default_country
            and not digits.startswith("0")
            and phonenumbers.number_type(parsed) == PhoneNumberType.FIXED_LINE
        ):
            raise _error(raw, "a landline needs its area code with the leading 0 (010-…)")
    return PhoneNumber(phonenumbers.format_number(parsed, PhoneNumberFormat.E164))


def normalize(raw: str, *, region: str = DEFAULT_REGION) -> PhoneNumber:
    """Normalise a typed phone number to E.164 (``+8613800138000``) or raise.

    Accepts every common written form of Chinese mobiles, landlines with area code, 170/171
    virtual-operator mobiles, 950 nationwide numbers and valid numbers abroad (see the module
    docstring for the exact rules).  Raises :class:`InvalidNumberError` (a ``ValueError``)
    with ``code`` ``MOBILE_NUMBER_ILLEGAL`` or ``NUMBER_ILLEGAL``.  Never returns something
    invalid.  Slow (tens of µs) except for the common case of a plain Chinese mobile
    (``13800138000``, ``+8613800138000``, ``8613800138000``), recognised by the library's own
    mobile pattern as :func:`from_sip_user` does: the bind path normalises two of those per bind.
    """
    if region == DEFAULT_REGION and raw.isascii():
        length = len(raw)
        if length == 11 and raw.isdigit() and _CN_MOBILE.fullmatch(raw):
            return PhoneNumber(_CN_PREFIX + raw)
        if length == 14 and raw[:3] == "+86" and raw[3:].isdigit() and _CN_MOBILE.fullmatch(raw, 3):
            return PhoneNumber(raw)
        if length == 13 and raw[:2] == "86" and raw.isdigit() and _CN_MOBILE.fullmatch(raw, 2):
            return PhoneNumber("+" + raw)
    return _parse(raw, region, need_trunk_prefix=True)


@lru_cache(maxsize=_SLOW_CACHE_SIZE)
def _from_sip_user_slow(user: str) -> PhoneNumber | None:
    text = user.split(";", 1)[0]
    if "%" in text:
        text = unquote(text)
    try:
        return _parse(text, DEFAULT_REGION, need_trunk_prefix=False)
    except InvalidNumberError:
        return None


def from_sip_user(user: str | None) -> PhoneNumber | None:
    """Read the user part of a SIP/tel URI as carriers send it; None when it is not a number.

    Accepts ``+8613800138000``, ``8613800138000``, ``13800138000``, ``010…``/``+8610…``,
    visual separators (RFC 3966 ``-``, ``.``, ``(``, ``)``), URI parameters after ``;`` and
    %-escapes; a landline without its trunk 0 is taken as the library reads it, and so are
    carrier-selection / IP-dialling prefixes the library strips (``17951`` + number).  Never
    raises.

    On the call path (twice per call): plain-digit Chinese mobiles are checked against the
    library's own mobile pattern without a full parse; everything else goes through a bounded
    LRU cache of the full parse.
    """
    if not user:
        return None
    if user[0] == "+":
        digits = user[1:]
        if (
            len(digits) == 13
            and digits.isdigit()
            and digits.isascii()
            and digits[:2] == "86"
            and _CN_MOBILE.fullmatch(digits, 2)
        ):
            return PhoneNumber(user)
    elif user.isdigit() and user.isascii():
        length = len(user)
        if length == 11 and _CN_MOBILE.fullmatch(user):
            return PhoneNumber(_CN_PREFIX + user)
        if length == 13 and user[:2] == "86" and _CN_MOBILE.fullmatch(user, 2):
            return PhoneNumber("+" + user)
    if len(user) > 64:
        # Nothing this long is a phone number; keep junk out of the cache.
        return None
    return _from_sip_user_slow(user)


def _parse_e164(number: PhoneNumber) -> phonenumbers.PhoneNumber:
    # A Chinese mobile in E.164 (+86 and 11 digits from 1): build the library's object
    # directly, ~40x cheaper than parse() (allocation geocodes A on every bind without X).
    nsn = number[3:]
    if number[:3] == _CN_PREFIX and len(nsn) == 11 and nsn[0] == "1" and nsn.isdigit():
        return phonenumbers.PhoneNumber(country_code=86, national_number=int(nsn))
    return phonenumbers.parse(number, None)


def is_nationwide(number: PhoneNumber) -> bool:
    """True for non-geographic Chinese numbers: 950 numbers and 400/800 numbers."""
    return number.startswith(("+86950", "+86400", "+86800"))


@lru_cache(maxsize=_SLOW_CACHE_SIZE)
def national(number: PhoneNumber) -> str:
    """National dialling form of an E.164 number: ``13800138000``, ``01012345678``.

    Chinese landlines get their trunk prefix 0; mobiles, 950, 400 and 800 numbers have none.
    A number abroad is given in the form dialled from China: ``00`` + country code + number.
    """
    if not number.startswith(_CN_PREFIX):
        return "00" + number[1:]
    nsn = number[3:]
    if _CN_MOBILE.fullmatch(nsn) or is_nationwide(number):
        return nsn
    return _digits_of(phonenumbers.format_number(_parse_e164(number), PhoneNumberFormat.NATIONAL))


def for_trunk(number: PhoneNumber, number_format: str) -> str:
    """The number as a trunk wants it in SIP: ``"national"`` → :func:`national`, ``"e164"`` → E.164.

    Raises ``ValueError`` for any other format name (config validation should have caught it).
    """
    if number_format == "e164":
        return number
    if number_format == "national":
        return national(number)
    raise ValueError(f"unknown trunk number format {number_format!r} (national or e164)")


def _split_description(description: str) -> tuple[str | None, str | None]:
    """(province, city) from the geocoder's zh text; (None, None) when it is only a country."""
    for short, full in _PROVINCES.items():
        if not description.startswith(short):
            continue
        rest = description[len(short) :]
        for suffix in _PROVINCE_SUFFIXES:
            if rest.startswith(suffix):
                rest = rest[len(suffix) :]
                break
        if full in _MUNICIPALITIES:
            return full, full
        return full, rest or None
    return None, None


@lru_cache(maxsize=_SLOW_CACHE_SIZE)
def home_location(number: PhoneNumber) -> Location:
    """Home location (归属地) of a number from ``phonenumbers.geocoder`` in Chinese.

    Examples: ``+861012345678`` → 北京市/北京市; ``+8675512345678`` → 广东省/深圳市; a mobile →
    its range's city (``+8613800138000`` → 北京市); ``+8613907711234`` → 广西壮族自治区/南宁市;
    950 and 400/800 numbers → nationwide, city and province None.  See :class:`Location`.
    """
    if is_nationwide(number):
        return Location(city=None, province=None, nationwide=True, description="全国")
    try:
        parsed = _parse_e164(number)
    except NumberParseException:
        return Location(city=None, province=None)
    description = geocoder.description_for_number(parsed, "zh")
    if parsed.country_code not in (86, 852, 853):
        return Location(city=None, province=None, description=description)
    province, city = _split_description(description)
    return Location(city=city, province=province, description=description)
