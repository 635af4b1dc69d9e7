"""``GET /metrics`` of the real ``maskline serve`` after real SIPp calls (issue 7, acceptance 3),
and ``maskline backup`` beside the serving process.

One answered call with audio both ways (SIPp plays a 1 s tone from each side, 50 RTP packets
each way, and a stranger's garbage hits the caller's relay port), one call the callee answers
busy, and one call from a stranger (no binding: intercepted). The scrape must show exactly
those: 3 offered, 1 answered, 1 failed with Q.850 cause 17, 1 intercepted for no binding, the
answered call's duration, 100 packets relayed and the garbage dropped, the binding by type,
the reports still in the pull queue (cross-checked with the database file), no call or port
left in use.
"""

from __future__ import annotations

import base64
import json
import math
import re
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from e2e_support import (
    LOOPBACK,
    MasklineServer,
    free_port_udp_and_tcp,
    maskline_command,
    start_server,
    stop_server,
)
from prometheus_client.parser import text_string_to_metric_families
from rtp_pcap import tone_pcap
from test_calls_e2e import EXPIRES, TOKEN, _api_client, _await_listening, _configured, _ok, _sipp
from test_media_path_e2e import _answer_media_port

from media import g711

pytestmark = pytest.mark.e2e

X = "17000000071"
A = "13800138071"
B = "13900139071"
STRANGER = "13700137071"
TONE_S = 1.0
GARBAGE_PACKETS = 7
OPERATIONS_DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
FULL_GC_INTERVAL_S = 1

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Scene:
    server: MasklineServer
    api: httpx.Client
    callee_port: int
    workdir: Path
    metrics_url: str
    tenant_auth: str  # Basic credentials of the binding's tenant
    db_path: Path


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    workdir = tmp_path_factory.mktemp("metrics")
    config, sip_port, callee_port = _configured(workdir)
    with config.open("a", encoding="utf-8") as file:
        # A full collection every second: what the calls leave in reference cycles is found
        # within the test (test_calls_leave_no_cyclic_garbage).
        file.write(f"\n[overload]\nfull_gc_interval_s = {FULL_GC_INTERVAL_S}\n")
    server = start_server(config, workdir, sip_port)
    api = _api_client(config, sip_port)
    try:
        rows = f"number,city,province,carrier,spec\n{X},北京,北京,CMCC,1\n"
        _ok(api.post("/numbers/import", content=rows, headers={"Content-Type": "text/csv"}))
        tenant = _ok(api.post("/tenants", json={"name": "Metrics Co"}))
        pool = str(
            _ok(
                api.post(
                    "/pools", json={"type": "AXB", "name": "m", "tenant_id": tenant["tenant_id"]}
                )
            )["pool_key"]
        )
        _ok(api.post(f"/pools/{pool}/numbers", json={"count": 1}))
        binding = {"type": "AXB", "a": A, "b": B, "x": X, "expires": EXPIRES}
        _ok(api.post(f"/pools/{pool}/bindings", json=binding))
        credentials = f"{tenant['access_key_id']}:{tenant['access_key_secret']}"
        yield Scene(
            server=server,
            api=api,
            callee_port=callee_port,
            workdir=workdir,
            metrics_url=str(api.base_url).rstrip("/").removesuffix("/v1") + "/metrics",
            tenant_auth="Basic " + base64.b64encode(credentials.encode()).decode(),
            db_path=workdir / "maskline.sqlite3",
        )
    finally:
        api.close()
        stop_server(server)


def _call(
    scene: Scene,
    name: str,
    *,
    caller: str,
    uac: str,
    uas: str | None,
    uac_args: tuple[str, ...] = (),
    while_running: Callable[[Path], None] | None = None,
) -> None:
    """One call, SIPp on both sides (the callee on the trunk's port, if any)."""
    workdir = scene.workdir / name
    workdir.mkdir()
    for side, hz, ssrc in (("caller", 440.0, 0xA), ("callee", 1000.0, 0xB)):
        tone_pcap(workdir / f"{side}.pcap", frequency_hz=hz, seconds=TONE_S,
                  payload_type=g711.PAYLOAD_TYPE_PCMA, ssrc=ssrc)  # fmt: skip
    callee = None
    if uas is not None:
        command, _ = _sipp(uas, workdir, "callee", ["-mp", str(free_port_udp_and_tcp())])
        command[command.index("-p") + 1] = str(scene.callee_port)
        callee = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        _await_listening(scene.callee_port, callee)
    command, caller_trace = _sipp(
        uac, workdir, "caller",
        ["-s", X, "-key", "caller", caller, "-mp", str(free_port_udp_and_tcp()), *uac_args],
    )  # fmt: skip
    command.append(f"{scene.server.sip[0]}:{scene.server.sip[1]}")
    proc = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        if while_running is not None:
            while_running(caller_trace)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output.decode("utf-8", "replace")[-3000:]
    if callee is not None:
        assert callee.wait(timeout=30) == 0
    scene.server.assert_alive()


def _records(scene: Scene, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 15
    while True:
        calls = _ok(scene.api.get("/calls", params={"limit": 50}))["calls"]
        assert isinstance(calls, list)
        if len(calls) >= count or time.monotonic() > deadline:
            return calls
        time.sleep(0.05)


def _scrape(scene: Scene) -> Samples:
    response = httpx.get(scene.metrics_url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} not exported"
    return samples[key]


def _series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def _garbage_to_caller_port(trace: Path) -> None:
    """While the call talks: datagrams that are not RTP at our port facing the caller."""
    port = _answer_media_port(trace, timeout=10)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        for _ in range(GARBAGE_PACKETS):
            stranger.sendto(b"\x00 not RTP", (LOOPBACK, port))


def test_metrics_count_answered_busy_and_intercepted_calls(scene: Scene) -> None:
    _call(scene, "answered", caller=A, uac="uac_call_play.xml", uas="uas_answer_play.xml",
          uac_args=("-d", str(int(TONE_S * 1000) + 700)),
          while_running=_garbage_to_caller_port)  # fmt: skip
    _call(scene, "busy", caller=A, uac="uac_call_rejected.xml", uas="uas_busy.xml")
    _call(scene, "stranger", caller=STRANGER, uac="uac_call_rejected.xml", uas=None)
    records = _records(scene, 3)
    assert len(records) == 3, records
    samples = _scrape(scene)

    assert _value(samples, "maskline_calls_offered_total") == 3
    assert _value(samples, "maskline_calls_answered_total") == 1
    assert _series(samples, "maskline_calls_failed_total") == {(("cause", "17"),): 1}
    assert _series(samples, "maskline_calls_intercepted_total") == {(("reason", "no_binding"),): 1}
    assert _value(samples, "maskline_calls_active") == 0
    assert _value(samples, "maskline_asr_ratio") == pytest.approx(1 / 3)

    # The answered call: its duration is the record's, the ACD gauge says the same.
    (answered,) = [r for r in records if r["start_time"] is not None]
    assert _value(samples, "maskline_call_duration_seconds_count") == 1
    duration_s = _value(samples, "maskline_call_duration_seconds_sum")
    assert TONE_S + 0.5 <= duration_s <= TONE_S + 3.0
    assert _value(samples, "maskline_acd_seconds") == pytest.approx(duration_s)
    assert answered["release_dir"] == 1
    # Post-dial delay: only the answered call rang (uas_busy answers 486 at once); the setup
    # delay (our own) was measured on both calls that reached the trunk, on loopback fast.
    assert _value(samples, "maskline_post_dial_delay_seconds_count") == 1
    assert _value(samples, "maskline_post_dial_delay_seconds_bucket", le="1.0") == 1
    assert _value(samples, "maskline_call_setup_delay_seconds_count") == 2
    assert _value(samples, "maskline_call_setup_delay_seconds_bucket", le="0.5") == 2

    # Media: 50 packets each way relayed, the garbage dropped; every port back in the pool.
    packets_each_way = round(TONE_S / 0.02)
    assert _value(samples, "maskline_rtp_packets_relayed_total") == 2 * packets_each_way
    assert (
        _value(samples, "maskline_rtp_packets_dropped_total", reason="rejected") == GARBAGE_PACKETS
    )
    assert _value(samples, "maskline_rtp_sessions") == 0
    assert _value(samples, "maskline_media_ports_in_use") == 0
    assert _value(samples, "maskline_rtp_sessions_closed_total") >= 2

    # SIP: the endpoint's counters and transactions are there (values depend on timing).
    assert _value(samples, "maskline_sip_messages_received_total") >= 10
    assert _value(samples, "maskline_sip_transactions") >= 0
    assert _value(samples, "maskline_sip_internal_errors_total") == 0
    assert _series(samples, "maskline_sip_not_sent_total") == {
        (("reason", "udp_unaddressable"),): 0,
        (("reason", "udp_write_queue_full"),): 0,
    }

    # Bindings by type (from the store) and in the index.
    assert _series(samples, "maskline_bindings") == {
        (("type", kind),): (1 if kind == "AXB" else 0)
        for kind in ("AXB", "AXN", "AXN_EXT", "95AXN", "AXG")
    }
    assert _value(samples, "maskline_bindings_indexed") == 1

    # Reports: the tenant has no push URL, so every report waits in the pull queue.
    conn = sqlite3.connect(f"{scene.db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        (pending,) = conn.execute(
            "SELECT COUNT(*) FROM report_outbox WHERE delivered_at IS NULL"
        ).fetchone()
    finally:
        conn.close()
    # start, ring, pick-up, end; start, end; start, end.
    assert pending == 8
    assert _value(samples, "maskline_report_queue_depth", stage="outbox") == pending
    assert _value(samples, "maskline_report_queue_depth", stage="buffered") == 0
    assert _value(samples, "maskline_reports_dropped_total") == 0

    # What an operator reads in docs/operations.md (and charts: docs/grafana-dashboard.json)
    # comes out of the real process, not only out of the collector's unit tests (the overload
    # refusals were wired in there alone).
    assert _documented_but_not_served(samples) == set()

    # The loop-lag timer ticks; the process's own figures are there.
    assert _value(samples, "maskline_event_loop_lag_seconds_count") > 0
    assert _value(samples, "process_resident_memory_bytes") > 0
    assert not math.isnan(_value(samples, "maskline_calls_per_second"))


def _cyclic_garbage(scene: Scene) -> tuple[float, float]:
    """Full collections run so far, and the objects every collection found unreachable (only
    reference cycles are: reference counting frees the rest unseen)."""
    samples = _scrape(scene)
    found = sum(_series(samples, "python_gc_objects_collected_total").values())
    return _value(samples, "python_gc_collections_total", generation="2"), found


def test_a_call_leaves_no_cyclic_garbage(scene: Scene) -> None:
    # The serving process walks its old objects only by the scheduled full collections (one a
    # second in this scene; ten minutes by default): a reference cycle made per call that
    # outlives a young collection holds its objects until then. Under load most do — they are
    # young while the call is. Whether a collection finds it here depends on timing, so the
    # figure is every generation's: nothing the call made may end in a cycle at all.
    runs_before, found_before = _cyclic_garbage(scene)
    _call(scene, "cycles", caller=A, uac="uac_call_play.xml", uas="uas_answer_play.xml",
          uac_args=("-d", str(int(TONE_S * 1000) + 700)))  # fmt: skip
    _records(scene, 1)
    deadline = time.monotonic() + 20 * FULL_GC_INTERVAL_S
    runs, found = _cyclic_garbage(scene)
    while runs < runs_before + 3 and time.monotonic() < deadline:
        time.sleep(FULL_GC_INTERVAL_S / 4)
        runs, found = _cyclic_garbage(scene)
    assert runs >= runs_before + 3, "no full collection after the call"
    assert found == found_before, "reference cycles left behind (see engine/gc_policy.py)"


def _documented_but_not_served(samples: Samples) -> set[str]:
    """The ``maskline_*`` families the metrics tables of docs/operations.md list that are not
    in ``samples`` (a histogram by its ``_bucket``/``_count``/``_sum`` series)."""
    table_rows = [
        line for line in OPERATIONS_DOC.read_text("utf-8").splitlines() if line.startswith("| `")
    ]
    documented = {
        name for row in table_rows for name in re.findall(r"`(maskline_\w+)", row.split(" | ")[0])
    }
    assert len(documented) >= 40, documented
    served = {name for name, _ in samples}
    histogram_parts = ("_bucket", "_count", "_sum")
    return {
        name
        for name in documented
        if name not in served and not any(name + part in served for part in histogram_parts)
    }


def test_metrics_are_the_operators(scene: Scene) -> None:
    anonymous = httpx.get(scene.metrics_url)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "UNAUTHORIZED"
    tenant = httpx.get(scene.metrics_url, headers={"Authorization": scene.tenant_auth})
    assert tenant.status_code == 403
    assert tenant.json()["code"] == "FORBIDDEN"
    assert "/metrics" not in httpx.get(scene.metrics_url.replace("/metrics", "/openapi.json")).text


def test_backup_beside_the_serving_process(scene: Scene) -> None:
    """``maskline backup`` while the server commits binds: a complete, consistent copy."""
    stop = threading.Event()
    imported: list[int] = []

    def keep_writing() -> None:
        n = 0
        while not stop.is_set():
            row = f"number,city,province,carrier,spec\n1710000{n:04d},上海,上海,CMCC,1\n"
            response = scene.api.post(
                "/numbers/import", content=row, headers={"Content-Type": "text/csv"}
            )
            assert response.status_code < 300, response.text
            n += 1
            imported.append(n)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    out = scene.workdir / "backup.sqlite3"
    try:
        while len(imported) < 3:
            time.sleep(0.01)
        before = len(imported)
        done = subprocess.run(
            [*maskline_command(scene.server.config_path)[:-3], "backup", "--out", str(out),
             "--config", str(scene.server.config_path)],
            cwd=scene.workdir, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        after = len(imported)
    finally:
        stop.set()
        writer.join(timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    printed = json.loads(done.stdout)
    assert printed["path"] == str(out) and printed["size_bytes"] == out.stat().st_size
    scene.server.assert_alive()
    copy = sqlite3.connect(f"{out.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (written,) = copy.execute(
            "SELECT COUNT(*) FROM numbers WHERE number LIKE '+86171%'"
        ).fetchone()
        (bound,) = copy.execute("SELECT COUNT(*) FROM bindings").fetchone()
    finally:
        copy.close()
    # Every import acknowledged before the backup started is in it; none after it ended.
    assert before <= written <= after + 1
    assert bound == 1
