"""``maskline stats``, ``maskline export`` and ``maskline calls find`` against a real server.

The month is ``test_stats_support``'s (January 2030); figures worked out by hand.
"""

from __future__ import annotations

import csv
import os
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from api_support import Api
from cli_support import Cli
from test_stats_support import JAN_5, World, build_world

from media.recording_io import write_wav
from store import billing as billing_store
from store.cdr import CdrWriter
from store.ledger import topup
from store.recordings import attach_recording
from store.repositories import get_call_record


@pytest.fixture
async def world(api: Api) -> World:
    return await build_world(api)


async def test_stats_full(cli: Cli, world: World) -> None:
    code, lines = await cli("stats", "full", "--month", "2030-01", "--tenant", world.a)
    assert code == 0, lines
    [answer] = lines
    assert (answer["month"], answer["tenant_id"], answer["total"]) == ("2030-01", world.a, "5.22")
    assert [(r["item"], r["count"], r["unit"], r["amount"]) for r in answer["rows"]] == [
        ("rent", 1, "month", "5.00"),
        ("call", 2, "minute", "0.22"),
    ]
    code, lines = await cli("stats", "full", "--month", "2030-01", "--details")
    assert code == 0
    rent = next(r for r in lines[0]["rows"] if r["tenant_id"] == world.a and r["item"] == "rent")
    # Numbers are printed in national form, as everywhere in the CLI.
    assert [d["number"] for d in rent["details"]] == ["17000000001"]
    assert lines[0]["total"] == "10.33"


async def test_stats_classified(cli: Cli, world: World) -> None:
    code, lines = await cli(
        "stats", "classified", "--from", "2030-01-01", "--to", "2030-01-31",
        "--pool", world.pool_a, "--type", "axb",
    )  # fmt: skip
    assert code == 0, lines
    [answer] = lines
    [row] = answer["rows"]
    assert (row["calls"], row["answered"], row["connection_rate_pct"], row["fees"]) == (
        2, 1, 50.0, "5.22",
    )  # fmt: skip
    assert (answer["from"], answer["to"]) == ("2030-01-01", "2030-01-31")


async def test_stats_errors(cli: Cli, world: World) -> None:
    code, lines = await cli("stats", "full", "--month", "2030-13")
    assert (code, lines[0]["code"]) == (1, "PARAMETER_ILLEGAL")
    code, lines = await cli("stats", "classified", "--from", "2030-01-01", "--to", "2030-01-01",
                            "--tenant", "T000000000000")  # fmt: skip
    assert (code, lines[0]["code"]) == (1, "TENANT_NOT_EXIST")
    code, lines = await cli("stats", "classified", "--from", "2030-01-01")
    assert (code, lines[0]["code"]) == (2, "USAGE")


async def test_export_writes_one_file_per_pool(cli: Cli, world: World, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    code, lines = await cli("export", "--month", "2030-01", "--out", str(out))
    assert code == 0, lines
    expected = {
        world.pool_a: (str(out / f"{world.pool_a}203001.csv"), 2),
        world.pool_b: (str(out / f"{world.pool_b}203001.csv"), 1),
    }
    assert {line["pool_key"]: (line["file"], line["calls"]) for line in lines} == expected
    assert sorted(os.listdir(out)) == sorted(Path(f).name for f, _ in expected.values())
    raw = (out / f"{world.pool_a}203001.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with (out / f"{world.pool_a}203001.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["id"], r["city"], r["out_id"], r["fee"]) for r in rows] == [
        ("ca1", "北京", "订单一", "0.22"),
        ("ca2", "北京", "", "0.00"),
    ]
    # One pool, or one tenant's pools; a month before the pools existed: no file.
    code, lines = await cli("export", "--month", "2030-01", "--out", str(tmp_path / "b"),
                            "--tenant", world.b)  # fmt: skip
    assert [line["pool_key"] for line in lines] == [world.pool_b]
    code, lines = await cli("export", "--month", "2030-01", "--out", str(tmp_path / "p"),
                            "--pool", world.pool_a)  # fmt: skip
    assert [line["pool_key"] for line in lines] == [world.pool_a]
    code, lines = await cli("export", "--month", "2029-12", "--out", str(tmp_path / "none"))
    assert (code, lines) == (0, [])


async def test_export_errors(cli: Cli, world: World, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    code, lines = await cli("export", "--month", "2030-01", "--out", str(a_file))
    assert (code, lines[0]["code"]) == (2, "FILE_UNWRITABLE")
    code, lines = await cli("export", "--month", "January", "--out", str(tmp_path))
    assert (code, lines[0]["code"]) == (2, "USAGE")
    code, lines = await cli("export", "--month", "2030-01", "--out", str(tmp_path / "x"),
                            "--pool", "FC0000000000000000")  # fmt: skip
    assert (code, lines[0]["code"]) == (1, "POOL_NOT_EXIST")
    assert not (tmp_path / "x").exists()


async def test_calls_find(cli: Cli, world: World, api: Api, tmp_path: Path) -> None:
    wav = tmp_path / "rec" / "ca1.wav"
    recording = write_wav(np.zeros((8000, 2), dtype=np.int16), wav)
    await attach_recording(
        api.control.db, call_id="call-ca1", file=recording, pool_key=world.pool_a, now=JAN_5
    )
    code, lines = await cli("calls", "find", "--call-id", "call-ca1")
    assert code == 0, lines
    [found] = lines
    assert found["recording_path"] == os.path.abspath(wav)
    assert (found["recording_kept"], found["recording_exists"]) == (True, True)
    # The config names no [cdr] dir: the default var/cdr, relative to the working directory.
    assert found["cdr_file"] == os.path.abspath("var/cdr/cdr-20300105.csv")
    call = found["call"]
    assert (call["call_id"], call["secret_no"], call["phone_no"]) == (
        "call-ca1", "17000000001", "13800138000",
    )  # fmt: skip
    assert (call["start_time"], call["duration_s"]) == ("2030-01-05 10:00:05", 61.0)
    code, lines = await cli("calls", "find", "--call-id", "call-ca2")
    assert (code, lines[0]["recording_path"], lines[0]["recording_exists"]) == (0, None, None)
    code, lines = await cli("calls", "find", "--call-id", "nosuchcall")
    assert (code, lines[0]["code"]) == (1, "CALL_NOT_EXIST")


async def test_calls_find_in_cdr_files_without_a_server(
    world: World, api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cdr_dir = tmp_path / "cdr"
    wav = tmp_path / "recordings" / "203001" / "call-ca1.wav"
    recording = write_wav(np.zeros((8000, 2), dtype=np.int16), wav)
    await attach_recording(
        api.control.db, call_id="call-ca1", file=recording, pool_key=world.pool_a, now=JAN_5
    )
    writer = CdrWriter(cdr_dir, api.control.zone)
    for record_id in ("ca1", "ca2", "cb1"):
        record = await get_call_record(api.control.db, record_id)
        assert record is not None
        await writer.append(record)
    await writer.close()
    config = tmp_path / "offline.toml"
    # No server: the API address is a port nobody listens on.
    config.write_text(f'[api]\nlisten = "127.0.0.1:9"\n[cdr]\ndir = "{cdr_dir}"\n')
    cli = Cli(config, capsys)
    code, lines = await cli("calls", "find", "--call-id", "call-ca1", "--cdr")
    assert code == 0, lines
    [found] = lines
    assert found["recording_path"] == str(wav)
    assert found["recording_exists"] is True
    assert found["cdr_file"] == str(cdr_dir / "cdr-20300105.csv")
    call = found["call"]
    assert (call["id"], call["secret_no"], call["call_type"], call["city"]) == (
        "ca1", "17000000001", 0, "北京",
    )  # fmt: skip
    assert (call["start_time"], call["out_id"]) == ("2030-01-05 10:00:05", "订单一")
    # The record id finds it too; an unknown id does not; without --cdr the server is asked.
    code, lines = await cli("calls", "find", "--call-id", "ca1", "--cdr")
    assert lines[0]["call"]["call_id"] == "call-ca1"
    code, lines = await cli("calls", "find", "--call-id", "nosuchcall", "--cdr")
    assert (code, lines[0]["code"]) == (1, "CALL_NOT_EXIST")
    code, lines = await cli("calls", "find", "--call-id", "call-ca1")
    assert (code, lines[0]["code"]) == (1, "SERVER_UNREACHABLE")


async def test_stats_packages(cli: Cli, world: World, api: Api) -> None:
    await topup(api.control.db, world.a, Decimal("10.00"), now=JAN_5)
    package = await billing_store.insert_package(
        api.control.db, tenant_id=world.a, name="十分钟", price=Decimal("1.00"), minutes=10,
        # Valid from 31 December: active at the clock's 1 January 12:00.
        valid_from=JAN_5 - 86400 * 5, valid_until=JAN_5 + 86400 * 30, period="203001", now=JAN_5,
    )  # fmt: skip
    code, lines = await cli("stats", "packages", "--tenant", world.a, "--month", "2030-01")
    assert code == 0, lines
    [answer] = lines
    assert (answer["remaining_minutes"], answer["month_minutes"]) == (10, 0)
    assert [(p["package_id"], p["name"], p["state"]) for p in answer["packages"]] == [
        (package.id, "十分钟", "active")
    ]
    code, lines = await cli("stats", "packages", "--tenant", "T000000000000")
    assert (code, lines[0]["code"]) == (1, "TENANT_NOT_EXIST")
