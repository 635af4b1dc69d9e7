"""Monthly CSV export per pool (issue 6, acceptance 4): names, BOM, Chinese text, fees.

The month is the hand-made fixture of ``test_statistics_support``; expected rows are written out
by hand from its call records and ledger lines.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_statistics_support import X1, X2, X3, ZONE, A, B, Month, build_month

from billing.export import (
    EXPORT_COLUMNS,
    export_file_name,
    export_month,
    pool_month_csv,
    write_atomically,
)
from billing.statistics import parse_month
from store import Database
from store.records import REPORT_FIELDS
from store.repositories import Pool, get_pool, list_pools

DECEMBER = parse_month("2026-12")


@pytest.fixture
async def month(tmp_path: Path) -> AsyncIterator[Month]:
    db = await Database.open(tmp_path / "maskline.sqlite3")
    try:
        yield await build_month(db)
    finally:
        await db.close()


async def _pool(month: Month, key: str) -> Pool:
    pool = await get_pool(month.db, key)  # type: ignore[arg-type]
    assert pool is not None
    return pool


def _rows(data: bytes) -> list[dict[str, str]]:
    """Read back as a spreadsheet user's script would: utf-8-sig and the csv module."""
    text = data.decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


async def test_export_file_of_a_pool_month(month: Month) -> None:
    export = await pool_month_csv(month.db, await _pool(month, month.axb), DECEMBER, ZONE)
    assert export.name == f"{month.axb}202612.csv"
    assert export.data.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM
    assert not export.data[3:].startswith(b"\xef\xbb\xbf")  # exactly one
    assert export.data.endswith(b"\r\n")
    header = export.data[3:].split(b"\r\n", 1)[0].decode()
    assert header.split(",") == list(EXPORT_COLUMNS)
    assert EXPORT_COLUMNS[: len(REPORT_FIELDS)] == REPORT_FIELDS
    rows = _rows(export.data)
    # December's records of the AXB pool by release time: r1, r2, r6, the SMS s1, r7
    # (r0 ended in November, r5 in January).
    assert [row["id"] for row in rows] == ["r1", "r2", "r6", "s1", "r7"]
    assert export.calls == 5
    r1, r2, r6, s1, r7 = rows
    # r1: answered 90 s, 2 min call 0.22 + recording 0.02.
    assert {k: r1[k] for k in ("call_time", "start_time", "release_time", "ring_time")} == {
        "call_time": "2026-12-05 10:00:00",
        "start_time": "2026-12-05 10:00:10",
        "release_time": "2026-12-05 10:01:40",
        "ring_time": "2026-12-05 10:00:02",
    }
    assert (r1["duration_s"], r1["billed_minutes"], r1["fee"]) == ("90", "2", "0.24")
    assert (r1["city"], r1["out_id"], r1["time_zone"]) == ("北京", "订单-甲", "Asia/Shanghai")
    assert (r1["secret_no"], r1["phone_no"], r1["peer_no"]) == (X1, A, B)
    assert (r1["call_type"], r1["release_dir"], r1["release_cause"]) == ("0", "1", "16")
    assert (r1["pool_key"], r1["call_id"]) == (month.axb, "call-r1")
    # r2: 45 s, 1 min, 0.11; its out_id would be a spreadsheet formula: quoted.
    assert (r2["billed_minutes"], r2["fee"], r2["out_id"]) == ("1", "0.11", "'=HYPERLINK(1)")
    assert r2["secret_no"] == X2
    # r6 busy: never answered, nothing charged, empty times.
    assert (r6["start_time"], r6["ring_time"], r6["duration_s"]) == ("", "", "0")
    assert (r6["billed_minutes"], r6["fee"], r6["release_cause"]) == ("0", "0.00", "17")
    assert s1["call_type"] == "3"
    # r7 intercepted at 23:59 on the 31st: no binding, 深圳.
    assert (r7["call_type"], r7["unconnected_cause"], r7["city"]) == ("4", "2", "深圳")
    assert (r7["call_out_time"], r7["peer_no"], r7["fee"]) == ("", "", "0.00")
    assert r7["release_time"] == "2026-12-31 23:59:03"


async def test_package_minutes_count_as_billed_minutes(month: Month) -> None:
    export = await pool_month_csv(month.db, await _pool(month, month.axn), DECEMBER, ZONE)
    [r3] = _rows(export.data)
    # r3: 150 s = 3 started minutes, all drawn from the package: 3 minutes, nothing to pay.
    assert (r3["id"], r3["secret_no"], r3["billed_minutes"], r3["fee"]) == ("r3", X3, "3", "0.00")


async def test_chinese_text_round_trips_through_the_file(month: Month, tmp_path: Path) -> None:
    files = await export_month(
        month.db, await list_pools(month.db, tenant_id=month.t1), DECEMBER, ZONE, tmp_path / "out"
    )
    # T1's pools of December; the pool created in January has no December file.
    assert [(f.pool_key, f.path.name, f.calls) for f in files] == [
        (month.axb, f"{month.axb}202612.csv", 5),
        (month.axn, f"{month.axn}202612.csv", 1),
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f.path.name for f in files
    )  # no temporary files left behind
    raw = files[0].path.read_bytes()
    # What a spreadsheet sees: BOM, then UTF-8 bytes of the Chinese text.
    assert raw[:3] == b"\xef\xbb\xbf"
    assert "北京".encode() in raw and "订单-甲".encode() in raw
    with files[0].path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["city"], row["out_id"]) for row in rows][:1] == [("北京", "订单-甲")]
    assert rows[-1]["city"] == "深圳"
    # Without utf-8-sig the BOM stays glued to the first column name.
    with files[0].path.open(encoding="utf-8", newline="") as handle:
        assert next(csv.reader(handle))[0] == "\ufeffid"


async def test_a_month_without_calls_has_the_header_only(month: Month) -> None:
    export = await pool_month_csv(
        month.db, await _pool(month, month.axb), parse_month("2026-10"), ZONE
    )
    assert export.data.decode("utf-8-sig") == ",".join(EXPORT_COLUMNS) + "\r\n"
    assert (export.name, export.calls) == (f"{month.axb}202610.csv", 0)


def test_file_names() -> None:
    assert export_file_name("FC0123456789ABCDEF", DECEMBER) == "FC0123456789ABCDEF202612.csv"
    assert export_file_name("FC0123456789ABCDEF", parse_month("2027-01")) == (
        "FC0123456789ABCDEF202701.csv"
    )
    for unsafe in ("../etc", "a/b", "", ".hidden", "FC 1"):
        with pytest.raises(ValueError):
            export_file_name(unsafe, DECEMBER)


def test_write_atomically_replaces_whole_files(tmp_path: Path) -> None:
    target = write_atomically(tmp_path / "new" / "dir", "x.csv", b"first")
    assert target.read_bytes() == b"first"
    assert write_atomically(target.parent, "x.csv", b"second") == target
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["x.csv"]
    for bad in ("../x.csv", "a/x.csv", "", ".."):
        with pytest.raises(ValueError):
            write_atomically(tmp_path, bad, b"")


def test_write_atomically_leaves_nothing_when_writing_fails(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "x.csv").write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomically(folder, "x.csv", "not bytes")  # type: ignore[arg-type]
    assert os.listdir(folder) == ["x.csv"]
    assert (folder / "x.csv").read_bytes() == b"old"
