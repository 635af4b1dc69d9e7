"""Provinces and their capitals, for the *smart* allocation mode (SPEC §3).

A wanted city without a free X falls back to the capital of its province. Province names come
in two spellings — the inventory's short form (``广东``) and the geocoder's official one
(``广东省``, ``广西壮族自治区``) — so lookups go through :func:`province_key`.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PROVINCE_CAPITALS", "capital_of", "city_key", "province_key"]

#: Short province name → its capital (short city name). The four municipalities, Hong Kong and
#: Macao are their own capital.
PROVINCE_CAPITALS: Final[dict[str, str]] = {
    "北京": "北京", "天津": "天津", "上海": "上海", "重庆": "重庆",
    "河北": "石家庄", "山西": "太原", "内蒙古": "呼和浩特", "辽宁": "沈阳", "吉林": "长春",
    "黑龙江": "哈尔滨", "江苏": "南京", "浙江": "杭州", "安徽": "合肥", "福建": "福州",
    "江西": "南昌", "山东": "济南", "河南": "郑州", "湖北": "武汉", "湖南": "长沙",
    "广东": "广州", "广西": "南宁", "海南": "海口", "四川": "成都", "贵州": "贵阳",
    "云南": "昆明", "西藏": "拉萨", "陕西": "西安", "甘肃": "兰州", "青海": "西宁",
    "宁夏": "银川", "新疆": "乌鲁木齐", "香港": "香港", "澳门": "澳门", "台湾": "台北",
}  # fmt: skip

# Longest first, so 壮族自治区 is removed before 自治区 would leave 广西壮族.
_PROVINCE_SUFFIXES: Final = (
    "维吾尔自治区", "壮族自治区", "回族自治区", "特别行政区", "自治区", "省", "市",
)  # fmt: skip


def province_key(name: str) -> str:
    """``广西壮族自治区`` → ``广西``, ``广东省`` → ``广东``, ``北京市`` → ``北京``."""
    text = name.strip()
    for suffix in _PROVINCE_SUFFIXES:
        if text.endswith(suffix) and len(text) > len(suffix):
            return text.removesuffix(suffix)
    return text


def city_key(name: str) -> str:
    """City names compare without the 市 suffix (the geocoder writes 深圳市, imports 深圳)."""
    return name.strip().removesuffix("市")


def capital_of(province: str) -> str | None:
    """The capital of ``province`` (any spelling), or None for an unknown name."""
    return PROVINCE_CAPITALS.get(province_key(province))
