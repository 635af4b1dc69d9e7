"""store.records (report rendering) and store.cdr (daily CSV files)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from routing.model import PhoneNumber, PoolKey, SubId
from store import CDR_COLUMNS, CallRecord, CallType, CdrWriter, ReleaseDir, UnconnectedCause, cdr
from store.records import REPORT_FIELDS

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _utc(text: str) -> float:
    """UTC epoch seconds of ``YYYY-MM-DD HH:MM:SS`` read as UTC."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def _record(n: int, *, release_time: float, **kw: object) -> CallRecord:
    values: dict[str, object] = {
        "id": f"r{n}",
        "call_id": f"c{n}",
        "secret_no": PhoneNumber("+8617000000001"),
        "call_type": CallType.PEER_TO_A,
        "call_time": release_time - 70,
        "release_time": release_time,
        "release_dir": ReleaseDir.CALLEE,
        "release_cause": 16,
        "pool_key": PoolKey("FC1234"),
        "sub_id": SubId("s1"),
        "phone_no": PhoneNumber("+8613800138000"),
        "peer_no": PhoneNumber("+8613900139000"),
        "called_display_no": PhoneNumber("+8617000000001"),
        "city": "北京",
        "ring_time": release_time - 65,
        "start_time": release_time - 60,
        "duration_s": 60.0,
    }
    values.update(kw)
    return CallRecord(**values)  # type: ignore[arg-type]


def test_to_report_local_times_and_reference_names() -> None:
    # 2024-01-01 23:59:30 UTC is 2024-01-02 07:59:30 in Shanghai.
    record = _record(1, release_time=_utc("2024-01-01 23:59:30"), out_id="o1")
    report = record.to_report(SHANGHAI)
    assert list(report) == list(REPORT_FIELDS)
    assert report["release_time"] == "2024-01-02 07:59:30"
    assert report["start_time"] == "2024-01-02 07:58:30"
    assert report["call_out_time"] is None
    assert report["call_type"] == 1 and type(report["call_type"]) is int
    assert report["release_dir"] == 2
    assert report["unconnected_cause"] == 0
    assert report["out_id"] == "o1"
    assert "duration_s" not in report and "recording_path" not in report
    utc = record.to_report(ZoneInfo("UTC"))
    assert utc["release_time"] == "2024-01-01 23:59:30"


def _read(path: Path) -> tuple[bytes, list[list[str]]]:
    raw = path.read_bytes()
    return raw, list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


async def test_cdr_daily_files_bom_header_one_row_each(tmp_path: Path) -> None:
    writer = CdrWriter(tmp_path / "cdr", SHANGHAI)
    # 15:59:59 UTC = 23:59:59 Shanghai (Jan 1); 16:00:00 UTC = 00:00 Shanghai (Jan 2).
    before_midnight = _record(1, release_time=_utc("2024-01-01 15:59:59"))
    after_midnight = _record(2, release_time=_utc("2024-01-01 16:00:00"))
    same_utc_day = _record(3, release_time=_utc("2024-01-01 20:00:00"))
    first = await writer.append(before_midnight)
    second = await writer.append(after_midnight)
    third = await writer.append(same_utc_day)
    await writer.close()
    assert first.name == "cdr-20240101.csv"
    assert second.name == third.name == "cdr-20240102.csv"
    assert sorted(p.name for p in (tmp_path / "cdr").iterdir()) == [
        "cdr-20240101.csv",
        "cdr-20240102.csv",
    ]
    raw, rows = _read(second)
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.count(b"\xef\xbb\xbf") == 1
    assert rows[0] == list(CDR_COLUMNS)
    assert [r[0] for r in rows[1:]] == ["r2", "r3"]
    cells = dict(zip(rows[0], rows[1], strict=True))
    assert cells["release_time"] == "2024-01-02 00:00:00"
    assert cells["city"] == "北京"
    assert cells["call_out_time"] == ""
    assert cells["time_zone"] == "Asia/Shanghai"
    assert cells["duration_s"] == "60"
    _, rows = _read(first)
    assert len(rows) == 2 and rows[1][0] == "r1"


async def test_cdr_concurrent_appends_one_row_each(tmp_path: Path) -> None:
    writer = CdrWriter(tmp_path, SHANGHAI)
    day = _utc("2024-06-01 04:00:00")
    await asyncio.gather(*(writer.append(_record(n, release_time=day + n)) for n in range(500)))
    await writer.close()
    _, rows = _read(tmp_path / "cdr-20240601.csv")
    assert rows[0] == list(CDR_COLUMNS)
    assert sorted(r[0] for r in rows[1:]) == sorted(f"r{n}" for n in range(500))


async def test_cdr_rows_of_the_batch_interval_share_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows appended one by one while the writer waits out ``BATCH_INTERVAL_S`` after a batch
    go out together: one write and one fsync for them, not one each."""
    monkeypatch.setattr(cdr, "BATCH_INTERVAL_S", 0.5)
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    writer = CdrWriter(tmp_path, SHANGHAI)
    day = _utc("2024-06-01 04:00:00")
    await writer.append(_record(0, release_time=day))  # a new file: its fsync and the folder's
    first_batch = len(fsyncs)
    appends = []
    for n in range(1, 6):  # one by one, each while the writer still waits
        appends.append(asyncio.ensure_future(writer.append(_record(n, release_time=day + n))))
        await asyncio.sleep(0.01)
    await asyncio.gather(*appends)
    assert len(fsyncs) - first_batch == 1
    await writer.close()
    _, rows = _read(tmp_path / "cdr-20240601.csv")
    assert [r[0] for r in rows[1:]] == [f"r{n}" for n in range(6)]


async def test_cdr_recording_path_relative_to_cdr_dir(tmp_path: Path) -> None:
    cdr_dir = tmp_path / "var" / "cdr"
    wav = tmp_path / "var" / "recordings" / "2024" / "06" / "01" / "c1.wav"
    writer = CdrWriter(cdr_dir, SHANGHAI)
    path = await writer.append(
        _record(1, release_time=_utc("2024-06-01 04:00:00"), recording_path=str(wav))
    )
    await writer.close()
    _, rows = _read(path)
    relative = dict(zip(rows[0], rows[1], strict=True))["recording_file"]
    assert relative == "../recordings/2024/06/01/c1.wav"
    assert (cdr_dir / relative).resolve() == wav.resolve()


async def test_cdr_file_name_has_no_number_and_formula_guard(tmp_path: Path) -> None:
    writer = CdrWriter(tmp_path, SHANGHAI)
    record = _record(
        1,
        release_time=_utc("2024-06-01 04:00:00"),
        out_id="=HYPERLINK(1)",
        call_type=CallType.CALL_INTERCEPTED,
        unconnected_cause=UnconnectedCause.BLACKLIST,
    )
    path = await writer.append(record)
    await writer.close()
    assert not any(ch.isdigit() for ch in path.name.replace("20240601", ""))
    _, rows = _read(path)
    cells = dict(zip(rows[0], rows[1], strict=True))
    assert cells["out_id"] == "'=HYPERLINK(1)"
    assert (cells["call_type"], cells["unconnected_cause"]) == ("4", "1")
    assert cells["phone_no"] == "+8613800138000"
