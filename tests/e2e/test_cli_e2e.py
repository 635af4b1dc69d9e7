"""The CLI contract against the real ``maskline serve``: exact JSON, exit codes, crash safety.

Every command runs as its own process (``maskline --config F ...``), as an operator or an external
check would run it, and talks to the server's operator API named in the config.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    MasklineServer,
    free_port_udp_and_tcp,
    server_env,
    start_server,
    stop_server,
    write_config,
)

pytestmark = pytest.mark.e2e

CLI_DEADLINE_S = 30.0
BINDS = 16  # bindings acknowledged before the kill -9, bound by parallel CLI processes
EXPIRES = "2030-01-01 00:00:00"  # Asia/Shanghai, the default zone
INVENTORY = (
    "number,city,province,carrier,spec\n"
    "17000000001,北京,北京,CMCC,1\n"
    "17000000002,北京,北京,CMCC,1\n"
    "17000000003,北京,北京,CMCC,1\n"
    "17000000004,北京,北京,CMCC,1\n"
    "17100000001,深圳,广东,CUCC,2\n"
    "95013000001,全国,全国,CTCC,3\n"
)


@dataclass
class CliResult:
    returncode: int
    lines: list[dict[str, Any]]
    stderr: str

    @property
    def one(self) -> dict[str, Any]:
        assert len(self.lines) == 1, self
        return self.lines[0]


def cli_command(config: Path) -> list[str]:
    """``maskline --config CONFIG`` (the console script next to this interpreter)."""
    script = Path(sys.executable).parent / "maskline"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli"]
    return [*command, "--config", str(config)]


def cli(config: Path, *args: str, cwd: Path | None = None) -> CliResult:
    """Run ``maskline --config CONFIG ARGS``; stdout must be JSON lines."""
    command = [*cli_command(config), *args]
    done = subprocess.run(
        command,
        cwd=cwd,
        env=server_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=CLI_DEADLINE_S,
        check=False,
        text=True,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return CliResult(done.returncode, lines, done.stderr)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[MasklineServer, Path]]:
    """A running server and its config; SIGTERM must end it with 0."""
    sip_port = free_port_udp_and_tcp()
    config = write_config(tmp_path, sip_port)
    server = start_server(config, tmp_path, sip_port, "maskline.stderr")
    yield server, config
    stop_server(server)


def provision(config: Path, tmp_path: Path) -> dict[str, str]:
    """Import the inventory; one pool per type with its numbers; returns type → pool key."""
    csv_path = tmp_path / "numbers.csv"
    csv_path.write_text(INVENTORY, encoding="utf-8")
    imported = cli(config, "numbers", "import", str(csv_path))
    assert (imported.returncode, imported.lines) == (0, [{"imported": 6}]), imported
    pools: dict[str, str] = {}
    for kind in ("AXB", "AXN", "AXG", "95AXN", "AXN_EXT"):
        created = cli(config, "pool", "create", "--type", kind, "--name", f"{kind} pool")
        assert created.returncode == 0, created
        assert set(created.one) == {"pool_key"}
        assert re.fullmatch(r"FC[0-9A-F]{16}", created.one["pool_key"])
        pools[kind] = created.one["pool_key"]
    return pools


def test_cli_contract(served: tuple[MasklineServer, Path], tmp_path: Path) -> None:
    server, config = served
    pools = provision(config, tmp_path)

    # Re-importing the same file adds nothing.
    assert cli(config, "numbers", "import", str(tmp_path / "numbers.csv")).lines == [
        {"imported": 0}
    ]

    # pool add-numbers: random free numbers of the city, national digits.
    added = cli(config, "pool", "add-numbers", "--pool", pools["AXB"], "--count", "2",
                "--city", "北京")  # fmt: skip
    assert added.returncode == 0, added
    axb_numbers = added.one["numbers"]
    assert len(axb_numbers) == 2
    assert set(axb_numbers) <= {"17000000001", "17000000002", "17000000003", "17000000004"}
    for kind, city in (("AXN", "北京"), ("AXG", "北京"), ("AXN_EXT", "深圳")):
        more = cli(config, "pool", "add-numbers", "--pool", pools[kind], "--count", "1",
                   "--city", city)  # fmt: skip
        assert more.returncode == 0, more
    assert cli(config, "pool", "add-numbers", "--pool", pools["95AXN"], "--count", "1").lines == [
        {"numbers": ["95013000001"]}
    ]
    empty = cli(config, "pool", "add-numbers", "--pool", pools["AXN"], "--count", "5")
    assert empty.returncode == 1 and empty.one["code"] == "NO_AVAILABLE_NUMBER", empty

    # bind axb: X allocated from the pool, printed in national digits.
    bound = cli(config, "bind", "axb", "--pool", pools["AXB"], "--a", "13800138000",
                "--b", "+86 139 0013 9000", "--expires", EXPIRES, "--record")  # fmt: skip
    assert bound.returncode == 0, bound
    assert set(bound.one) == {"sub_id", "secret_no"}
    assert bound.one["sub_id"].isdigit()
    x = bound.one["secret_no"]
    assert x in axb_numbers

    # The same A again on that X: a conflict, exit 1, the error object on stdout.
    conflict = cli(config, "bind", "axb", "--pool", pools["AXB"], "--a", "13800138000",
                   "--b", "13700137000", "--x", x, "--expires", EXPIRES)  # fmt: skip
    assert conflict.returncode == 1
    assert conflict.one["code"] == "BIND_CONFLICT" and conflict.one["message"]

    # binding show: the binding as JSON, numbers national, times local.
    shown = cli(config, "binding", "show", "--pool", pools["AXB"], "--sub-id", bound.one["sub_id"])
    assert shown.returncode == 0, shown
    assert shown.one == {
        "sub_id": bound.one["sub_id"], "pool_key": pools["AXB"], "type": "AXB", "secret_no": x,
        "a": "13800138000", "b": "13900139000", "group_id": None, "extension": None,
        "expires": EXPIRES, "record": True, "restriction": "NONE", "ring_timeout_s": 60,
        "out_id": None, "ringback": {}, "created": shown.one["created"],
    }  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", shown.one["created"])

    # bind axn with a default B; 95axn; axn-ext (extension allocated); axg with a group.
    axn = cli(config, "bind", "axn", "--pool", pools["AXN"], "--a", "010-12345678",
              "--b", "13900139000", "--expires", EXPIRES)  # fmt: skip
    assert axn.returncode == 0, axn
    assert set(axn.one) == {"sub_id", "secret_no"}
    axn_shown = cli(config, "binding", "show", "--pool", pools["AXN"], "--sub-id",
                    axn.one["sub_id"])  # fmt: skip
    assert axn_shown.one["a"] == "01012345678" and axn_shown.one["b"] == "13900139000"
    n95 = cli(config, "bind", "95axn", "--pool", pools["95AXN"], "--a", "13800138000",
              "--expires", EXPIRES)  # fmt: skip
    assert n95.returncode == 0 and n95.one["secret_no"] == "95013000001", n95
    ext = cli(config, "bind", "axn-ext", "--pool", pools["AXN_EXT"], "--a", "13800138000",
              "--expires", EXPIRES)  # fmt: skip
    assert ext.returncode == 0, ext
    assert ext.one == {"sub_id": ext.one["sub_id"], "secret_no": "17100000001", "extension": "1"}
    group = cli(config, "group", "create", "--pool", pools["AXG"], "--name", "drivers",
                "--numbers", "13700137000,13600136000")  # fmt: skip
    assert group.returncode == 0, group
    assert set(group.one) == {"group_id"} and group.one["group_id"].isdigit()
    axg = cli(config, "bind", "axg", "--pool", pools["AXG"], "--a", "13800138000",
              "--group", group.one["group_id"], "--expires", EXPIRES)  # fmt: skip
    assert axg.returncode == 0 and set(axg.one) == {"sub_id", "secret_no"}, axg

    # Bad input: specific codes, exit 1.
    cases = [
        (("bind", "axb", "--pool", pools["AXB"], "--a", "1380013800", "--b", "13900139000",
          "--expires", EXPIRES), "MOBILE_NUMBER_ILLEGAL"),
        (("bind", "axb", "--pool", pools["AXB"], "--a", "13800138001", "--b", "13900139001",
          "--expires", "2020-01-01 00:00:00"), "EXPIRE_DATE_ILLEGAL"),
        (("bind", "axb", "--pool", "FC0000000000000000", "--a", "13800138001",
          "--b", "13900139001", "--expires", EXPIRES), "POOL_NOT_EXIST"),
        (("bind", "axb", "--pool", pools["AXN"], "--a", "13800138001", "--b", "13900139001",
          "--expires", EXPIRES), "POOL_TYPE_MISMATCH"),
        (("binding", "show", "--pool", pools["AXB"], "--sub-id", "1"), "BINDING_NOT_EXIST"),
    ]  # fmt: skip
    for args, code in cases:
        result = cli(config, *args)
        assert (result.returncode, result.one["code"]) == (1, code), (args, result)

    # Usage errors: exit 2 with a JSON error too.
    usage = cli(config, "bind", "axb", "--pool", pools["AXB"], "--a", "13800138000")
    assert usage.returncode == 2 and usage.one["code"] == "USAGE", usage
    assert "--b" in usage.one["message"]

    # unbind; then the binding is gone.
    gone = cli(config, "unbind", "--pool", pools["AXB"], "--sub-id", bound.one["sub_id"])
    assert (gone.returncode, gone.lines) == (0, [{"ok": True}])
    again = cli(config, "unbind", "--pool", pools["AXB"], "--sub-id", bound.one["sub_id"])
    assert (again.returncode, again.one["code"]) == (1, "BINDING_NOT_EXIST")

    server.assert_alive()


def test_calls_tail(served: tuple[MasklineServer, Path], tmp_path: Path) -> None:
    _server, config = served
    assert cli(config, "calls", "tail").lines == []
    # Records as the engine writes them (UTC epoch seconds), straight into the live database.
    conn = sqlite3.connect(tmp_path / "maskline.sqlite3", timeout=10)
    try:
        with conn:
            for i in range(3):
                conn.execute(
                    "INSERT INTO call_records (id, call_id, phone_no, secret_no, peer_no,"
                    " call_type, call_time, release_time, release_dir, release_cause,"
                    " unconnected_cause) VALUES (?, ?, ?, ?, ?, 0, ?, ?, 1, 16, 0)",
                    (f"rec-{i}", f"call-{i}", "+8613800138000", "+8617000000001",
                     "+8613900139000", 1_893_427_200 + i, 1_893_427_260 + i),
                )  # fmt: skip
    finally:
        conn.close()
    tail = cli(config, "calls", "tail", "--limit", "2")
    assert tail.returncode == 0, tail
    assert [line["id"] for line in tail.lines] == ["rec-1", "rec-2"]  # oldest first, newest last
    newest = tail.lines[-1]
    assert newest["phone_no"] == "13800138000" and newest["secret_no"] == "17000000001"
    assert newest["peer_no"] == "13900139000"
    # 1893427202 is 2030-01-01 00:00:02 in Asia/Shanghai.
    assert newest["call_time"] == "2030-01-01 00:00:02"
    assert newest["release_time"] == "2030-01-01 00:01:02"
    assert (newest["call_type"], newest["release_dir"], newest["release_cause"]) == (0, 1, 16)
    assert newest["start_time"] is None
    bad = cli(config, "calls", "tail", "--limit", "0")
    assert bad.returncode == 2 and bad.one["code"] == "USAGE"


def test_server_unreachable(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port_udp_and_tcp())
    result = cli(config, "pool", "create", "--type", "AXB", "--name", "p")
    assert result.returncode == 1
    assert result.one["code"] == "SERVER_UNREACHABLE"
    assert "is maskline serve running on 127.0.0.1:" in result.one["message"]


def test_wrong_token(served: tuple[MasklineServer, Path], tmp_path: Path) -> None:
    _server, config = served
    other = tmp_path / "wrong-token.toml"
    other.write_text(
        config.read_text("utf-8").replace("e2e-operator-token", "not-the-token"), "utf-8"
    )
    result = cli(other, "pool", "create", "--type", "AXB", "--name", "p")
    assert (result.returncode, result.one["code"]) == (1, "UNAUTHORIZED")


def test_acknowledged_bindings_survive_kill_9(tmp_path: Path) -> None:
    """Acceptance 5: every sub_id the CLI printed is there after SIGKILL and a restart."""
    sip_port = free_port_udp_and_tcp()
    config = write_config(tmp_path, sip_port)
    server = start_server(config, tmp_path, sip_port, "maskline-1.stderr")
    try:
        pools = provision(config, tmp_path)
        added = cli(config, "pool", "add-numbers", "--pool", pools["AXB"], "--count", "4",
                    "--city", "北京")  # fmt: skip
        assert added.returncode == 0, added
        # Bind in parallel processes, so the server commits them in shared transactions.
        procs = [
            subprocess.Popen(
                [*cli_command(config), "bind", "axb", "--pool", pools["AXB"],
                 "--a", f"1380013{i:04d}", "--b", f"1390013{i:04d}", "--expires", EXPIRES],
                env=server_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for i in range(BINDS)
        ]  # fmt: skip
        acknowledged: dict[str, str] = {}
        for proc in procs:
            out, err = proc.communicate(timeout=CLI_DEADLINE_S)
            assert proc.returncode == 0, (out, err)
            answer = json.loads(out)
            acknowledged[answer["sub_id"]] = answer["secret_no"]
        assert len(acknowledged) == BINDS
    finally:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=10)
    assert server.proc.returncode == -signal.SIGKILL

    restarted = start_server(config, tmp_path, sip_port, "maskline-2.stderr")
    try:
        shows = {
            sub_id: subprocess.Popen(
                [*cli_command(config), "binding", "show", "--pool", pools["AXB"],
                 "--sub-id", sub_id],
                env=server_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for sub_id in acknowledged
        }  # fmt: skip
        for sub_id, proc in shows.items():
            out, err = proc.communicate(timeout=CLI_DEADLINE_S)
            assert proc.returncode == 0, (sub_id, out, err)
            shown_binding = json.loads(out)
            assert shown_binding["sub_id"] == sub_id
            assert shown_binding["secret_no"] == acknowledged[sub_id]
        # The index was rebuilt from the database: the old pairs still block their X.
        sub_id, x = next(iter(acknowledged.items()))
        shown = cli(config, "binding", "show", "--pool", pools["AXB"], "--sub-id", sub_id)
        conflict = cli(config, "bind", "axb", "--pool", pools["AXB"], "--a", shown.one["a"],
                       "--b", "13700137000", "--x", x, "--expires", EXPIRES)  # fmt: skip
        assert (conflict.returncode, conflict.one["code"]) == (1, "BIND_CONFLICT")
        log = restarted.stderr_path.read_text("utf-8")
        loaded = [json.loads(line) for line in log.splitlines()
                  if '"control_plane_loaded"' in line]  # fmt: skip
        assert loaded and loaded[0]["bindings"] == BINDS, log[-2000:]
    finally:
        stop_server(restarted)
