"""Tenants' call reports end to end (issue 6, acceptance 1): real ``maskline serve``, SIPp calls
over loopback, and a real HTTP receiver of the tenant's on loopback recording what is pushed.

Answered, busy and intercepted calls each produce their reports — start, ring, pick-up and end
as the call got that far — in that order per call, with the SPEC §6 fields of the call.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import LOOPBACK, MasklineServer, start_server, stop_server
from test_calls_e2e import (
    EXPIRES,
    _api_client,
    _await_listening,
    _configured,
    _ok,
    _sipp,
)

pytestmark = pytest.mark.e2e

X = "17000000031"
A = "13800138031"
B = "13900139031"
STRANGER = "13700137031"


@dataclass
class Receiver:
    """The tenant's report endpoint: records every JSON array POSTed to it."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self, port: int = 0) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                batch = json.loads(body)
                assert isinstance(batch, list)
                with receiver.lock:
                    receiver.reports.extend(batch)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://{LOOPBACK}:{self.server.server_address[1]}/reports"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def of_call(self, call_id: str, *, count: int, timeout_s: float = 15) -> list[dict[str, Any]]:
        """The reports of one call once ``count`` distinct ones arrived and its end report is
        among them (in arrival order; a call's reports are pushed in order, so none is left)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                mine = [r for r in self.reports if r.get("call_id") == call_id]
            ended = any(r["report_type"] == "end" for r in mine)
            if (ended and len({r["id"] for r in mine}) >= count) or time.monotonic() > deadline:
                return mine
            time.sleep(0.05)


@dataclass
class ReportsServer:
    server: MasklineServer
    api: httpx.Client
    callee_port: int
    receiver: Receiver
    workdir: Path


def _provision(api: httpx.Client, url: str) -> None:
    """A tenant with an AXB pool holding X, the binding A–B on X, reports pushed to ``url``."""
    csv_rows = f"number,city,province,carrier,spec\n{X},北京,北京,CMCC,1\n"
    _ok(api.post("/numbers/import", content=csv_rows, headers={"Content-Type": "text/csv"}))
    tenant = str(_ok(api.post("/tenants", json={"name": "Reports Co"}))["tenant_id"])
    pool_body = {"type": "AXB", "name": "r", "tenant_id": tenant}
    pool = str(_ok(api.post("/pools", json=pool_body))["pool_key"])
    _ok(api.post(f"/pools/{pool}/numbers", json={"count": 1}))
    binding = {"type": "AXB", "a": A, "b": B, "x": X, "expires": EXPIRES, "out_id": "o-31"}
    _ok(api.post(f"/pools/{pool}/bindings", json=binding))
    _ok(api.put(f"/tenants/{tenant}/report-urls/default", json={"url": url}))


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportsServer]:
    workdir = tmp_path_factory.mktemp("reports")
    config, sip_port, callee_port = _configured(workdir)
    server = start_server(config, workdir, sip_port)
    api = _api_client(config, sip_port)
    receiver = Receiver()
    try:
        _provision(api, receiver.start())
        yield ReportsServer(server, api, callee_port, receiver, workdir)
    finally:
        receiver.stop()
        api.close()
        stop_server(server)


def _call(scene: ReportsServer, name: str, *, caller: str, uac: str, uas: str | None) -> str:
    """Place one call; the call id of its record."""
    workdir = scene.workdir / name
    workdir.mkdir()
    listed = _ok(scene.api.get("/calls", params={"limit": 50}))["calls"]
    before = {str(r["call_id"]) for r in listed}
    callee = None
    if uas is not None:
        command, _ = _sipp(uas, workdir, "callee", ["-d", "300"])
        command[command.index("-p") + 1] = str(scene.callee_port)
        callee = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        _await_listening(scene.callee_port, callee)
    command, _ = _sipp(uac, workdir, "caller", ["-s", X, "-key", "caller", caller, "-d", "500"])
    command.append(f"{scene.server.sip[0]}:{scene.server.sip[1]}")
    done = subprocess.run(command, cwd=workdir, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout.decode("utf-8", "replace")[-2000:]
    if callee is not None:
        assert callee.wait(timeout=30) == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        calls = _ok(scene.api.get("/calls", params={"limit": 50}))["calls"]
        new = [str(r["call_id"]) for r in calls if str(r["call_id"]) not in before]
        if new:
            [call_id] = new
            return call_id
        time.sleep(0.05)
    raise AssertionError("no call record was written")


def _kinds(reports: list[dict[str, Any]]) -> list[str]:
    """Report types in first-arrival order, duplicates (same id) dropped."""
    seen: dict[str, str] = {}
    for report in reports:
        seen.setdefault(report["id"], report["report_type"])
    return list(seen.values())


def test_answered_call_reports_start_ring_pickup_end(scene: ReportsServer) -> None:
    call_id = _call(scene, "answered", caller=A, uac="uac_call.xml", uas="uas_answer.xml")
    reports = scene.receiver.of_call(call_id, count=4)
    assert _kinds(reports) == ["start", "ring", "pickup", "end"]
    start, ring, pickup, end = (next(r for r in reports if r["report_type"] == k)
                                for k in ("start", "ring", "pickup", "end"))  # fmt: skip
    for report in (start, ring, pickup, end):
        assert (report["secret_no"], report["phone_no"], report["peer_no"]) == (
            "+86" + X, "+86" + A, "+86" + B,
        )  # fmt: skip
        assert report["call_type"] == 0 and report["out_id"] == "o-31"
    assert start["ring_time"] is None and ring["ring_time"] is not None
    assert pickup["start_time"] is not None
    assert end["release_dir"] == 1 and end["release_cause"] == 16
    assert end["unconnected_cause"] == 0
    assert end["start_time"] == pickup["start_time"] and end["release_time"] is not None
    assert len({r["id"] for r in reports}) == 4


def test_busy_call_reports_start_ring_end(scene: ReportsServer) -> None:
    call_id = _call(scene, "busy", caller=A, uac="uac_call_rejected.xml", uas="uas_busy.xml")
    reports = scene.receiver.of_call(call_id, count=2)
    kinds = _kinds(reports)
    assert kinds[0] == "start" and kinds[-1] == "end" and "pickup" not in kinds
    end = reports[-1]
    assert end["release_dir"] == 2 and end["release_cause"] == 17  # the callee: user busy
    assert end["start_time"] is None


def test_intercepted_call_reports_start_and_end_with_the_cause(scene: ReportsServer) -> None:
    call_id = _call(scene, "intercepted", caller=STRANGER, uac="uac_call_rejected.xml", uas=None)
    reports = scene.receiver.of_call(call_id, count=2)
    assert _kinds(reports) == ["start", "end"]
    end = reports[-1]
    assert end["call_type"] == 4 and end["unconnected_cause"] == 2  # no binding
    assert end["secret_no"] == "+86" + X


def test_reports_pending_at_a_kill_9_are_pushed_after_the_restart(tmp_path: Path) -> None:
    """Acceptance 2: the receiver is down, a call ends, maskline dies by SIGKILL with its
    reports still undelivered; restarted, it pushes them once the receiver is back."""
    config, sip_port, callee_port = _configured(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        receiver_port = probe.getsockname()[1]  # closed again: connections are refused
    server = start_server(config, tmp_path, sip_port)
    api = _api_client(config, sip_port)
    receiver = Receiver()
    try:
        _provision(api, f"http://{LOOPBACK}:{receiver_port}/reports")
        scene = ReportsServer(server, api, callee_port, receiver, tmp_path)
        call_id = _call(scene, "before-crash", caller=A, uac="uac_call.xml", uas="uas_answer.xml")
        # The record is listed, so its end report is durable with it (and the call's earlier
        # reports were written before it); the receiver is down, so all four are pending.
        server.proc.kill()  # SIGKILL: no shutdown, no flush
        server.proc.wait()
        receiver.start(receiver_port)
        server = start_server(config, tmp_path, sip_port)
        reports = receiver.of_call(call_id, count=4, timeout_s=20)
    finally:
        receiver.stop()
        api.close()
        stop_server(server)
    assert _kinds(reports) == ["start", "ring", "pickup", "end"]
    by_id: dict[str, dict[str, Any]] = {}
    for report in reports:  # a duplicate is allowed, with the same id and the same content
        assert by_id.setdefault(report["id"], report) == report
