"""Use cases of call recordings: signed download URLs, the download itself, retention.

The WAV files are written by the engine (:mod:`media.recording_io`) and linked to their call by
:func:`store.recordings.attach_recording`; this module serves them and removes old ones.

- :meth:`Recordings.signed_url` — a signed, expiring URL (``[recording] url_ttl_s``) for a call
  the caller may see (tenant scoping as :meth:`api.control.ControlPlane.get_call_record`: a
  foreign call is a missing call, 404 ``CALL_NOT_EXIST``); a call without a kept recording is
  404 ``RECORDING_NOT_EXIST``.
- :meth:`Recordings.open_download` — checks a URL's signature and expiry (403, see
  :mod:`api.recording_urls`) and opens the file (404 ``RECORDING_NOT_EXIST`` when it is gone).
- :func:`sweep_expired_recordings` / :func:`run_retention` — delete recordings older than
  ``[recording] retention_days`` and mark them removed (the call record's path is cleared).

Configuration: the control plane carries no settings, so the service of a control plane is
registered once at start-up with :func:`configure_recordings` (settings, public base URL);
:func:`recordings_of` finds it (defaults of ``RecordingSettings`` if it was never configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

import store.recordings as recording_store
from api.errors import NotFound
from api.recording_urls import RecordingUrlSigner, SignedUrl, derive_url_key
from api.tenants import load_master_key
from config.settings import RecordingSettings
from engine.logging import get_logger
from store.db import Database
from store.records import CallRecord

if TYPE_CHECKING:
    from api.control import ControlPlane

__all__ = [
    "RECORDING_NOT_EXIST",
    "Download",
    "Recordings",
    "SweepResult",
    "configure_recordings",
    "recordings_of",
    "run_retention",
    "sweep_expired_recordings",
]

_log = get_logger("api.recordings")

#: 404 code of a call that has no (more) recording.
RECORDING_NOT_EXIST: Final = "RECORDING_NOT_EXIST"
_DAY_S: Final = 86_400
# Files under the recording directory that no kept recording row names (a crash between writing
# and attaching, a temporary file) are removed one day later than recordings, so that a file is
# never taken away from under a row that is being attached.
_STRAY_GRACE_S: Final = _DAY_S
_SWEEP_BATCH: Final = 500
_DEFAULT_RETENTION_INTERVAL_S: Final = 3600.0


def _no_recording(call_id: str) -> NotFound:
    return NotFound(RECORDING_NOT_EXIST, f"call {call_id!r} has no recording")


@dataclass(frozen=True, slots=True)
class Download:
    """An opened recording: read it, then close it (the route streams and closes it)."""

    call_id: str
    file: BinaryIO
    size_bytes: int


class Recordings:
    """The recordings of one control plane (its database, clock, master key and scoping)."""

    def __init__(
        self,
        control: ControlPlane,
        settings: RecordingSettings | None = None,
        *,
        public_base_url: str | None = None,
    ) -> None:
        """``public_base_url`` (e.g. ``https://maskline.example``) makes URLs absolute where no
        request tells the host (the RPC API); None: REST answers use the request's base URL and
        the RPC API answers a path relative to the API's root."""
        self.control = control
        self.settings = RecordingSettings() if settings is None else settings
        self.public_base_url = None if public_base_url is None else public_base_url.rstrip("/")
        self._signer: RecordingUrlSigner | None = None

    @property
    def signer(self) -> RecordingUrlSigner:
        """The URL signer, keyed from the tenants' master key (read once, on first use)."""
        if self._signer is None:
            master_key, _created = load_master_key(self.control.tenants.master_key_path)
            self._signer = RecordingUrlSigner(
                derive_url_key(master_key), ttl_s=self.settings.url_ttl_s
            )
        return self._signer

    def absolute(self, url: SignedUrl, base_url: str | None = None) -> str:
        """``url`` under ``base_url`` (else the configured public base URL, else relative)."""
        base = base_url.rstrip("/") if base_url is not None else self.public_base_url
        return url.path if base is None else f"{base}{url.path}"

    async def signed_url_of(self, record: CallRecord) -> SignedUrl | None:
        """A fresh signed URL for the recording of ``record``'s call; None when it has none
        kept. The caller has checked the record is visible to whoever asks."""
        row = await recording_store.recording_of(self.control.db, record.call_id)
        if row is None or not row.present:
            return None
        return self.signer.sign(record.call_id, now=self.control.clock())

    async def signed_url(
        self, call_id: str, *, tenant: str | None, pool_key: str | None = None
    ) -> SignedUrl:
        """A signed URL of ``call_id``'s recording, for ``tenant`` (None: operator).

        404 ``CALL_NOT_EXIST`` for a missing or foreign call, 404 ``RECORDING_NOT_EXIST`` for
        a call without a kept recording.
        """
        record = await self.control.get_call_record(call_id, tenant=tenant, pool_key=pool_key)
        url = await self.signed_url_of(record)
        if url is None:
            raise _no_recording(record.call_id)
        return url

    async def open_download(
        self, call_id: str, expires: str | None, signature: str | None
    ) -> Download:
        """Check a download URL (403 :class:`api.recording_urls.RecordingUrlError`), then open
        the WAV (404 ``RECORDING_NOT_EXIST`` when it is gone).

        The file is opened before streaming starts: if retention removes it meanwhile, the
        open file still reads to the end.
        """
        self.signer.verify(call_id, expires, signature, now=self.control.clock())
        row = await recording_store.recording_of(self.control.db, call_id)
        if row is None or not row.present:
            raise _no_recording(call_id)
        try:
            file, size = await asyncio.to_thread(_open_for_reading, Path(row.path))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            _log.warning("recording_file_missing", call=call_id)
            raise _no_recording(call_id) from None
        return Download(call_id=call_id, file=file, size_bytes=size)


def _open_for_reading(path: Path) -> tuple[BinaryIO, int]:
    file = path.open("rb")
    try:
        return file, os.fstat(file.fileno()).st_size
    except BaseException:
        file.close()
        raise


# ------------------------------------------------------------------------------ registry

_SERVICES: weakref.WeakKeyDictionary[ControlPlane, Recordings] = weakref.WeakKeyDictionary()


def configure_recordings(
    control: ControlPlane,
    settings: RecordingSettings,
    *,
    public_base_url: str | None = None,
) -> Recordings:
    """Register the recordings service of ``control`` (call once at start-up, before serving)."""
    service = Recordings(control, settings, public_base_url=public_base_url)
    _SERVICES[control] = service
    return service


def recordings_of(control: ControlPlane) -> Recordings:
    """The service registered for ``control``; one with default settings if none was."""
    service = _SERVICES.get(control)
    if service is None:
        service = _SERVICES[control] = Recordings(control)
    return service


# ------------------------------------------------------------------------------ retention


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one retention sweep did."""

    removed: int  # recordings whose file was deleted (row marked removed)
    missing: int  # recordings whose file was already gone (row marked removed)
    failed: int  # files that could not be deleted (kept; tried again next sweep)
    stray_files: int  # old files no kept recording names, deleted from the directory


def _delete_file(path: Path) -> bool | None:
    """True deleted, False already gone, None could not delete."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as error:
        _log.error("recording_delete_failed", path=str(path), error=str(error))
        return None
    return True


def _delete_files(paths: list[Path]) -> list[bool | None]:
    return [_delete_file(path) for path in paths]


def _sweep_directory(directory: Path, *, older_than: float, keep: frozenset[str]) -> int:
    """Delete ``*.wav`` and temporary files under ``directory`` last modified before
    ``older_than`` (UTC epoch s) that are not in ``keep``; remove emptied month directories."""
    if not directory.is_dir():
        return 0
    deleted = 0
    for path in sorted(directory.rglob("*")):
        is_recording = path.suffix == ".wav" or path.name.endswith(".tmp")
        if not is_recording or str(path) in keep or not path.is_file():
            continue
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < older_than:
                path.unlink()
                deleted += 1
    for sub in sorted(directory.iterdir(), reverse=True):
        if sub.is_dir():
            with contextlib.suppress(OSError):
                sub.rmdir()  # only succeeds when empty
    return deleted


async def sweep_expired_recordings(
    db: Database,
    *,
    retention_days: int,
    now: float,
    directory: Path | None = None,
) -> SweepResult:
    """Delete the recordings created more than ``retention_days`` before ``now`` (UTC epoch s):
    the file (in a worker thread), then the row is marked removed and the call record's path
    cleared. A file that cannot be deleted keeps its row, to be tried again.

    With ``directory`` (``[recording] dir``), old WAV and temporary files there that no kept
    recording names are deleted too (one day after the retention period).
    """
    if retention_days < 1:
        raise ValueError(f"retention_days must be at least 1, got {retention_days}")
    cutoff = now - retention_days * _DAY_S
    removed = missing = failed = 0
    while True:
        rows = await recording_store.expired_recordings(
            db, created_before=cutoff, limit=_SWEEP_BATCH
        )
        if not rows:
            break
        outcomes = await asyncio.to_thread(_delete_files, [Path(row.path) for row in rows])
        done = [
            row.call_id for row, outcome in zip(rows, outcomes, strict=True) if outcome is not None
        ]
        removed += sum(1 for outcome in outcomes if outcome is True)
        missing += sum(1 for outcome in outcomes if outcome is False)
        failed += sum(1 for outcome in outcomes if outcome is None)
        await recording_store.mark_recordings_deleted(db, done, now=now)
        if not done or len(rows) < _SWEEP_BATCH:
            break  # nothing more to do, or only files that cannot be deleted are left
    stray = 0
    if directory is not None:
        keep = await recording_store.kept_recording_paths(db)
        stray = await asyncio.to_thread(
            _sweep_directory, directory, older_than=cutoff - _STRAY_GRACE_S, keep=keep
        )
    result = SweepResult(removed=removed, missing=missing, failed=failed, stray_files=stray)
    if removed or missing or failed or stray:
        _log.info(
            "recordings_swept",
            removed=removed,
            missing=missing,
            failed=failed,
            stray_files=stray,
            retention_days=retention_days,
        )
    return result


async def run_retention(
    db: Database,
    settings: RecordingSettings,
    *,
    interval_s: float = _DEFAULT_RETENTION_INTERVAL_S,
    clock: Callable[[], float] = time.time,
) -> None:
    """Sweep every ``interval_s`` until cancelled (run it as a task; cancel it at shutdown).

    A failing sweep is logged and tried again at the next interval.
    """
    while True:
        try:
            await sweep_expired_recordings(
                db,
                retention_days=settings.retention_days,
                now=clock(),
                directory=settings.dir,
            )
        except Exception:
            _log.exception("recordings_sweep_failed")
        await asyncio.sleep(interval_s)
