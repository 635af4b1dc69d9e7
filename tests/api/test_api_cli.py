"""The CLI's pieces that need no server: number display, usage errors as JSON, the base URL."""

from __future__ import annotations

import json

import pytest

from config import load_settings
from engine.cli import _base_url, display_number, main
from routing.model import PhoneNumber
from routing.numbers import national


@pytest.mark.parametrize(
    "number",
    [
        "+8613800138000", "+8617000000001", "+8619912345678", "+861012345678",
        "+862012345678", "+8675512345678", "+8695013000001", "+86950130000012",
        "+864001234567", "+868001234567", "+85291234567", "+14155552671",
    ],
)  # fmt: skip
def test_display_matches_routing_national(number: str) -> None:
    shown = display_number(number)
    if number.startswith("+86"):
        assert shown == national(PhoneNumber(number))
    else:
        assert shown == number  # abroad: E.164 as the API gives it


def test_display_leaves_other_values() -> None:
    assert display_number(None) is None
    assert display_number(17) == 17
    assert display_number("+86abc") == "+86abc"


@pytest.mark.parametrize(
    "argv",
    [
        ["bind", "axb", "--pool", "P", "--a", "1"],
        ["pool", "create", "--type", "AXZ", "--name", "n"],
        ["pool", "add-numbers", "--pool", "P", "--count", "0"],
        ["calls", "tail", "--limit", "x"],
        ["unbind", "--pool", "P"],
    ],
)
def test_usage_errors_are_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out = capsys.readouterr()
    assert json.loads(out.out)["code"] == "USAGE"
    assert "usage:" in out.err


def test_config_error_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", "/nonexistent/maskline.toml", "calls", "tail"]) == 2
    assert json.loads(capsys.readouterr().out)["code"] == "CONFIG_ILLEGAL"


def test_base_url_reaches_wildcard_listeners_on_loopback() -> None:
    assert _base_url(load_settings(None, env={"MASKLINE_API__LISTEN": "0.0.0.0:9000"})) == (
        "http://127.0.0.1:9000"
    )
    assert _base_url(load_settings(None, env={"MASKLINE_API__LISTEN": "[::]:9000"})) == (
        "http://[::1]:9000"
    )
    assert _base_url(load_settings(None, env={"MASKLINE_API__LISTEN": "10.0.0.5:80"})) == (
        "http://10.0.0.5:80"
    )
