"""Instructions per call: a real ``maskline serve`` under valgrind's callgrind, calls from SIPp.

``cps.py`` measures CPU seconds, which on a shared VM drift by ±15 % within minutes: a change
worth 5 % cannot be told apart from the weather. callgrind counts the instructions the process
executes, which do not depend on what else the machine is doing (the same binary, input and
work give the same count), so two trees can be compared one after the other.

One run (~3 minutes; valgrind makes the server ~50× slower, so calls are offered slowly):

1. ``maskline serve`` starts under ``valgrind --tool=callgrind --separate-threads=yes`` on a
   fresh config and database (``cps.py``'s), with a small AXB plan provisioned over REST;
2. the counters are zeroed (``callgrind_control -z``), SIPp places ``--calls`` calls at
   ``--rate`` calls/s with ``cps.py``'s scenarios, then the run waits ``--tail`` seconds so that
   every transaction of those calls ends through its timers (32 s) inside the window; dump;
3. zeroed again, ``--idle`` seconds with no calls (timers, lag probes, log batches); dump.

Per call = (window's instructions − the idle rate × the window's length) / calls, for the event
loop's thread and for the other threads (SQLite writer, CDR, report delivery) apart. The top
functions by own instructions per call follow; Python functions run inside the interpreter's
``_PyEval_EvalFrameDefault``, while compiled modules (``CPyDef_…``), CPython's runtime
(``dict``, allocation, ``str``), uvloop, SQLite and libc show by name. System-call time in the
kernel is not counted (``sendto`` on loopback is a real part of a call's cost: see cps.py).

Usage (from the repository root, after ``make deps``)::

    .venv/bin/python bench/instructions.py                  # 120 calls at 8 calls/s
    .venv/bin/python bench/instructions.py --calls 200 --top 60
    PYTHONPATH=/path/to/other/tree .venv/bin/python bench/instructions.py   # another tree

Needs valgrind (Debian package ``valgrind``; ``callgrind_control`` comes with it) and SIPp.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Appended, not first: bench/media.py must not shadow the media package for whoever imports
# this module (the tests do, before anything imported media).
sys.path.append(str(Path(__file__).resolve().parent))
import cps  # bench/ is not a package: its sibling script, by path

OUT = cps.OUT / "instructions"
STARTUP_DEADLINE_S = 600.0  # imports and the first espeak-ng prompts, ~50× slower
SETTLE_S = 5.0
MAIN_THREAD = 1  # callgrind numbers threads from 1 in creation order: 1 is the main thread


# ================================================================== callgrind's file format
@dataclass(frozen=True)
class ThreadCost:
    """One thread's part of one dump: its total and every function's own instructions."""

    thread: int
    total: int
    own: Counter[str]


_THREAD_SUFFIX = re.compile(r"-(\d+)$")
_NAME_REF = re.compile(r"^\((\d+)\)(?: (.*))?$")


def parse_callgrind(text: str, thread: int) -> ThreadCost:
    """Own (exclusive) instructions per function of a callgrind output file.

    A cost line right after a ``calls=`` line is the call's inclusive cost, charged to the
    caller's call site, not its own work: skipped. Names may be compressed (``(12) name`` the
    first time, ``(12)`` after)."""
    names: dict[str, str] = {}
    own: Counter[str] = Counter()
    function = "?"
    after_calls = False
    total = 0
    for line in text.splitlines():
        if not line:
            continue
        head = line[0]
        if head.isdigit() or head in "+-*":
            if after_calls:
                after_calls = False
                continue
            fields = line.split()
            if len(fields) >= 2:
                own[function] += int(fields[1])
            continue
        key, _, value = line.partition("=")
        if key == "fn":
            function = _resolve(value, names)
        elif key == "cfn":
            _resolve(value, names)  # a callee's first mention also defines its number
        elif key == "calls":
            after_calls = True
        elif line.startswith("summary:"):
            total = int(line.split()[1])
    return ThreadCost(thread=thread, total=total or sum(own.values()), own=own)


def _resolve(value: str, names: dict[str, str]) -> str:
    match = _NAME_REF.match(value)
    if match is None:
        return value
    number, name = match.groups()
    if name is not None:
        names[number] = name
    return names.get(number, value)


def thread_of(path: Path) -> int:
    """The thread number of a ``--separate-threads=yes`` file (``cg.123.1-02`` → 2)."""
    match = _THREAD_SUFFIX.search(path.name)
    return int(match.group(1)) if match else MAIN_THREAD


@dataclass(frozen=True)
class PerCall:
    """Instructions per call: the loop's thread, the others, and the loop's top functions."""

    calls: int
    loop: float
    other_threads: float
    top: list[tuple[str, float]]

    @property
    def total(self) -> float:
        return self.loop + self.other_threads


def per_call(
    window: Sequence[ThreadCost],
    idle: Sequence[ThreadCost],
    *,
    calls: int,
    window_s: float,
    idle_s: float,
    top: int = 40,
) -> PerCall:
    """What the calls cost: the window minus the idle rate over the window's length."""
    scale = window_s / idle_s if idle_s > 0 else 0.0

    def net(*, main: bool) -> float:
        def total(costs: Iterable[ThreadCost]) -> int:
            return sum(c.total for c in costs if (c.thread == MAIN_THREAD) == main)

        return total(window) - scale * total(idle)

    loop, others = net(main=True), net(main=False)
    own: Counter[str] = Counter()
    for cost in window:
        if cost.thread == MAIN_THREAD:
            own.update(cost.own)
    for cost in idle:
        if cost.thread == MAIN_THREAD:
            for name, value in cost.own.items():
                own[name] -= round(scale * value)
    ranked = [(name, value / calls) for name, value in own.most_common(top)]
    return PerCall(calls=calls, loop=loop / calls, other_threads=others / calls, top=ranked)


def short_name(function: str) -> str:
    """``/path/Objects/dictobject.c:_Py_dict_lookup [lib]`` → ``_Py_dict_lookup (dictobject.c)``;
    a bare name (callgrind's ``fn=``) stays as it is, without its ``[object]``."""
    name, _, _ = function.partition(" [")
    where, _, symbol = name.rpartition(":")
    return f"{symbol} ({Path(where).name})" if "/" in where else name


def format_result(result: PerCall, *, label: str) -> str:
    lines = [
        f"{label}: {result.calls} calls",
        f"  event loop thread   {result.loop / 1e6:8.3f} M instructions per call",
        f"  other threads       {result.other_threads / 1e6:8.3f} M",
        f"  whole process       {result.total / 1e6:8.3f} M",
        "",
        "  event loop's own instructions per call, by function",
        "       k/call   share  function",
    ]
    for name, value in result.top:
        lines.append(
            f"  {value / 1e3:11.1f}  {100 * value / result.loop:5.1f} %  {short_name(name)}"
        )
    return "\n".join(lines)


# ====================================================================================== run
def read_dump(out: Path, pid: int, part: int) -> list[ThreadCost]:
    """Every thread's file of dump number ``part`` (``cg.<pid>.<part>-<thread>``)."""
    files = sorted(out.glob(f"cg.{pid}.{part}-*"))
    if not files:
        raise RuntimeError(f"no callgrind dump {part} of {pid} in {out}")
    return [parse_callgrind(f.read_text("utf-8", "replace"), thread_of(f)) for f in files]


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def measure(args: argparse.Namespace) -> PerCall:
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: apt-get install valgrind")
    out: Path = args.out / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    cps.READY_DEADLINE_S = STARTUP_DEADLINE_S
    cps.MASKLINE_PREFIX[:] = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        "--dump-instr=no",
        f"--callgrind-out-file={out}/cg.%p",
    ]

    def mark_for(pid: int) -> Callable[[str], None]:
        def mark(name: str) -> None:
            if name != "start":
                control(f"--dump={name}", str(pid))
            if name != "idle":
                control("-z", str(pid))  # the next window starts from zero

        return mark

    counted = cps.run_counted_window(
        out,
        label="instructions bench (maskline under callgrind)",
        settle_s=SETTLE_S,
        rate=args.rate,
        calls=args.calls,
        tail_s=args.tail,
        idle_s=args.idle,
        mark_for=mark_for,
        counter="valgrind",
        warmup_calls=args.warmup,
    )
    window, idle = read_dump(out, counted.pid, 1), read_dump(out, counted.pid, 2)
    result = per_call(
        window,
        idle,
        calls=counted.step.calls,
        window_s=counted.window_s,
        idle_s=counted.idle_s,
        top=args.top,
    )
    (out / "result.json").write_text(
        json.dumps(
            {
                "calls": result.calls,
                "loop_per_call": result.loop,
                "other_threads_per_call": result.other_threads,
                "window_s": counted.window_s,
                "idle_s": counted.idle_s,
                "top": result.top,
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=120, help="calls in the window (120)")
    parser.add_argument("--rate", type=int, default=8, help="calls/s offered (8)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=40,
        help="calls placed and ended before the window: first-use costs left out (40; 0: none)",
    )
    parser.add_argument("--tail", type=float, default=40.0, help="seconds after the calls (40)")
    parser.add_argument("--idle", type=float, default=20.0, help="idle window, seconds (20)")
    parser.add_argument("--top", type=int, default=40, help="functions listed (40)")
    parser.add_argument("--label", default="maskline", help="name printed with the figures")
    parser.add_argument("--out", type=Path, default=OUT, help="where work files go")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    result = measure(args)
    print(format_result(result, label=args.label))
    print(f"run took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
