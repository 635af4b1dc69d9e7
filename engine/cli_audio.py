"""``maskline`` commands for audio: enterprise ringback tones and announcement prompts.

Registered by ``engine.cli.build_parser``; same output contract as the other control commands
(one JSON object per line on stdout; errors ``{"code", "message"}``, exit 1, or 2 for usage).

- ``ringback add --tenant T --tone ID (--file F | --text TEXT [--voice V])`` → the tone
  ``{"tenant_id", "tone_id", "source", "duration_ms", "created", "updated", "voice", "text"}``
  (upload or text-to-speech through the running server's API; replaces a tone of that id)
- ``ringback list --tenant T`` → one tone per line; ``ringback show --tenant T --tone ID``
- ``ringback remove --tenant T --tone ID`` → ``{"tenant_id", "tone_id", "removed": true}``
- ``prompts build [--force]`` → one ``{"prompt", "file", "created"}`` per prompt. Local, no
  server needed (``make run`` / install): makes the missing ``[audio] prompts_dir`` files with
  espeak-ng (``[audio] tts_voice``); ``--force`` re-makes every default, replacing the
  operator's own recordings too.
"""

from __future__ import annotations

import argparse
import mimetypes
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from config import ConfigError
from engine.cli import (
    EXIT_USAGE,
    _add_group,
    _api,
    _CliError,
    _control,
    _control_parser,
    _load,
)

if TYPE_CHECKING:
    from engine.cli import Commands

__all__ = ["COMMANDS"]


def _segment(value: str) -> str:
    """``value`` as one URL path segment (a tone id may hold any character)."""
    return quote(value, safe="")


def _tone_path(args: argparse.Namespace) -> str:
    return f"/v1/tenants/{_segment(args.tenant)}/ringback/{_segment(args.tone)}"


def _ringback_add(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.file is not None:
        try:
            data = Path(args.file).read_bytes()
        except OSError as err:
            raise _CliError(
                "FILE_UNREADABLE", f"cannot read {args.file}: {err.strerror}", EXIT_USAGE
            ) from None
        guessed, _ = mimetypes.guess_type(args.file)
        content_type = guessed or "application/octet-stream"
        return [_api(args, "PUT", _tone_path(args), content=data, content_type=content_type)]
    body: dict[str, Any] = {"text": args.text}
    if args.voice is not None:
        body["voice"] = args.voice
    return [_api(args, "POST", _tone_path(args) + "/tts", json_body=body)]


def _ringback_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    tones = _api(args, "GET", f"/v1/tenants/{_segment(args.tenant)}/ringback").get("tones", [])
    return [tone for tone in tones if isinstance(tone, dict)]


def _ringback_show(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_api(args, "GET", _tone_path(args))]


def _ringback_remove(args: argparse.Namespace) -> list[dict[str, Any]]:
    _api(args, "DELETE", _tone_path(args))
    return [{"tenant_id": args.tenant, "tone_id": args.tone, "removed": True}]


def _tenant_and_tone(parser: argparse.ArgumentParser, *, tone: bool = True) -> None:
    parser.add_argument("--tenant", required=True, metavar="T", help="the tenant id")
    if tone:
        parser.add_argument(
            "--tone", required=True, metavar="ID", help="the tone id named in ringback codes"
        )


def _add_ringback(commands: Commands) -> None:
    group = _add_group(
        commands,
        name="ringback",
        help_text="tenants' enterprise ringback tones",
        json_errors=True,
    )
    add = _control_parser(
        group,
        "add",
        help_text="upload a tone (any common audio format) or make it from text; replaces a "
        "tone of the same id",
        description="Store a tenant's ringback tone as 8 kHz telephony audio: --file uploads "
        "an audio file (WAV, MP3, OGG, FLAC ..., at most 5 minutes), --text speaks the text "
        "with espeak-ng (Mandarin voice cmn-latn-pinyin by default: Hanzi, or pinyin with tone "
        "numbers). Prints the tone.",
    )
    _tenant_and_tone(add)
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", metavar="F", help="an audio file")
    source.add_argument("--text", metavar="TEXT", help="text to speak")
    add.add_argument("--voice", metavar="V", help="espeak-ng voice for --text")
    add.set_defaults(handler=_control(_ringback_add))

    listing = _control_parser(group, "list", help_text="print the tenant's tones, one per line")
    _tenant_and_tone(listing, tone=False)
    listing.set_defaults(handler=_control(_ringback_list))

    show = _control_parser(group, "show", help_text="print one tone")
    _tenant_and_tone(show)
    show.set_defaults(handler=_control(_ringback_show))

    remove = _control_parser(group, "remove", help_text="delete a tone (its audio file too)")
    _tenant_and_tone(remove)
    remove.set_defaults(handler=_control(_ringback_remove))


def _prompts_build(args: argparse.Namespace) -> list[dict[str, Any]]:
    try:
        settings = _load(args.config)
    except ConfigError as err:
        raise _CliError("CONFIG_ILLEGAL", str(err), EXIT_USAGE) from None
    # Imported here: PyAV and NumPy are of no use to the other commands.
    from media.audio import AudioError  # noqa: PLC0415
    from media.prompts import PromptName, ensure_prompts, missing_prompts  # noqa: PLC0415

    folder = settings.audio.prompts_dir
    made = set(PromptName) if args.force else set(missing_prompts(folder))
    try:
        paths = ensure_prompts(folder, voice=settings.audio.tts_voice, force=args.force)
    except AudioError as err:
        raise _CliError(str(err.code), err.message) from None
    except OSError as err:
        raise _CliError("FILE_UNWRITABLE", f"cannot write prompts in {folder}: {err}") from None
    return [
        {"prompt": name, "file": str(path), "created": PromptName(name) in made}
        for name, path in paths.items()
    ]


def _add_prompts(commands: Commands) -> None:
    group = _add_group(commands, name="prompts", help_text="announcement prompts", json_errors=True)
    build = _control_parser(
        group,
        "build",
        help_text="make the missing prompt files of [audio] prompts_dir with espeak-ng",
        description="Make the announcement prompts (one <NAME>.wav per intercept cause and for "
        "the extension IVR) that are missing in [audio] prompts_dir, with espeak-ng and "
        "[audio] tts_voice. Existing files are kept (they may be your recordings) unless "
        "--force. Local: no running server needed.",
    )
    build.add_argument(
        "--force", action="store_true", help="re-make every default, replacing existing files"
    )
    build.set_defaults(handler=_control(_prompts_build))


#: One registration function per top-level command group of this area.
COMMANDS: Final[tuple[Callable[[Commands], None], ...]] = (_add_ringback, _add_prompts)
