"""REST routes of call recordings; mounted by :func:`api.app.create_app` (paths are absolute).

- ``GET /v1/calls/{call_id}/recording`` (authenticated, tenant-scoped like
  ``GET /v1/calls/{call_id}``): ``{"url", "expires"}``, a signed download URL valid for
  ``[recording] url_ttl_s``. 404 ``CALL_NOT_EXIST`` for a missing or foreign call, 404
  ``RECORDING_NOT_EXIST`` for a call without a kept recording.
- ``GET /recordings/{call_id}.wav?expires=...&signature=...`` (no authentication: the signature
  is the credential): the WAV, streamed as ``audio/wav``. 403 ``FORBIDDEN`` for a tampered,
  expired or malformed URL; 404 ``RECORDING_NOT_EXIST`` when the file is gone.

Rules: :mod:`api.recordings`, :mod:`api.recording_urls`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, BinaryIO, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from api.auth import PrincipalDependency
from api.control import ControlPlane
from api.principal import Principal
from api.recording_urls import DOWNLOAD_PREFIX
from api.recordings import recordings_of

__all__ = ["build_router"]

_CHUNK_BYTES: Final = 64 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecordingUrlOut(_Model):
    """A signed download URL of a call's recording."""

    url: str = Field(
        examples=["http://maskline.example/recordings/abc.wav?expires=1893470400&signature=..."]
    )
    expires: str = Field(description="local time YYYY-MM-DD HH:MM:SS from which it is refused")


class _ErrorOut(_Model):
    code: str
    message: str


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": _ErrorOut} for status in statuses}


async def _chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(file.read, _CHUNK_BYTES):
            yield chunk
    finally:
        file.close()


def build_router(control: ControlPlane, principal: PrincipalDependency) -> APIRouter:
    """The recordings routes; the URL route takes ``Depends(principal)``, the download none."""
    router = APIRouter(tags=["recordings"])
    caller = Depends(principal)

    @router.get(
        "/v1/calls/{call_id}/recording",
        response_model=RecordingUrlOut,
        responses=_errors(400, 401, 403, 404),
        summary="A signed, expiring download URL of the call's recording",
    )
    async def recording_url(
        call_id: str, request: Request, who: Principal = caller
    ) -> RecordingUrlOut:
        recordings = recordings_of(control)
        signed = await recordings.signed_url(call_id, tenant=who.tenant_id)
        base = recordings.public_base_url or str(request.base_url)
        return RecordingUrlOut(
            url=recordings.absolute(signed, base), expires=control.local_time(signed.expires)
        )

    @router.get(
        DOWNLOAD_PREFIX + "/{call_id}.wav",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"audio/wav": {}}, "description": "the WAV file"},
            **_errors(403, 404),
        },
        summary="Download a recording through its signed URL (no other authentication)",
    )
    async def download_recording(
        call_id: str, expires: str | None = None, signature: str | None = None
    ) -> StreamingResponse:
        download = await recordings_of(control).open_download(call_id, expires, signature)
        return StreamingResponse(
            _chunks(download.file),
            media_type="audio/wav",
            headers={
                "content-length": str(download.size_bytes),
                "content-disposition": f'attachment; filename="{download.call_id}.wav"',
                # The URL is a credential: keep the file out of shared caches.
                "cache-control": "private, no-store",
            },
            # Closes the file also when the client goes away before the body is read.
            background=BackgroundTask(download.file.close),
        )

    return router
