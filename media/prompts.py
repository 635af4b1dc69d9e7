"""Announcement prompts: intercepted calls (one per cause) and the AXN-extension IVR.

Each prompt is a file ``<NAME>.wav`` in ``[audio] prompts_dir`` (``NO_BINDING.wav``,
``ENTER_EXTENSION.wav`` ...). :func:`ensure_prompts` makes the missing ones from the default
Mandarin texts below with espeak-ng (``maskline prompts build`` at install time); a file that
exists is the operator's and is never overwritten unless asked (``--force``). The operator may
replace any file with a recording in any format FFmpeg reads (the name stays ``<NAME>.wav``):
:class:`PromptLibrary` decodes and resamples it to 8 kHz when it loads.

The default texts are **pinyin with tone numbers** (``qing3 shu1 ru4 ...``), the input the default
voice ``cmn-latn-pinyin`` reads exactly (tone sandhi is applied by espeak-ng). That voice reads
Hanzi too, but a character's tone then comes from espeak-ng's dictionary; the pinyin pins it. The
Hanzi beside each text is what it says. Other voices (``cmn`` reads Latin letters as English) do
not read these texts well: with another voice, record the prompts instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from media.audio import (
    DEFAULT_VOICE,
    AudioError,
    Pcm8k,
    decode_audio,
    frames,
    synthesize,
    write_wav,
)
from routing.model import InterceptCause

__all__ = [
    "DEFAULT_PROMPTS",
    "PromptLibrary",
    "PromptName",
    "PromptText",
    "ensure_prompts",
    "missing_prompts",
    "prompt_for_cause",
    "prompt_path",
]

_log = logging.getLogger("maskline.media.prompts")


class PromptName(StrEnum):
    """The prompts; the intercept ones carry the :class:`InterceptCause` value as their name."""

    NO_BINDING = "NO_BINDING"
    EXPIRED = "EXPIRED"
    RESTRICTED = "RESTRICTED"
    NOT_IN_GROUP = "NOT_IN_GROUP"
    BLACKLISTED = "BLACKLISTED"
    UNVERIFIED = "UNVERIFIED"
    NO_DEFAULT_B = "NO_DEFAULT_B"
    ENTER_EXTENSION = "ENTER_EXTENSION"  # AXN extension: "enter the extension followed by #"
    EXTENSION_RETRY = "EXTENSION_RETRY"  # a wrong or empty entry, tries left
    EXTENSION_NOT_FOUND = "EXTENSION_NOT_FOUND"  # no tries left: said before hanging up


@dataclass(frozen=True, slots=True)
class PromptText:
    """A default prompt: the pinyin espeak-ng speaks and the Hanzi it means."""

    pinyin: str
    hanzi: str


DEFAULT_PROMPTS: Final[Mapping[PromptName, PromptText]] = {
    PromptName.NO_BINDING: PromptText(
        "nin2 bo1 da3 de5 hao4 ma3 bu4 cun2 zai4, qing3 he2 dui4 hou4 zai4 bo1.",
        "您拨打的号码不存在，请核对后再拨。",
    ),
    PromptName.EXPIRED: PromptText(
        "nin2 bo1 da3 de5 hao4 ma3 yi3 shi1 xiao4.",
        "您拨打的号码已失效。",
    ),
    PromptName.RESTRICTED: PromptText(
        "nin2 de5 hu1 jiao4 shou4 dao4 xian4 zhi4, wu2 fa3 jie1 tong1.",
        "您的呼叫受到限制，无法接通。",
    ),
    PromptName.NOT_IN_GROUP: PromptText(
        "nin2 mei2 you3 quan2 xian4 hu1 jiao4 gai1 hao4 ma3.",
        "您没有权限呼叫该号码。",
    ),
    PromptName.BLACKLISTED: PromptText(
        "nin2 de5 hu1 jiao4 yi3 bei4 ju4 jue2.",
        "您的呼叫已被拒绝。",
    ),
    PromptName.UNVERIFIED: PromptText(
        "gai1 hao4 ma3 shang4 wei4 wan2 cheng2 shi2 ming2 ren4 zheng4, "
        "zan4 shi2 wu2 fa3 jie1 tong1.",
        "该号码尚未完成实名认证，暂时无法接通。",
    ),
    PromptName.NO_DEFAULT_B: PromptText(
        "nin2 bo1 da3 de5 hao4 ma3 zan4 shi2 wu2 fa3 jie1 tong1.",
        "您拨打的号码暂时无法接通。",
    ),
    PromptName.ENTER_EXTENSION: PromptText(
        "qing3 shu1 ru4 fen1 ji1 hao4, yi3 jing3 hao4 jian4 jie2 shu4.",
        "请输入分机号，以井号键结束。",
    ),
    PromptName.EXTENSION_RETRY: PromptText(
        "nin2 shu1 ru4 de5 fen1 ji1 hao4 bu2 zheng4 que4, qing3 chong2 xin1 shu1 ru4.",
        "您输入的分机号不正确，请重新输入。",
    ),
    PromptName.EXTENSION_NOT_FOUND: PromptText(
        "nin2 shu1 ru4 de5 fen1 ji1 hao4 bu4 cun2 zai4, zai4 jian4.",
        "您输入的分机号不存在，再见。",
    ),
}


def prompt_for_cause(cause: InterceptCause) -> PromptName:
    """The announcement of an intercepted call."""
    return PromptName(cause.value)


def prompt_path(prompts_dir: Path, name: PromptName) -> Path:
    """``<prompts_dir>/<NAME>.wav``."""
    return Path(prompts_dir) / f"{name.value}.wav"


def missing_prompts(prompts_dir: Path) -> list[PromptName]:
    """The prompts that have no file yet."""
    return [name for name in PromptName if not prompt_path(prompts_dir, name).exists()]


def ensure_prompts(
    prompts_dir: Path, *, voice: str = DEFAULT_VOICE, force: bool = False
) -> dict[str, Path]:
    """Every prompt's file, creating the missing ones from :data:`DEFAULT_PROMPTS` with ``voice``.

    An existing file is kept (it may be the operator's recording) unless ``force``, which
    re-creates every default. Files are written atomically. Raises :class:`AudioError` when
    espeak-ng fails (files made before the failure stay; nothing half-written).
    """
    wanted = list(PromptName) if force else missing_prompts(prompts_dir)
    for name in wanted:
        pcm = synthesize(DEFAULT_PROMPTS[name].pinyin, voice=voice)
        write_wav(prompt_path(prompts_dir, name), pcm)
        _log.info("prompt created", extra={"prompt": name.value, "voice": voice})
    return {name.value: prompt_path(prompts_dir, name) for name in PromptName}


class PromptLibrary:
    """The prompts of ``prompts_dir``, loaded once, as pre-encoded 20 ms G.711 payloads.

    A missing or unreadable file is logged at load and plays as nothing (``frames`` returns an
    empty sequence): a call is still answered with its final response.
    """

    def __init__(self, prompts_dir: Path) -> None:
        self.prompts_dir = Path(prompts_dir)
        self._pcm: dict[PromptName, Pcm8k] = {}
        self._frames: dict[tuple[PromptName, int], tuple[bytes, ...]] = {}
        for name in PromptName:
            path = prompt_path(self.prompts_dir, name)
            try:
                # decode_audio rather than read_wav: an operator's replacement may be any format
                # or rate; it is converted here, once.
                self._pcm[name] = decode_audio(path.read_bytes())
            except FileNotFoundError:
                _log.warning("prompt missing", extra={"prompt": name.value, "file": str(path)})
            except (AudioError, OSError) as error:
                _log.error(
                    "prompt unusable",
                    extra={"prompt": name.value, "file": str(path), "error": str(error)},
                )

    def __contains__(self, name: object) -> bool:
        return name in self._pcm

    def pcm(self, name: PromptName) -> Pcm8k | None:
        """A prompt's 8 kHz samples, or None when it is missing."""
        return self._pcm.get(name)

    def frames(self, name: PromptName, payload_type: int) -> Sequence[bytes]:
        """A prompt's payloads for ``payload_type`` (0 PCMU, 8 PCMA), encoded on first use.

        Empty for a missing prompt; ``ValueError`` for a payload type that is not G.711.
        """
        key = (name, payload_type)
        cached = self._frames.get(key)
        if cached is None:
            pcm = self._pcm.get(name)
            if pcm is None:
                if payload_type not in (0, 8):
                    raise ValueError(f"not a G.711 payload type: {payload_type}")
                return ()
            cached = self._frames[key] = tuple(frames(pcm, payload_type))
        return cached
