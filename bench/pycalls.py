"""Interpreted Python calls per call: which functions of a real ``maskline serve`` still run in
the interpreter, and how often per SIPp call.

Most of the call path is compiled (``build_compiled.py``); what is left interpreted — asyncio's
Python parts, dataclass-made ``__init__``s, an Enum's ``__call__``, structlog, a property of a
settings class — costs a frame each time, and it does not show by name in a native profile
(``bench/instructions.py`` sees only ``_PyEval_EvalFrameDefault``). One such call looks small;
15 ``Enum.__hash__`` calls per call were 1.7 % of the event loop's instructions. This counts
them, so that they are judged by number.

One run (~2 minutes):

1. ``maskline serve`` starts through this script (``--boot``), which installs a
   ``sys.setprofile`` hook (in every thread) counting "call" events per code object — entries
   into interpreted code, a coroutine's or generator's resumption included — and dumps the
   counts to a JSON file on SIGUSR1; the config and database are ``cps.py``'s;
2. dump, SIPp places ``--calls`` calls at ``--rate`` calls/s, ``--tail`` seconds for every
   transaction to end through its timers, dump; ``--idle`` seconds with no calls, dump.

Per call = (window's calls − the idle rate × the window's length) / calls, the event loop's
thread and the others apart. The hook makes the process several times slower (a Python call
per event), so the rate is low and nothing here is a time.

Usage (from the repository root, after ``make deps``)::

    .venv/bin/python bench/pycalls.py                 # 400 calls at 40 calls/s, top 40
    .venv/bin/python bench/pycalls.py --top 80
    PYTHONPATH=/path/to/other/tree .venv/bin/python bench/pycalls.py   # another tree
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import signal
import sys
import sysconfig
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

OUT_ENV = (
    "PYCALLS_OUT"  # where the booted server writes its dumps (not MASKLINE_: cps strips those)
)
SETTLE_S = 3.0
DUMP_DEADLINE_S = 10.0

_STDLIB = sysconfig.get_paths()["stdlib"] + "/"
_REPOSITORY = str(Path(__file__).resolve().parent.parent) + "/"

# (thread: "loop" | "other", "file:line name") -> calls
Counts = dict[tuple[str, str], int]


# ======================================================================== in the server
def install_counter(out: Path) -> None:
    """Count entries into interpreted code per code object and thread kind; SIGUSR1 dumps
    the totals so far to ``out/<n>.json`` (n = 1, 2, ...)."""
    main_ident = threading.get_ident()
    counts: Counter[tuple[bool, Any]] = Counter()
    dumps = 0

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        if event == "call":
            counts[threading.get_ident() == main_ident, frame.f_code] += 1

    def dump(_signum: int, _frame: object) -> None:
        nonlocal dumps
        dumps += 1
        rows = [
            ["loop" if on_loop else "other", describe(code), count]
            for (on_loop, code), count in list(counts.items())
        ]
        target = out / f"{dumps}.json"
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(rows), encoding="utf-8")
        temporary.rename(target)  # whole or absent for the reader

    signal.signal(signal.SIGUSR1, dump)
    threading.setprofile(profile)
    sys.setprofile(profile)


def describe(code: Any) -> str:
    """``file:line name`` of a code object; the file relative to site-packages (a dependency),
    the standard library ("stdlib/") or the repository."""
    filename = str(code.co_filename)
    if "/site-packages/" in filename:
        filename = filename.split("/site-packages/", 1)[1]
    elif filename.startswith(_STDLIB):
        filename = "stdlib/" + filename.removeprefix(_STDLIB)
    else:
        filename = filename.removeprefix(_REPOSITORY)
    return f"{filename}:{code.co_firstlineno} {code.co_qualname}"


def boot(argv: Sequence[str]) -> None:
    """Run the console script ``argv[0]`` with ``argv[1:]`` under the counter."""
    install_counter(Path(os.environ[OUT_ENV]))
    sys.argv = list(argv)
    # As if the script had been run itself: its directory first on the path, not bench/ (whose
    # media.py would shadow the media package).
    sys.path[0] = str(Path(argv[0]).resolve().parent)
    runpy.run_path(argv[0], run_name="__main__")


# ======================================================================== arithmetic
def as_counts(rows: Sequence[Sequence[Any]]) -> Counts:
    """A dump's rows as counts (two code objects of one name and line are added up)."""
    counts: Counts = {}
    for thread, name, count in rows:
        key = (str(thread), str(name))
        counts[key] = counts.get(key, 0) + int(count)
    return counts


@dataclass(frozen=True)
class PerCall:
    """Interpreted calls per SIPp call, on the loop and in other threads, and by function."""

    calls: int
    loop: float
    other_threads: float
    top: list[tuple[str, str, float]]  # (thread, function, per call), most first


def per_call(
    before: Counts,
    after_calls: Counts,
    after_idle: Counts,
    *,
    calls: int,
    window_s: float,
    idle_s: float,
    top: int,
) -> PerCall:
    """(window − idle rate × window length) / calls per function; below zero reads zero."""
    per: dict[tuple[str, str], float] = {}
    for key in set(after_calls) | set(after_idle):
        window = after_calls.get(key, 0) - before.get(key, 0)
        idle = after_idle.get(key, 0) - after_calls.get(key, 0)
        value = (window - idle / idle_s * window_s) / calls
        if value > 0:
            per[key] = value
    ranked = sorted(per.items(), key=lambda item: -item[1])
    return PerCall(
        calls=calls,
        loop=sum(v for (thread, _), v in per.items() if thread == "loop"),
        other_threads=sum(v for (thread, _), v in per.items() if thread != "loop"),
        top=[(thread, name, value) for (thread, name), value in ranked[:top]],
    )


def format_result(result: PerCall, *, label: str) -> str:
    lines = [
        f"{label}: interpreted calls per call over {result.calls} calls — "
        f"event loop {result.loop:,.1f}, other threads {result.other_threads:,.1f}",
        "",
        "  per call  thread  function",
    ]
    lines += [f"  {value:8.2f}  {thread:6}  {name}" for thread, name, value in result.top]
    return "\n".join(lines)


# ======================================================================== the run
def read_dump(out: Path, number: int, pid: int) -> Counts:
    """Ask the server for dump ``number`` and read it."""
    target = out / f"{number}.json"
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + DUMP_DEADLINE_S
    while not target.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"maskline wrote no {target} within {DUMP_DEADLINE_S} s")
        time.sleep(0.05)
    return as_counts(json.loads(target.read_text("utf-8")))


def measure(args: argparse.Namespace) -> PerCall:
    sys.path.append(str(Path(__file__).resolve().parent))
    import cps  # noqa: PLC0415 - bench/ is not a package: its sibling script, by path

    out: Path = args.out / time.strftime("%Y%m%d-%H%M%S")
    dumps = out / "dumps"
    dumps.mkdir(parents=True)
    os.environ[OUT_ENV] = str(dumps)
    cps.MASKLINE_PREFIX[:] = [sys.executable, str(Path(__file__).resolve()), "--boot"]
    counts: dict[str, Counts] = {}

    def mark_for(pid: int) -> Callable[[str], None]:
        def mark(name: str) -> None:
            counts[name] = read_dump(dumps, len(counts) + 1, pid)

        return mark

    counted = cps.run_counted_window(
        out,
        label="pycalls bench",
        settle_s=SETTLE_S,
        rate=args.rate,
        calls=args.calls,
        tail_s=args.tail,
        idle_s=args.idle,
        mark_for=mark_for,
        counter="the call counter",
        warmup_calls=args.warmup,
    )
    result = per_call(
        counts["start"],
        counts["calls"],
        counts["idle"],
        calls=counted.step.calls,
        window_s=counted.window_s,
        idle_s=counted.idle_s,
        top=args.top,
    )
    (out / "result.json").write_text(json.dumps(result.__dict__, indent=1), encoding="utf-8")
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="calls in the window (400)")
    parser.add_argument("--rate", type=int, default=40, help="calls/s offered (40)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=40,
        help="calls placed and ended before the window: first-use costs left out (40; 0: none)",
    )
    parser.add_argument("--tail", type=float, default=36.0, help="seconds after the calls (36)")
    parser.add_argument("--idle", type=float, default=15.0, help="idle window, seconds (15)")
    parser.add_argument("--top", type=int, default=40, help="functions listed (40)")
    parser.add_argument("--label", default="maskline", help="name printed with the figures")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "out" / "pycalls"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--boot"]:
        if OUT_ENV not in os.environ:
            raise SystemExit(f"--boot needs {OUT_ENV} (set by this script's own run)")
        boot(argv[1:])
        return 0
    args = parse_args(argv)
    started = time.monotonic()
    result = measure(args)
    print(format_result(result, label=args.label))
    print(f"run took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
