"""Daily CDR CSV files: one row per call record, beside the recordings (SPEC §6).

Files are ``cdr-YYYYMMDD.csv`` in the configured directory, named after the *local* date (in the
configured zone) of the call's ``release_time``; names carry no phone number.  A new file starts
with a UTF-8 BOM (so spreadsheets pick UTF-8 for the Chinese city names) and a header row.  Times
are local ``YYYY-MM-DD HH:MM:SS`` like the reports, and a ``time_zone`` column names the zone so a
file read elsewhere is unambiguous.  ``recording_file`` is the recording's path relative to the CDR
directory, so a person holding the var/ tree finds and plays the call's WAV from the CSV alone.

Durability: ``append`` returns after the row is written, flushed and fsynced (and, for a new
file, the directory entry too) — "nothing lost" once acknowledged, like the database.  Appends
that arrive while a batch is being written, or within ``BATCH_INTERVAL_S`` after it, are grouped
into the next batch and share one fsync, so the cost per row falls as load rises.  All file I/O
runs in a worker thread; the rows are rendered on the event loop (the thread's Python work and
each of its system calls would take the GIL from the loop, a hand-off of the GIL each), except
for a batch with a recording, whose path is resolved against the disk in the thread.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from zoneinfo import ZoneInfo

from store.records import REPORT_FIELDS, TIME_FIELDS, CallRecord, local_time

CDR_COLUMNS: tuple[str, ...] = (*REPORT_FIELDS, "duration_s", "recording_file", "time_zone")
_BOM = "\ufeff"
# Cells a spreadsheet would evaluate as a formula; only free text a tenant controls is guarded.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FREE_TEXT = frozenset({"out_id", "city", "call_id"})
# The least time from one batch to the next. A call's row is durable in the database before it
# is appended here (engine.records), so waiting is cheap; without it, batches followed each
# other as fast as the thread finished them (100-300 a second at 900 calls/s), each one thread
# wake-up and several hand-offs of the GIL between that thread and the event loop.
BATCH_INTERVAL_S = 0.05


@dataclass(slots=True)
class _Pending:
    record: CallRecord
    future: asyncio.Future[Path]


class CdrWriter:
    """Appends call records to daily CSV files; ``await append(record)`` is durable."""

    def __init__(self, dir: Path, zone: ZoneInfo) -> None:
        """``dir`` is created on the first append; ``zone`` decides dates and local times."""
        self.dir = Path(dir)
        self.zone = zone
        self._queue: list[_Pending] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._files: dict[str, Path] = {}  # local date YYYY-MM-DD → its file

    def file_for(self, release_time: float) -> Path:
        """The daily file a record released at ``release_time`` (UTC epoch s) goes to."""
        # The date of the row's own release_time cell (``local_time`` is cached per second).
        local = local_time(release_time, self.zone)
        assert local is not None
        day = local[:10]
        path = self._files.get(day)
        if path is None:
            if len(self._files) > 64:  # a few days per writer
                self._files.clear()
            path = self._files[day] = self.dir / f"cdr-{day.replace('-', '')}.csv"
        return path

    def row(self, record: CallRecord) -> list[str]:
        """The CSV cells of one record, in ``CDR_COLUMNS`` order."""
        cells: list[str] = []
        for name in REPORT_FIELDS:
            value = getattr(record, name)
            if name in TIME_FIELDS:
                text = local_time(value, self.zone) or ""
            elif value is None:
                text = ""
            elif isinstance(value, IntEnum):
                text = str(int(value))
            else:
                text = str(value)
            if name in _FREE_TEXT and text.startswith(_FORMULA_START):
                text = "'" + text  # CSV/formula injection guard for spreadsheet users
            cells.append(text)
        cells.append(f"{record.duration_s:g}")
        cells.append(self._relative_recording(record.recording_path))
        cells.append(self.zone.key)
        return cells

    def _relative_recording(self, path: str | None) -> str:
        if not path:
            return ""
        return Path(os.path.relpath(Path(path).resolve(), self.dir.resolve())).as_posix()

    async def append(self, record: CallRecord) -> Path:
        """Append ``record``'s row; returns the file once the row is fsynced."""
        if self._closing:
            raise RuntimeError("CDR writer is closed")
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._write_loop(), name="maskline-cdr-writer")
        assert self._wakeup is not None
        future: asyncio.Future[Path] = loop.create_future()
        self._queue.append(_Pending(record, future))
        if len(self._queue) == 1:  # the writer waits only with the queue empty
            self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Write every queued row, then stop the writer task."""
        self._closing = True
        if self._task is not None and self._wakeup is not None:
            self._wakeup.set()
            await self._task

    async def _write_loop(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch, self._queue = self._queue, []
            records = [p.record for p in batch]
            try:
                if any(record.recording_path for record in records):
                    # Resolving a recording's path touches the disk: rendered in the thread.
                    paths = await asyncio.to_thread(self._write_batch, records)
                else:
                    by_file, paths = self._render(records)
                    await asyncio.to_thread(_write_rows, self.dir, by_file)
            except Exception as error:
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            for pending, path in zip(batch, paths, strict=True):
                if not pending.future.done():
                    pending.future.set_result(path)
            if not self._closing:
                await asyncio.sleep(BATCH_INTERVAL_S)

    def _render(self, records: list[CallRecord]) -> tuple[dict[Path, list[list[str]]], list[Path]]:
        by_file: dict[Path, list[list[str]]] = {}
        paths: list[Path] = []
        for record in records:
            path = self.file_for(record.release_time)
            by_file.setdefault(path, []).append(self.row(record))
            paths.append(path)
        return by_file, paths

    def _write_batch(self, records: list[CallRecord]) -> list[Path]:
        by_file, paths = self._render(records)
        _write_rows(self.dir, by_file)
        return paths


def _write_rows(folder: Path, by_file: dict[Path, list[list[str]]]) -> None:
    """Append rows per file (header + BOM for a new one), flush and fsync each file."""
    folder.mkdir(parents=True, exist_ok=True)
    created = False
    for path, rows in by_file.items():
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180 line ends
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            if os.fstat(fd).st_size == 0:
                buffer.write(_BOM)
                writer.writerow(CDR_COLUMNS)
                created = True
            writer.writerows(rows)
            data = buffer.getvalue().encode("utf-8")
            # One write() of the whole batch in O_APPEND mode: rows never interleave partially.
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
    if created:
        # A new file's directory entry must be durable too, or a crash could lose the whole file.
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
