"""End-to-end: the real ``maskline serve`` says in its start log line which modules run compiled.

An operator reads there whether the mypyc build (``make compiled``, build_compiled.py) is in
effect; the stop line's endpoint counters come from a compiled ``EndpointStats`` when it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    free_port_udp_and_tcp,
    start_server,
    stop_server,
    write_config,
)

import build_compiled
from sip.compiled_guard import MANIFEST_NAME

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(build_compiled.__file__).resolve().parent


def log_events(path: Path) -> dict[str, dict[str, Any]]:
    """The last line of each event in a JSON log."""
    events: dict[str, dict[str, Any]] = {}
    for line in path.read_text("utf-8").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            events[entry["event"]] = entry
    return events


def test_the_start_line_names_the_compiled_modules(tmp_path: Path) -> None:
    built = [
        module
        for module in build_compiled.COMPILED_MODULES
        if (REPO_ROOT / module.rpartition(".")[0] / MANIFEST_NAME).exists()
    ]
    sip_port = free_port_udp_and_tcp()
    server = start_server(write_config(tmp_path, sip_port), tmp_path, sip_port)
    stop_server(server)  # start_server waited for 200 to OPTIONS: messages were counted
    events = log_events(server.stderr_path)
    started = events["sip_listening"]
    assert started["compiled"] == len(built)
    assert started["compiled_modules"] == sorted(built)
    stopping = events["stopping"]
    assert stopping["messages_received"] >= 1
    assert set(stopping) >= {"requests_rejected", "malformed_dropped", "internal_errors"}
