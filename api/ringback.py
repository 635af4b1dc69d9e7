"""Enterprise ringback tones (彩铃) of tenants: upload, text-to-speech, list, delete (SPEC §4).

A tone is the value side of a ringback code (``{"AXBRing_A": "tone-7"}`` on a binding or a
pool): ``tone-7`` of the pool's tenant. Its audio is stored as 8 kHz 16-bit mono WAV under
``[audio] ringback_dir``, named by :func:`media.ringback.tone_file_name` (sanitised, hashed: a
tone id never reaches the file system as typed); the table ``ringback_tones`` lists the tones.

Scoping as everywhere (:mod:`api.principal`): the operator acts for any existing tenant, a tenant
only for itself; another tenant's id answers ``TENANT_NOT_EXIST`` like an unknown one.

Replacing a tone is allowed and atomic: the new WAV is renamed over the old one
(``os.replace``), so a call starting meanwhile plays the old tone or the new one, never a mix;
if the database write then fails the old file is put back, so a refused request changes nothing.
Writes of one tone are serialised. Decoding and espeak-ng run in a worker thread, never on the
event loop.

The service is made per control plane by :func:`attach_ringback` (the server does it with
``[audio]``); without that, :func:`ringback_service` uses ``ringback/`` beside the database
(the default configuration's ``var/ringback``) and the default voice.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import unicodedata
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final

import store.tenants as tenant_store
from api.errors import ControlError, ErrorCode, InvalidInput, NotFound
from api.locks import KeyedLocks
from api.principal import Principal
from engine.logging import get_logger
from media.audio import (
    DEFAULT_VOICE,
    AudioError,
    AudioErrorCode,
    Pcm8k,
    check_voice,
    decode_audio,
    duration_ms,
    synthesize,
    write_wav,
)
from media.ringback import tone_file_name
from store import ringback as tone_store
from store.ringback import RingbackToneRow, ToneSource

if TYPE_CHECKING:
    from api.control import ControlPlane

__all__ = [
    "MAX_TONE_ID_CHARS",
    "RINGBACK_NOT_EXIST",
    "AudioUnavailable",
    "RingbackTones",
    "ToneView",
    "attach_ringback",
    "ringback_service",
]

_log = get_logger("api.ringback")

#: As for the tone ids of ringback codes (``api.control._check_ringback``).
MAX_TONE_ID_CHARS: Final = 64
RINGBACK_NOT_EXIST: Final = "RINGBACK_NOT_EXIST"


class AudioUnavailable(ControlError):
    """Text-to-speech is not available on the server (espeak-ng missing, failing or too slow)."""

    status: ClassVar[int] = 503


@dataclass(frozen=True, slots=True)
class ToneView:
    """A tone as the API shows it; times local ``YYYY-MM-DD HH:MM:SS``."""

    tenant_id: str
    tone_id: str
    source: str  # "upload" or "tts"
    duration_ms: int
    created: str
    updated: str
    voice: str | None
    text: str | None


def _check_tone_id(tone_id: str) -> str:
    if not tone_id.strip() or len(tone_id) > MAX_TONE_ID_CHARS:
        raise InvalidInput(
            ErrorCode.PARAMETER_ILLEGAL,
            f"a tone id is 1..{MAX_TONE_ID_CHARS} characters, not only spaces",
        )
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in tone_id):
        raise InvalidInput(
            ErrorCode.PARAMETER_ILLEGAL, "a tone id must not contain control characters"
        )
    return tone_id


def _audio_refused(error: AudioError) -> ControlError:
    if error.code is AudioErrorCode.TTS_FAILED:
        return AudioUnavailable(error.code, error.message)
    return InvalidInput(error.code, error.message)


class RingbackTones:
    """Tenants' ringback tones: files under ``ringback_dir``, rows in ``ringback_tones``."""

    def __init__(
        self, control: ControlPlane, *, ringback_dir: Path, voice: str = DEFAULT_VOICE
    ) -> None:
        self.control = control
        self.ringback_dir = Path(ringback_dir)
        self.voice = voice
        self._locks = KeyedLocks()

    def path_for(self, tenant_id: str, tone_id: str) -> Path:
        """The WAV file of a tenant's tone (it may not exist)."""
        return self.ringback_dir / tone_file_name(tenant_id, tone_id)

    # --------------------------------------------------------------------- use cases

    async def add_from_audio(
        self, principal: Principal, tenant_id: str, tone_id: str, data: bytes
    ) -> ToneView:
        """Store (or replace) a tone from audio in any common format.

        400 with the audio code (``AUDIO_UNDECODABLE``, ``AUDIO_EMPTY``, ``AUDIO_TOO_LONG``,
        ``AUDIO_TOO_LARGE``) for unusable audio; 404 ``TENANT_NOT_EXIST``.
        """
        await self.visible_tenant(principal, tenant_id)
        _check_tone_id(tone_id)
        try:
            pcm = await asyncio.to_thread(decode_audio, data)
        except AudioError as error:
            raise _audio_refused(error) from None
        return await self._store(tenant_id, tone_id, pcm, ToneSource.UPLOAD, voice=None, text=None)

    async def add_from_text(
        self,
        principal: Principal,
        tenant_id: str,
        tone_id: str,
        text: str,
        voice: str | None = None,
    ) -> ToneView:
        """Store (or replace) a tone spoken from ``text`` by espeak-ng (default: the configured
        voice, Mandarin ``cmn-latn-pinyin``: Hanzi or pinyin with tone numbers).

        400 ``TTS_TEXT_ILLEGAL`` / ``TTS_VOICE_ILLEGAL``; 503 ``TTS_FAILED`` when espeak-ng is
        missing or fails; 404 ``TENANT_NOT_EXIST``.
        """
        await self.visible_tenant(principal, tenant_id)
        _check_tone_id(tone_id)
        chosen = self.voice if voice is None else voice
        try:
            check_voice(chosen)
            pcm = await asyncio.to_thread(synthesize, text, voice=chosen)
        except AudioError as error:
            raise _audio_refused(error) from None
        spoken = " ".join(text.split())
        return await self._store(tenant_id, tone_id, pcm, ToneSource.TTS, voice=chosen, text=spoken)

    async def list_tones(self, principal: Principal, tenant_id: str) -> list[ToneView]:
        """The tenant's tones by tone id; 404 ``TENANT_NOT_EXIST``."""
        await self.visible_tenant(principal, tenant_id)
        rows = await tone_store.list_tones(self.control.db, tenant_id)
        return [self._view(row) for row in rows]

    async def get_tone(self, principal: Principal, tenant_id: str, tone_id: str) -> ToneView:
        """One tone; 404 ``TENANT_NOT_EXIST`` or ``RINGBACK_NOT_EXIST``."""
        await self.visible_tenant(principal, tenant_id)
        row = await tone_store.get_tone(self.control.db, tenant_id, tone_id)
        if row is None:
            raise _tone_not_found(tone_id)
        return self._view(row)

    async def delete_tone(self, principal: Principal, tenant_id: str, tone_id: str) -> None:
        """Delete a tone (row, then file); 404 ``TENANT_NOT_EXIST`` or ``RINGBACK_NOT_EXIST``.

        Bindings and pools that name it keep their code: their calls then ring without an
        enterprise ringback until a tone of that id exists again.
        """
        await self.visible_tenant(principal, tenant_id)
        async with self._locks.hold(self._lock_key(tenant_id, tone_id)):
            row = await tone_store.delete_tone(self.control.db, tenant_id, tone_id)
            if row is None:
                raise _tone_not_found(tone_id)
            path = self.ringback_dir / row.file_name
            try:
                await asyncio.to_thread(path.unlink, missing_ok=True)
            except OSError as error:  # the row is gone; an orphan file plays for nobody
                _log.error("ringback_file_not_removed", file=row.file_name, error=str(error))
        _log.info("ringback_deleted", tenant_id=tenant_id, tone_id=tone_id)

    # --------------------------------------------------------------------- internals

    async def visible_tenant(self, principal: Principal, tenant_id: str) -> None:
        """404 ``TENANT_NOT_EXIST`` unless ``tenant_id`` exists and ``principal`` may act for it
        (a route checks this before reading an upload, so a foreign tenant costs nothing)."""
        # A tenant asking for another tenant gets the answer of a tenant that does not exist.
        if not principal.is_operator and principal.tenant_id != tenant_id:
            raise _tenant_not_found(tenant_id)
        if await tenant_store.get_tenant(self.control.db, tenant_id) is None:
            raise _tenant_not_found(tenant_id)

    @staticmethod
    def _lock_key(tenant_id: str, tone_id: str) -> str:
        return f"{tenant_id}\0{tone_id}"

    async def _store(
        self,
        tenant_id: str,
        tone_id: str,
        pcm: Pcm8k,
        source: ToneSource,
        *,
        voice: str | None,
        text: str | None,
    ) -> ToneView:
        path = self.path_for(tenant_id, tone_id)
        now = self.control.clock()
        row = RingbackToneRow(
            tenant_id=tenant_id,
            tone_id=tone_id,
            file_name=path.name,
            source=source,
            duration_ms=duration_ms(pcm),
            created_at=now,
            updated_at=now,
            voice=voice,
            text=text,
        )
        async with self._locks.hold(self._lock_key(tenant_id, tone_id)):
            backup = await asyncio.to_thread(_install, path, pcm)
            try:
                stored = await tone_store.upsert_tone(self.control.db, row)
            except BaseException:
                await asyncio.to_thread(_restore, path, backup)
                raise
            finally:
                if backup is not None:
                    backup.unlink(missing_ok=True)
        _log.info(
            "ringback_stored",
            tenant_id=tenant_id,
            tone_id=tone_id,
            source=str(source),
            duration_ms=row.duration_ms,
        )
        return self._view(stored)

    def _view(self, row: RingbackToneRow) -> ToneView:
        return ToneView(
            tenant_id=row.tenant_id,
            tone_id=row.tone_id,
            source=str(row.source),
            duration_ms=row.duration_ms,
            created=self.control.local_time(row.created_at),
            updated=self.control.local_time(row.updated_at),
            voice=row.voice,
            text=row.text,
        )


def _install(path: Path, pcm: Pcm8k) -> Path | None:
    """Put ``pcm`` at ``path`` atomically; returns a backup of the file it replaced, if any."""
    backup: Path | None = None
    if path.exists():
        backup = path.with_name(f".{path.name}.{secrets.token_hex(6)}.bak")
        try:
            os.link(path, backup)  # no copy: the old inode lives on under the backup name
        except OSError:
            shutil.copy2(path, backup)
    try:
        write_wav(path, pcm)
    except BaseException:
        if backup is not None:
            backup.unlink(missing_ok=True)
        raise
    return backup


def _restore(path: Path, backup: Path | None) -> None:
    """Undo :func:`_install`: the previous file back, or no file for a tone that was new."""
    if backup is not None:
        os.replace(backup, path)
    else:
        path.unlink(missing_ok=True)


def _tenant_not_found(tenant_id: str) -> NotFound:
    return NotFound(ErrorCode.TENANT_NOT_EXIST, f"no tenant {tenant_id!r}")


def _tone_not_found(tone_id: str) -> NotFound:
    return NotFound(RINGBACK_NOT_EXIST, f"no ringback tone {tone_id!r}")


# ------------------------------------------------------------------------------- wiring

_SERVICES: weakref.WeakKeyDictionary[ControlPlane, RingbackTones] = weakref.WeakKeyDictionary()


def attach_ringback(
    control: ControlPlane, *, ringback_dir: Path, voice: str = DEFAULT_VOICE
) -> RingbackTones:
    """Make the ringback service of ``control`` with ``[audio] ringback_dir`` and ``tts_voice``."""
    service = RingbackTones(control, ringback_dir=ringback_dir, voice=voice)
    _SERVICES[control] = service
    return service


def ringback_service(control: ControlPlane) -> RingbackTones:
    """The ringback service of ``control``; made with the defaults beside the database when
    :func:`attach_ringback` was not called."""
    service = _SERVICES.get(control)
    if service is None:
        service = attach_ringback(control, ringback_dir=control.db.path.parent / "ringback")
    return service
