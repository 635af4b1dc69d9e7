"""REST routes (``/v1/...``) of enterprise ringback tones; mounted by :func:`api.app.create_app`.

- ``PUT /v1/tenants/{tenant_id}/ringback/{tone_id}``: the audio file itself as the request body
  (any common format: WAV, MP3, OGG, FLAC, AAC ...; its Content-Type e.g. ``audio/mpeg``), at
  most 64 MiB and 5 minutes; creates or replaces the tone.
- ``POST /v1/tenants/{tenant_id}/ringback/{tone_id}/tts`` ``{"text": ..., "voice": ...}``: the
  tone spoken by espeak-ng (voice optional: ``[audio] tts_voice``).
- ``GET /v1/tenants/{tenant_id}/ringback`` (list), ``GET .../ringback/{tone_id}`` (one),
  ``DELETE .../ringback/{tone_id}``.

The operator may act for any tenant, a tenant for itself only (another tenant's id: 404
``TENANT_NOT_EXIST``). Rules: :mod:`api.ringback`. A tone id may hold any character but control
characters (``/`` percent-encoded), 1-64 of them, as in ringback codes.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Final

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import PrincipalDependency
from api.control import ControlPlane
from api.errors import ControlError, ErrorCode, InvalidInput
from api.principal import Principal
from api.ringback import RingbackTones, ToneView, ringback_service
from media.audio import MAX_INPUT_BYTES, MAX_TEXT_CHARS, AudioErrorCode

__all__ = ["build_router"]

# Content types that are certainly not an audio file: a form or JSON wrapped around one.
_NOT_AUDIO: Final = ("multipart/", "application/json", "application/x-www-form-urlencoded", "text/")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TtsIn(_Model):
    """A tone made from text."""

    text: str = Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="what to say: Hanzi or pinyin with tone numbers for the Mandarin voice",
        examples=["欢迎致电，正在为您接通，请稍候。"],
    )
    voice: str | None = Field(
        default=None,
        max_length=64,
        description="espeak-ng voice; default [audio] tts_voice (cmn-latn-pinyin)",
    )


class ToneOut(_Model):
    """A ringback tone: 8 kHz telephony audio of ``duration_ms``."""

    tenant_id: str
    tone_id: str
    source: str = Field(description="upload or tts")
    duration_ms: int
    created: str
    updated: str
    voice: str | None = Field(description="tts: the espeak-ng voice")
    text: str | None = Field(description="tts: what is said")


class TonesOut(_Model):
    """The tenant's tones, by tone id."""

    tones: list[ToneOut]


class OkOut(_Model):
    """Success without a payload."""

    ok: bool = True


class ErrorOut(_Model):
    """An error (as every error of the API)."""

    code: str
    message: str


class _TooLarge(ControlError):
    status: ClassVar[int] = 413


def _too_large() -> _TooLarge:
    return _TooLarge(
        AudioErrorCode.AUDIO_TOO_LARGE, f"the audio file is larger than {MAX_INPUT_BYTES} bytes"
    )


def _out(view: ToneView) -> ToneOut:
    return ToneOut.model_validate(dataclasses.asdict(view))


async def _audio_body(request: Request) -> bytes:
    """The raw body, refused early when it is no audio file or too large."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type.startswith(_NOT_AUDIO):
        raise InvalidInput(
            ErrorCode.PARAMETER_ILLEGAL,
            f"send the audio file itself as the request body (Content-Type audio/mpeg, "
            f"audio/wav ...), not {content_type}",
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_INPUT_BYTES:
        raise _too_large()
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_INPUT_BYTES:
            raise _too_large()
    return bytes(received)


def build_router(control: ControlPlane, principal: PrincipalDependency) -> APIRouter:
    """The area's routes; each takes ``Depends(principal)`` and passes it on."""
    router = APIRouter(tags=["ringback"])
    caller = Depends(principal)

    def tones() -> RingbackTones:
        # Looked up per request: the server may attach its [audio] settings after the app is
        # built.
        return ringback_service(control)

    @router.put(
        "/tenants/{tenant_id}/ringback/{tone_id:path}",
        response_model=ToneOut,
        summary="Upload a ringback tone (the audio file as the body, any common format)",
        responses={413: {"model": ErrorOut, "description": "larger than 64 MiB"}},
        openapi_extra={
            "requestBody": {
                "content": {
                    "audio/*": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
                "required": True,
            }
        },
    )
    async def upload(
        tenant_id: str, tone_id: str, request: Request, who: Principal = caller
    ) -> ToneOut:
        await tones().visible_tenant(who, tenant_id)  # before reading a foreign upload
        data = await _audio_body(request)
        return _out(await tones().add_from_audio(who, tenant_id, tone_id, data))

    @router.post(
        "/tenants/{tenant_id}/ringback/{tone_id:path}/tts",
        response_model=ToneOut,
        summary="Make a ringback tone from text (espeak-ng)",
        responses={503: {"model": ErrorOut, "description": "espeak-ng missing or failing"}},
    )
    async def from_text(
        tenant_id: str, tone_id: str, body: TtsIn, who: Principal = caller
    ) -> ToneOut:
        return _out(await tones().add_from_text(who, tenant_id, tone_id, body.text, body.voice))

    @router.get(
        "/tenants/{tenant_id}/ringback", response_model=TonesOut, summary="List ringback tones"
    )
    async def list_tones(tenant_id: str, who: Principal = caller) -> TonesOut:
        return TonesOut(tones=[_out(view) for view in await tones().list_tones(who, tenant_id)])

    @router.get(
        "/tenants/{tenant_id}/ringback/{tone_id:path}",
        response_model=ToneOut,
        summary="Show a ringback tone",
    )
    async def get_tone(tenant_id: str, tone_id: str, who: Principal = caller) -> ToneOut:
        return _out(await tones().get_tone(who, tenant_id, tone_id))

    @router.delete(
        "/tenants/{tenant_id}/ringback/{tone_id:path}",
        response_model=OkOut,
        summary="Delete a ringback tone",
    )
    async def delete_tone(tenant_id: str, tone_id: str, who: Principal = caller) -> OkOut:
        await tones().delete_tone(who, tenant_id, tone_id)
        return OkOut()

    return router
