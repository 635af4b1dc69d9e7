"""Media benchmark: how many concurrent G.711 calls one relay process carries cleanly, with and
without recording, beside a plain uvloop UDP echo measured in the same run.

    .venv/bin/python bench/media.py                   # full run (~12-15 min on 2 idle cores)
    .venv/bin/python bench/media.py --quick           # 3 s runs, coarser steps, no what-if
    .venv/bin/python bench/media.py --only relay,echo --start 800 --step 100

A call is two RTP streams (caller → callee, callee → caller) of 50 packets/s each, 172-byte
packets with 160 bytes of real G.711 µ-law (a 440 Hz tone from the caller, 1 kHz from the
callee). A run is *clean* when less than 0.1 % of the packets sent are lost, a packet arriving
more than 100 ms after it was sent counting as lost (socket buffers hide an overloaded relay for
seconds: without a latency cut-off it would look lossless while the audio is useless). The call
count steps up until a run is not clean, then bisects to find the highest clean count.

Processes: this script (owns the far parties' sockets), one server child per relay worker
(``--serve relay``: ``media.relay.MediaRelay`` on uvloop, one ``MediaSession`` per call, with
``--record`` a ``media.recording.CallRecording`` hooked on every session; ``--serve echo``:
plain uvloop ``DatagramProtocol``s sending every datagram back), and the load generator
``rtpgen`` written in C (bench/media_rtpgen.c, compiled once into bench/out/ with ``cc``): it
sends with ``sendmmsg``, receives with ``recvmmsg``, keeps every packet's send time and
measures its latency on arrival. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final, Protocol, cast

# Run from a checkout without installing: make the repository root importable.
ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import uvloop  # noqa: E402

from media.g711 import ulaw_encode  # noqa: E402
from media.ports import PortAllocator  # noqa: E402
from media.recording import CallRecording  # noqa: E402
from media.recording_io import write_wav as write_recording  # noqa: E402
from media.relay import MediaRelay, PacketDirection  # noqa: E402

OUT: Final = ROOT / "bench" / "out"
GENERATOR_SOURCE: Final = ROOT / "bench" / "media_rtpgen.c"
HOST: Final = "127.0.0.1"
SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160  # 20 ms of G.711 at 8 kHz
HEADER_BYTES: Final = 12
PACKET_BYTES: Final = HEADER_BYTES + FRAME_SAMPLES
INTERVAL_US: Final = 20_000
PACKETS_PER_CALL_S: Final = 2 * 1_000_000 // INTERVAL_US  # two streams of 50 packets/s
TONE_FRAMES: Final = 50  # one second of each tone, played in a loop (whole periods: no click)
CALLER_TONE_HZ: Final = 440
CALLEE_TONE_HZ: Final = 1000
LATE_AFTER_US: Final = 100_000
MAX_LOSS_PCT: Final = 0.1
SERVER_BUFFER_BYTES: Final = 256 * 1024  # the echo's sockets, as media.relay's default
GENERATOR_BUFFER_BYTES: Final = 4 * 1024 * 1024  # the generator's few sockets carry every flow


# --- accounting (pure) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of the packets of one run, by the generator's clock.

    ``on_time``: arrived within the cut-off; ``late``: arrived after it (or after the
    generator had forgotten its send time, ``stale``); ``missing``: never arrived. Latency
    percentiles are over every packet whose latency was measured, late ones included.
    """

    sent: int
    on_time: int
    late: int
    missing: int
    p50_us: float
    p99_us: float
    p999_us: float
    max_us: float

    @property
    def lost(self) -> int:
        """Packets that did not arrive in time: late or missing."""
        return self.sent - self.on_time

    @property
    def loss_pct(self) -> float:
        """Lost packets as a share of those sent (100 when nothing was sent)."""
        return 100.0 * self.lost / self.sent if self.sent else 100.0


def latency_percentile_us(histogram: Sequence[Sequence[int]], bucket_us: int, q: float) -> float:
    """The ``q`` quantile (0 < q <= 1) of a latency histogram, as its bucket's upper edge.

    ``histogram`` holds ``(bucket, count)`` pairs, bucket b covering [b, b + 1) x bucket_us.
    NaN for an empty histogram.
    """
    if not 0 < q <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {q}")
    pairs = sorted((int(b), int(c)) for b, c in histogram if c > 0)
    total = sum(c for _, c in pairs)
    if total == 0:
        return math.nan
    rank = math.ceil(q * total)
    seen = 0
    for bucket, count in pairs:
        seen += count
        if seen >= rank:
            return float((bucket + 1) * bucket_us)
    raise AssertionError("unreachable: the ranks add up to the total")


def account(
    *,
    sent: int,
    histogram: Sequence[Sequence[int]],
    bucket_us: int,
    stale: int = 0,
    late_after_us: int = LATE_AFTER_US,
) -> Delivery:
    """Classify a run's packets from the generator's latency histogram.

    A packet is on time when its whole bucket lies below ``late_after_us`` (so the cut-off is
    exact when it is a multiple of ``bucket_us``, and errs towards "late" otherwise).
    """
    if bucket_us <= 0:
        raise ValueError(f"bucket_us must be positive, got {bucket_us}")
    on_time = late = 0
    for bucket, count in histogram:
        if (bucket + 1) * bucket_us <= late_after_us:
            on_time += count
        else:
            late += count
    late += stale
    if on_time + late > sent:
        raise ValueError(f"{on_time + late} packets arrived of {sent} sent")
    return Delivery(
        sent=sent,
        on_time=on_time,
        late=late,
        missing=sent - on_time - late,
        p50_us=latency_percentile_us(histogram, bucket_us, 0.5),
        p99_us=latency_percentile_us(histogram, bucket_us, 0.99),
        p999_us=latency_percentile_us(histogram, bucket_us, 0.999),
        max_us=latency_percentile_us(histogram, bucket_us, 1.0),
    )


def is_clean(delivery: Delivery, *, misrouted: int, max_loss_pct: float = MAX_LOSS_PCT) -> bool:
    """A clean run: packets were sent, none misrouted, and less than ``max_loss_pct`` lost."""
    return delivery.sent > 0 and misrouted == 0 and delivery.loss_pct < max_loss_pct


class KneeSearch:
    """Finds the highest clean call count: steps up until a run fails, then bisects.

    ``next_calls()`` gives the count to try next (None when the search is over), ``record()``
    takes its outcome. Candidates are ``start``, ``start + step``, ... up to ``limit``; after
    the first failure the gap between the highest clean and the lowest failed count is halved
    (on multiples of ``resolution`` above the clean count) until it is at most ``resolution``.
    The outcome is ``clean_max`` (0 if nothing was clean); ``capped`` says the limit was clean.
    """

    __slots__ = ("clean_max", "failed_min", "limit", "resolution", "start", "step")

    def __init__(self, *, start: int, step: int, resolution: int, limit: int) -> None:
        """Validate the bounds (all positive, ``start <= limit``)."""
        if min(start, step, resolution) <= 0 or start > limit:
            raise ValueError("need 0 < start <= limit, step > 0, resolution > 0")
        self.start = start
        self.step = step
        self.resolution = resolution
        self.limit = limit
        self.clean_max = 0
        self.failed_min: int | None = None

    @property
    def capped(self) -> bool:
        """Whether the search stopped at ``limit`` with the limit still clean."""
        return self.clean_max >= self.limit

    def next_calls(self) -> int | None:
        """The next call count to run, or None when the knee is found."""
        if self.failed_min is None:
            if self.clean_max >= self.limit:
                return None
            return min(self.clean_max + self.step if self.clean_max else self.start, self.limit)
        gap = self.failed_min - self.clean_max
        if gap <= self.resolution:
            return None
        half = max(self.resolution, gap // 2 // self.resolution * self.resolution)
        return self.clean_max + half

    def record(self, calls: int, clean: bool) -> None:
        """Take the outcome of a run at ``calls``."""
        if clean:
            self.clean_max = max(self.clean_max, calls)
        elif self.failed_min is None or calls < self.failed_min:
            self.failed_min = calls


# --- profile (pure: perf script text in, shares out) --------------------------------------------

SEND: Final = "send: sendmsg, UDP/IP output"
DELIVERY: Final = "send: loopback delivery into the receiving socket (softirq)"
RECV: Final = "recv: recvmsg"
EPOLL: Final = "epoll_wait"
KERNEL_OTHER: Final = "kernel, other (scheduler, page faults, timers)"
PYTHON: Final = "Python interpreter (the relay's callback, objects)"
UVLOOP: Final = "uvloop and libuv (own code)"
FORMATTING: Final = "libc: inet_ntop/snprintf (uvloop formats each source address)"
LIBC_OTHER: Final = "libc, other (malloc, memcpy, syscall wrappers)"
OTHER: Final = "other"
PROFILE_CATEGORIES: Final = (
    SEND,
    DELIVERY,
    RECV,
    EPOLL,
    KERNEL_OTHER,
    PYTHON,
    UVLOOP,
    FORMATTING,
    LIBC_OTHER,
    OTHER,
)

_SEND_SYMBOLS: Final = frozenset(
    {
        "__sys_sendmsg",
        "__sys_sendto",
        "__sys_sendmmsg",
        "__libc_sendmsg",
        "__libc_sendto",
        "__sendmmsg",
    }
)
_DELIVERY_SYMBOLS: Final = frozenset(
    {"net_rx_action", "process_backlog", "__netif_receive_skb_one_core"}
)
_RECV_SYMBOLS: Final = frozenset(
    {
        "__sys_recvmsg",
        "__sys_recvfrom",
        "__sys_recvmmsg",
        "__libc_recvmsg",
        "__libc_recvfrom",
        "recvmmsg",
    }
)
_EPOLL_SYMBOLS: Final = frozenset(
    {"do_epoll_wait", "__x64_sys_epoll_wait", "epoll_wait", "__x64_sys_epoll_pwait"}
)
_FORMATTING_MARKS: Final = ("printf", "_itoa", "inet_ntop", "_IO_", "strchrnul")


def categorize_sample(frames: Sequence[tuple[str, str]]) -> str:
    """The cost category of one perf sample: ``frames`` are (symbol, dso), leaf first.

    Kernel call chains are complete, so a sample is charged to the system call it is inside;
    user-space chains are not (libc and CPython have no frame pointers), so outside a system
    call the leaf's library decides.
    """
    if not frames:
        return OTHER
    symbols = {symbol for symbol, _ in frames}
    if symbols & _SEND_SYMBOLS:
        return DELIVERY if symbols & _DELIVERY_SYMBOLS else SEND
    if symbols & _RECV_SYMBOLS:
        return RECV
    if symbols & _EPOLL_SYMBOLS:
        return EPOLL
    leaf, dso = frames[0]
    if dso == "[kernel.kallsyms]":
        return KERNEL_OTHER
    library = dso.rsplit("/", 1)[-1]
    if library.startswith(("libpython", "python")):
        return PYTHON
    if library.startswith("loop.cpython"):
        return UVLOOP
    if library.startswith("libc."):
        return FORMATTING if any(m in leaf for m in _FORMATTING_MARKS) else LIBC_OTHER
    return OTHER


def parse_perf_script(text: str, *, tid: int | None = None) -> list[list[tuple[str, str]]]:
    """Samples from ``perf script -F comm,tid,ip,sym,dso`` output (only thread ``tid``, if
    given): each a list of (symbol, dso), leaf first."""
    samples: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        if not line.strip():
            current = None
            continue
        if not line[0].isspace():  # a sample's header: "comm tid"
            fields = line.split()
            wanted = tid is None or (len(fields) >= 2 and fields[-1] == str(tid))
            current = [] if wanted else None
            if current is not None:
                samples.append(current)
            continue
        if current is None:
            continue
        # "\t<address> <symbol> (<dso>)"
        body = line.strip()
        _, _, rest = body.partition(" ")
        symbol, _, dso = rest.rpartition(" (")
        current.append((symbol.strip(), dso.rstrip(")")))
    return samples


def profile_shares(samples: Iterable[Sequence[tuple[str, str]]]) -> dict[str, float]:
    """Each category's share of the samples (0..1), every category present."""
    counts = dict.fromkeys(PROFILE_CATEGORIES, 0)
    total = 0
    for frames in samples:
        counts[categorize_sample(frames)] += 1
        total += 1
    return {name: count / total if total else 0.0 for name, count in counts.items()}


# --- audio -------------------------------------------------------------------------------------


def tone_track(frequency_hz: int) -> bytes:
    """``TONE_FRAMES`` frames of a sine tone at -10 dBFS, µ-law encoded."""
    t = np.arange(TONE_FRAMES * FRAME_SAMPLES) / SAMPLE_RATE
    samples = (0.316 * 32767 * np.sin(2 * np.pi * frequency_hz * t)).astype(np.int16)
    return ulaw_encode(samples)


def payload_file() -> Path:
    """The generator's payload: track 0 the caller's tone, track 1 the callee's."""
    data = tone_track(CALLER_TONE_HZ) + tone_track(CALLEE_TONE_HZ)
    path = OUT / f"tones-{hashlib.sha256(data).hexdigest()[:12]}.ulaw"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


# --- recording (server side) -------------------------------------------------------------------


class Recorder(Protocol):
    """What the bench needs of a call recording: the relay's per-packet hook."""

    def on_packet(self, direction: PacketDirection, data: bytes) -> None: ...


Stereo = np.ndarray[Any, np.dtype[np.int16]]


@dataclass(frozen=True, slots=True)
class Recording:
    """How the servers record: a recorder per call, then render and write it after the run."""

    name: str
    new: Callable[[Callable[[], float]], Recorder]  # takes the clock (the loop's time)
    render: Callable[[Recorder], Stereo]  # batch work: parse, decode, place (CPU)
    write: Callable[[Stereo, Path], int]  # the WAV file; returns its size in bytes


def recording() -> Recording:
    """How the engine records: ``media.recording.CallRecording`` on the loop's clock (as
    ``engine.b2bua`` makes it), rendered, then written by ``media.recording_io.write_wav``
    (temporary file, fsync, rename)."""
    return Recording(
        name="media.recording.CallRecording (loop clock) + media.recording_io.write_wav",
        new=lambda clock: CallRecording(clock=clock),
        render=lambda r: cast(CallRecording, r).render(),
        write=lambda samples, path: write_recording(samples, path).size_bytes,
    )


# --- servers (child processes) -----------------------------------------------------------------


class Echo(asyncio.DatagramProtocol):
    """The reference: every datagram straight back to its sender."""

    transport: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


class ConnectedEcho(Echo):
    """What-if: the socket is connect()ed to its one far party, so a send names no address
    (uvloop converts none, the kernel reuses the socket's cached route) and the kernel itself
    drops datagrams from any other source -- what a latched relay side could do."""

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data)


def cpu_mark() -> dict[str, float]:
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return {
        "cpu_s": time.process_time(),
        "wall_s": time.monotonic(),
        "rss_bytes": resident_pages * os.sysconf("SC_PAGE_SIZE"),
    }


async def serve(kind: str, args: Any) -> None:
    """Child process: set up, then answer ``mark``/``stats``/``render``/``quit`` on stdin."""
    loop = asyncio.get_running_loop()

    async def read_line() -> str:
        line: str = await loop.run_in_executor(None, sys.stdin.readline)
        return line.strip()

    request = json.loads(await read_line())
    relay: MediaRelay | None = None
    recorders: list[Recorder] = []
    if kind == "echo":
        # One echo socket per relay socket: the same socket count, epoll fan-out and per-socket
        # wake-ups as the relay, so relay/echo isolates the relay's own work.
        ports = []
        for peer in request["peers"]:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SERVER_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SERVER_BUFFER_BYTES)
            sock.bind((HOST, 0))
            if args.connected:
                sock.connect((HOST, peer))
            protocol = ConnectedEcho if args.connected else Echo
            await loop.create_datagram_endpoint(protocol, sock=sock)
            ports.append(sock.getsockname()[1])
        reply: dict[str, Any] = {"ports": ports}
    else:
        relay = MediaRelay(HOST, PortAllocator(args.port_min, args.port_max), loop=loop)
        rec = recording()
        pairs = []
        for a_port, b_port in request["endpoints"]:
            session = await relay.open_session()
            session.expect("a", (HOST, a_port))
            session.expect("b", (HOST, b_port))
            if args.record:
                recorder = rec.new(loop.time)
                session.on_packet = recorder.on_packet
                recorders.append(recorder)
            pairs.append([session.port_a, session.port_b])
        reply = {"ports": pairs}
    print(json.dumps(reply), flush=True)
    while True:
        line = await read_line()
        if line == "mark":
            print(json.dumps(cpu_mark()), flush=True)
        elif line == "stats":
            stats = {"relayed": 0, "dropped": 0, "unrouted": 0}
            for s in relay.sessions if relay else ():
                stats["relayed"] += s.packets_a_to_b + s.packets_b_to_a
                stats["dropped"] += s.dropped
                stats["unrouted"] += s.unrouted
            print(json.dumps(stats), flush=True)
        elif line == "render":
            print(json.dumps(render_all(recorders, recording())), flush=True)
        else:
            if relay is not None:
                await relay.close_all()
            return


def render_all(recorders: Sequence[Recorder], rec: Recording) -> dict[str, Any]:
    """Render every recording, then write it into a scratch directory (removed afterwards).

    Timed apart: rendering is CPU (parse, decode, place), writing is mostly the disk (fsync).
    """
    OUT.mkdir(parents=True, exist_ok=True)
    render_s = render_cpu_s = write_s = 0.0
    written = audio_frames = 0
    with tempfile.TemporaryDirectory(dir=OUT, prefix="recordings-") as scratch:
        for i, recorder in enumerate(recorders):
            wall, cpu = time.monotonic(), time.process_time()
            samples = rec.render(recorder)
            rendered = time.monotonic()
            render_s += rendered - wall
            render_cpu_s += time.process_time() - cpu
            written += rec.write(samples, Path(scratch) / f"call-{i}.wav")
            write_s += time.monotonic() - rendered
            audio_frames += samples.shape[0]
    return {
        "files": len(recorders),
        "bytes": written,
        "audio_s": audio_frames / SAMPLE_RATE,
        "render_s": render_s,
        "render_cpu_s": render_cpu_s,
        "write_s": write_s,
    }


# --- driver ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variant:
    """What serves the far parties: an echo, or relay worker processes, recording or not."""

    name: str
    kind: str  # "echo" or "relay"
    record: bool = False
    workers: int = 1
    connected: bool = False  # echo: each socket connect()ed to its far party


VARIANTS: Final = {
    v.name: v
    for v in (
        Variant("echo", "echo"),
        Variant("relay", "relay"),
        Variant("relay+rec", "relay", record=True),
        Variant("relay-x2", "relay", workers=2),
        Variant("relay+rec-x2", "relay", record=True, workers=2),
        Variant("echo-connected", "echo", connected=True),
    )
}
WHAT_IF: Final = ("relay-x2", "echo-connected")


@dataclass(slots=True)
class RunResult:
    """One measured run of one variant."""

    variant: str
    mode: str
    calls: int
    seconds: float
    delivery: Delivery
    clean: bool
    misrouted: int
    send_failed: int
    received_window: int
    server_cpu: list[float]  # per worker: CPU seconds / wall seconds
    server_cpu_s: float
    server_rss_growth_bytes: int  # all workers: resident memory after the run minus before
    generator_cpu: float
    foreign_cpu: float  # others' CPU time / wall time (cores): processes, or machine minus ours
    softirq_cpu: float  # ksoftirqd's CPU time / wall time (cores)
    machine_cpu: float  # all CPUs' busy time / wall time (cores), everyone's
    cpu_pressure: float  # share of the run during which some task waited for a CPU (PSI)
    rcvbuf_errors: int  # the kernel's UDP receive-buffer drops during the run (system-wide)
    relay_stats: dict[str, int] = field(default_factory=dict)
    render: dict[str, Any] | None = None
    profile: dict[str, float] | None = None  # cost category → share of the servers' CPU

    @property
    def pps(self) -> float:
        """Packets delivered per second during the sending window."""
        return self.received_window / self.seconds

    @property
    def us_per_packet(self) -> float:
        """Server CPU time per packet delivered (all workers)."""
        delivered = self.delivery.on_time + self.delivery.late
        return 1e6 * self.server_cpu_s / delivered if delivered else math.nan


def build_generator() -> Path:
    """Compile rtpgen once per source version into bench/out/."""
    source = GENERATOR_SOURCE.read_bytes()
    binary = OUT / f"rtpgen-{hashlib.sha256(source).hexdigest()[:12]}"
    if not binary.exists():
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            sys.exit("bench/media.py needs a C compiler (cc) for its load generator")
        OUT.mkdir(parents=True, exist_ok=True)
        subprocess.run([cc, "-O2", "-o", str(binary), str(GENERATOR_SOURCE)], check=True)
    return binary


def raise_fd_limit() -> None:
    """2,000 calls need 4,000 relay sockets in the servers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def far_party_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, GENERATOR_BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, GENERATOR_BUFFER_BYTES)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


def cpu_by_process(exclude: Iterable[int]) -> dict[int, tuple[str, float]]:
    """CPU seconds of every process but ``exclude``, by pid, with its name: a snapshot to tell
    how much of the machine other people's work took during a run.

    Not the reaped children's times (a child's whole life lands in its parent's at once): a
    process that ends between two snapshots goes uncounted, so this errs low.
    """
    skip = set(exclude)
    tick = os.sysconf("SC_CLK_TCK")
    seen: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
        except OSError:
            continue  # gone meanwhile
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        # utime and stime: fields 14 and 15 of proc(5), 11 and 12 after the name and state
        seen[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return seen


def foreign_cpu_s(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> tuple[float, float]:
    """CPU seconds other processes used between two snapshots: (user processes, ksoftirqd).

    ksoftirqd is apart: the kernel hands it packet processing (ours too) under load.
    """
    others = softirq = 0.0
    for pid, (name, cpu_s) in after.items():
        used = cpu_s - before.get(pid, (name, 0.0))[1]
        if name.startswith("ksoftirqd"):
            softirq += used
        else:
            others += used
    return others, softirq


def machine_busy_s() -> float:
    """CPU seconds all CPUs spent busy since boot, everyone's (/proc/stat, tick-sampled)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_pressure_s() -> float:
    """Seconds during which some runnable task waited for a CPU, since boot (PSI; 0 without).

    With the relay and the generator alone on two cores, neither waits; when other people's
    processes want CPU too, someone does."""
    try:
        with open("/proc/pressure/cpu") as pressure:
            some = pressure.readline().split()
    except OSError:
        return 0.0
    return int(some[-1].removeprefix("total=")) / 1e6


def udp_rcvbuf_errors() -> int:
    with open("/proc/net/snmp") as snmp:
        lines = [line.split() for line in snmp if line.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("RcvbufErrors")])


class Server:
    """A ``--serve`` child process and its line protocol."""

    def __init__(
        self,
        variant: Variant,
        request: dict[str, Any],
        ports: tuple[int, int],
        cpu: int | None = None,
    ) -> None:
        cmd = [
            sys.executable,
            __file__,
            "--serve",
            variant.kind,
            "--port-min",
            str(ports[0]),
            "--port-max",
            str(ports[1]),
        ]
        if variant.record:
            cmd.append("--record")
        if variant.connected:
            cmd.append("--connected")
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.reply = self.ask(json.dumps(request))

    def ask(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"server child exited with {self.proc.wait()}")
        result: dict[str, Any] = json.loads(answer)
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def flows_for(
    variant: Variant, calls: int, socks: Sequence[socket.socket], args: Any
) -> tuple[list[Server], list[str]]:
    """Start the variant's servers for ``calls`` calls; the generator's flow lines.

    Call i's caller side uses far-party socket 2i mod G, its callee side 2i + 1 mod G (G even),
    so the two sides of a call never share a socket. Flow 2i is caller → callee (the caller's
    tone), flow 2i + 1 callee → caller; each answers the other in flood mode.
    """
    ports = [s.getsockname()[1] for s in socks]
    fds = [s.fileno() for s in socks]
    g = len(socks)
    servers: list[Server] = []
    lines: list[str] = [""] * (2 * calls)
    if variant.kind == "echo":
        # 2 sockets per call as the relay has; each stream is echoed back to its sender.
        peers = [ports[j % g] for j in range(2 * calls)]
        server = Server(variant, {"peers": peers}, (0, 0), server_cpu(0, args))
        servers.append(server)
        for j, echo_port in enumerate(server.reply["ports"]):
            lines[j] = f"{fds[j % g]} {echo_port} {fds[j % g]} {echo_port} {j} {j % 2}"
        return servers, lines
    span = (args.port_max - args.port_min + 1) // variant.workers
    for w in range(variant.workers):
        mine = range(w, calls, variant.workers)
        endpoints = [[ports[(2 * i) % g], ports[(2 * i + 1) % g]] for i in mine]
        low = args.port_min + w * span
        server = Server(
            variant, {"endpoints": endpoints}, (low, low + span - 1), server_cpu(w, args)
        )
        servers.append(server)
        for i, (port_a, port_b) in zip(mine, server.reply["ports"], strict=True):
            a, b = fds[(2 * i) % g], fds[(2 * i + 1) % g]
            lines[2 * i] = f"{a} {port_a} {b} {port_b} {2 * i + 1} 0"
            lines[2 * i + 1] = f"{b} {port_b} {a} {port_a} {2 * i} 1"
    return servers, lines


def server_cpu(worker: int, args: Any) -> int | None:
    """With ``--pin``: worker w on CPU w + 1 (wrapping around); the generator is on CPU 0."""
    return (worker + 1) % (os.cpu_count() or 1) if args.pin else None


def wait_for_quiet(args: Any) -> None:
    """Wait (up to ``--quiet-wait`` seconds) until other processes use less than
    ``--max-foreign`` cores over one second: this script's own processes are idle here, so
    the machine's busy time is other people's."""
    deadline = time.monotonic() + args.quiet_wait
    waited = False
    while True:
        busy = machine_busy_s()
        time.sleep(1.0)
        foreign = machine_busy_s() - busy
        if foreign <= args.max_foreign or time.monotonic() >= deadline:
            break
        if not waited:
            print(f"  (other processes use {100 * foreign:.0f} % of a core: waiting)", flush=True)
            waited = True


def disturbed(r: RunResult, args: Any) -> bool:
    """Whether other people's work took CPU the relay or the generator needed during ``r``.

    CPU waiting (PSI) counts only where this bench's own busy processes fit the CPUs: with
    more workers plus the generator than cores, they wait for each other anyway.
    """
    if r.foreign_cpu > args.max_foreign:
        return True
    own_busy = VARIANTS[r.variant].workers + 1
    return own_busy <= (os.cpu_count() or 1) and r.cpu_pressure > args.max_cpu_wait


def run(variant: Variant, mode: str, calls: int, args: Any, *, profile: bool = False) -> RunResult:
    """One measured run of ``variant`` with ``calls`` calls (paced) or streams (flood).

    ``profile``: sample the servers' main threads with ``perf record`` during the middle of the
    run and attach each cost category's share of their CPU time.
    """
    wait_for_quiet(args)
    socks = [far_party_socket() for _ in range(args.generator_sockets)]
    servers: list[Server] = []
    try:
        servers, lines = flows_for(variant, calls, socks, args)
        param = INTERVAL_US if mode == "paced" else args.window
        before = [s.ask("mark") for s in servers]
        ours = [os.getpid(), *(s.proc.pid for s in servers)]
        procs_before, drops_before = cpu_by_process(ours), udp_rcvbuf_errors()
        busy_before, pressure_before = machine_busy_s(), cpu_pressure_s()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        gen = subprocess.Popen(
            [
                str(args.generator),
                mode,
                str(args.seconds),
                str(param),
                str(args.payload),
                str(TONE_FRAMES),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            pass_fds=[s.fileno() for s in socks],
        )
        if args.pin:  # before it reads its flows, so before it sends anything
            os.sched_setaffinity(gen.pid, {0})
        assert gen.stdin is not None
        gen.stdin.write("\n".join(lines) + "\n")
        gen.stdin.close()
        shares = record_profile([s.proc.pid for s in servers], args) if profile else None
        assert gen.stdout is not None
        gen_stdout = gen.stdout.read()
        if gen.wait():
            raise RuntimeError(f"rtpgen exited with {gen.returncode}")
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy_after, pressure_after = machine_busy_s(), cpu_pressure_s()
        procs_after, drops_after = cpu_by_process(ours), udp_rcvbuf_errors()
        after = [s.ask("mark") for s in servers]
        stats: dict[str, int] = {}
        for s in servers:
            for key, value in s.ask("stats").items():
                stats[key] = stats.get(key, 0) + value
        render = None
        if variant.record:
            parts = [s.ask("render") for s in servers]
            render = {key: sum(p[key] for p in parts) for key in parts[0]}
    finally:
        for s in servers:
            s.close()
        for sock in socks:
            sock.close()
    out = json.loads(gen_stdout)
    wall_s = after[0]["wall_s"] - before[0]["wall_s"]
    cpu_s = [a["cpu_s"] - b["cpu_s"] for a, b in zip(after, before, strict=True)]
    generator_cpu_s = (
        children_after.ru_utime
        + children_after.ru_stime
        - children_before.ru_utime
        - children_before.ru_stime
    )
    others_s, softirq_s = foreign_cpu_s(procs_before, procs_after)
    # Processes that start and end within the run (a test suite's servers) escape the
    # per-process count; the machine's busy time minus ours catches them, with tick noise.
    unaccounted_s = (busy_after - busy_before) - sum(cpu_s) - generator_cpu_s - softirq_s
    foreign_s = max(others_s, unaccounted_s)
    delivery = account(
        sent=out["sent"], histogram=out["hist"], bucket_us=out["bucket_us"], stale=out["stale"]
    )
    return RunResult(
        variant=variant.name,
        mode=mode,
        calls=calls,
        seconds=args.seconds,
        delivery=delivery,
        clean=is_clean(delivery, misrouted=out["misrouted"]),
        misrouted=out["misrouted"],
        send_failed=out["send_failed"],
        received_window=out["received_window"],
        server_cpu=[c / wall_s for c in cpu_s],
        server_cpu_s=sum(cpu_s),
        server_rss_growth_bytes=sum(
            int(a["rss_bytes"] - b["rss_bytes"]) for a, b in zip(after, before, strict=True)
        ),
        generator_cpu=generator_cpu_s / wall_s,
        foreign_cpu=foreign_s / wall_s,
        softirq_cpu=softirq_s / wall_s,
        machine_cpu=(busy_after - busy_before) / wall_s,
        cpu_pressure=(pressure_after - pressure_before) / wall_s,
        rcvbuf_errors=drops_after - drops_before,
        relay_stats=stats,
        render=render,
        profile=shares,
    )


def record_profile(pids: Sequence[int], args: Any) -> dict[str, float]:
    """``perf record`` the servers from 1 s into the run until 0.5 s before its end."""
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / "perf.data"
    time.sleep(1.0)
    subprocess.run(
        [
            "perf",
            "record",
            "--quiet",
            "-F",
            "2000",
            "-g",
            "-o",
            str(data),
            "-p",
            ",".join(map(str, pids)),
            "--",
            "sleep",
            str(max(args.seconds - 1.5, 0.5)),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    script = subprocess.run(
        ["perf", "script", "-F", "comm,tid,ip,sym,dso", "-i", str(data)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # Each server's main thread (tid = pid): not the idle thread reading the control pipe.
    samples = [frames for pid in pids for frames in parse_perf_script(script, tid=pid)]
    return profile_shares(samples)


def describe(r: RunResult) -> str:
    d = r.delivery
    cpu = "+".join(f"{100 * c:.0f}" for c in r.server_cpu)
    line = (
        f"  {r.variant:14} {r.calls:>5} calls  loss {d.loss_pct:7.3f} % "
        f"(late {d.late:,}, missing {d.missing:,})  latency p50 {d.p50_us / 1000:.2f} "
        f"p99 {d.p99_us / 1000:.1f} max {d.max_us / 1000:.0f} ms  server {cpu} % CPU "
        f"{r.us_per_packet:.1f} µs/pkt  gen {100 * r.generator_cpu:.0f} %  "
        f"others {100 * r.foreign_cpu:.0f} %  CPU wait {100 * r.cpu_pressure:.0f} %  "
        f"{'clean' if r.clean else 'NOT clean'}"
    )
    if r.misrouted or r.send_failed or r.rcvbuf_errors:
        line += (
            f"  [misrouted {r.misrouted}, send failed {r.send_failed}, "
            f"kernel rcvbuf drops {r.rcvbuf_errors}]"
        )
    return line


def search(names: Sequence[str], args: Any, results: list[RunResult]) -> dict[str, KneeSearch]:
    """Step every variant's call count up together (interleaved), then bisect each."""
    limit = min(args.max_calls, (args.port_max - args.port_min + 1) // 4)
    searches = {
        n: KneeSearch(start=args.start, step=args.step, resolution=args.resolution, limit=limit)
        for n in names
    }
    while True:
        pending = [
            (n, k) for n, k in ((n, s.next_calls()) for n, s in searches.items()) if k is not None
        ]
        if not pending:
            return searches
        for name, calls in pending:
            clean = False
            attempts = retries = 0
            while attempts < args.attempts:
                r = run(VARIANTS[name], "paced", calls, args)
                results.append(r)
                print(describe(r), flush=True)
                if r.clean:
                    clean = True
                    break
                if disturbed(r, args) and retries < args.disturbed_retries:
                    # Other people's work took CPU the relay or the generator needed: this
                    # failure says nothing about the relay. Run it again.
                    retries += 1
                    print("  (disturbed by other processes: run again, not counted)", flush=True)
                    continue
                attempts += 1
            searches[name].record(calls, clean)


def best_clean(results: Iterable[RunResult], name: str, calls: int) -> RunResult | None:
    runs = [
        r
        for r in results
        if r.variant == name and r.calls == calls and r.mode == "paced" and r.clean
    ]
    return min(runs, key=lambda r: r.delivery.loss_pct) if runs else None


def saturation(names: Sequence[str], args: Any, results: list[RunResult]) -> dict[str, RunResult]:
    """Two interleaved rounds of flood runs; a disturbed run is run again (up to
    ``--disturbed-retries``); the best round of each variant is kept."""
    best: dict[str, RunResult] = {}
    for _ in range(2):
        for name in names:
            for _ in range(args.disturbed_retries + 1):
                r = run(VARIANTS[name], "flood", args.flood_calls, args)
                results.append(r)
                print(
                    f"  {name:14} {r.pps:>10,.0f} packets/s  server "
                    f"{'+'.join(f'{100 * c:.0f}' for c in r.server_cpu)} % CPU  "
                    f"{r.us_per_packet:.2f} µs/pkt  gen {100 * r.generator_cpu:.0f} %  "
                    f"others {100 * r.foreign_cpu:.0f} %",
                    flush=True,
                )
                if not disturbed(r, args):
                    break
                print("  (disturbed by other processes: run again)", flush=True)
            if name not in best or r.pps > best[name].pps:
                best[name] = r
    return best


def summary(
    names: Sequence[str],
    searches: dict[str, KneeSearch],
    flood: dict[str, RunResult],
    results: list[RunResult],
) -> None:
    print("\nsummary (highest clean call count: < 0.1 % lost, later than 100 ms = lost)")
    print(
        f"  {'variant':14} {'calls':>6} {'pkt/s':>8} {'server CPU':>10} {'µs/pkt':>7} "
        f"{'p99 ms':>7} {'calls/core':>10} {'flood pkt/s':>12} {'µs/pkt':>7}"
    )
    knees: dict[str, int] = {}
    for name in names:
        k = searches[name]
        knees[name] = k.clean_max
        r = best_clean(results, name, k.clean_max)
        f = flood.get(name)
        flood_cols = f"{f.pps:>12,.0f} {f.us_per_packet:>7.2f}" if f else ""
        if r is None:
            print(f"  {name:14} {'0':>6}  (no clean run)  {flood_cols}")
            continue
        cores = sum(r.server_cpu)
        print(
            f"  {name:14} {k.clean_max:>5}{'+' if k.capped else ' '} "
            f"{PACKETS_PER_CALL_S * k.clean_max:>8,} {100 * cores:>9.0f}% "
            f"{r.us_per_packet:>7.2f} {r.delivery.p99_us / 1000:>7.1f} "
            f"{k.clean_max / cores if cores else math.nan:>10,.0f} {flood_cols}"
        )
        if r.render:
            rd = r.render
            files = max(rd["files"], 1)
            print(
                f"  {'':14} after the run, {rd['files']} recordings ({rd['audio_s'] / files:.1f} s "
                f"of audio each, {rd['bytes'] / 1e6:,.0f} MB): render "
                f"{1000 * rd['render_cpu_s'] / files:.1f} ms CPU per call "
                f"({1000 * rd['render_cpu_s'] / rd['audio_s']:.2f} ms per audio second), "
                f"write {1000 * rd['write_s'] / files:.1f} ms per call"
            )
            held = r.server_rss_growth_bytes
            print(
                f"  {'':14} held in memory while recording: the servers grew by "
                f"{held / 1e6:,.0f} MB during the run, {held / (r.calls * r.seconds) / 1e3:.1f} kB "
                "per call-second"
            )
    print("\nratios (same run)")
    pairs = [
        ("relay", "echo"),
        ("relay+rec", "echo"),
        ("relay+rec", "relay"),
        ("relay-x2", "relay"),
        ("relay+rec-x2", "relay+rec"),
        ("echo-connected", "echo"),
    ]
    for top, bottom in pairs:
        if top in knees and bottom in knees and knees[bottom]:
            line = f"  {top} / {bottom}: calls {knees[top] / knees[bottom]:.2f}"
            if top in flood and bottom in flood:
                line += f", flood packets/s {flood[top].pps / flood[bottom].pps:.2f}"
            print(line)


def hot_path_ns(args: Any) -> dict[str, float]:
    """Nanoseconds per ``datagram_received`` call of the echo, the relay and the relay with a
    recording hook, called directly in a loop with a transport whose ``sendto`` is a C no-op
    (``slice``): the Python work per packet alone, without the kernel and uvloop.
    Best of 5 rounds; the loop's own overhead (~20-30 ns) is included in each figure."""
    from types import SimpleNamespace  # noqa: PLC0415

    packet = bytes([0x80, 0]) + bytes(HEADER_BYTES - 2) + tone_track(CALLER_TONE_HZ)[:160]
    source = (HOST, 40000)
    null_transport = SimpleNamespace(sendto=slice)
    rounds, calls = 5, 200_000

    def best(callback: Callable[[bytes, Any], None], fresh: Callable[[], None]) -> float:
        times = []
        for _ in range(rounds):
            fresh()
            start = time.perf_counter_ns()
            for _ in range(calls):
                callback(packet, source)
            times.append((time.perf_counter_ns() - start) / calls)
        return min(times)

    async def measure() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        echo = Echo()
        echo.transport = null_transport
        relay = MediaRelay(HOST, PortAllocator(args.port_min, args.port_max), loop=loop)
        session = await relay.open_session()
        session.expect("a", source)
        session.expect("b", (HOST, 40002))
        # The bench reaches into the session for its side-a protocol object (what uvloop calls)
        # and gives side b a transport that sends nothing.
        leg_a, leg_b = session._a, session._b
        real_transport = leg_b.transport
        leg_b.transport = cast(asyncio.DatagramTransport, null_transport)
        rec = recording()
        try:
            figures = {"echo": best(echo.datagram_received, lambda: None)}
            figures["relay"] = best(leg_a.datagram_received, lambda: None)

            def new_recording() -> None:
                session.on_packet = rec.new(loop.time).on_packet

            figures["relay+rec"] = best(leg_a.datagram_received, new_recording)
        finally:
            session.on_packet = None
            leg_b.transport = real_transport
            await relay.close_all()
        return figures

    return uvloop.run(measure())


def print_profile(r: RunResult) -> None:
    assert r.profile is not None
    print(
        f"\nprofile: {r.variant} at {r.calls} calls, {'clean' if r.clean else 'NOT clean'} "
        f"(loss {r.delivery.loss_pct:.3f} %, others {100 * r.foreign_cpu:.0f} %, CPU wait "
        f"{100 * r.cpu_pressure:.0f} %), server CPU {100 * sum(r.server_cpu):.0f} %, "
        f"{r.us_per_packet:.2f} µs per packet (perf, the relay's main thread)"
    )
    for name, share in sorted(r.profile.items(), key=lambda kv: -kv[1]):
        if share >= 0.001:
            print(f"  {100 * share:5.1f} %  {share * r.us_per_packet:5.2f} µs/pkt  {name}")


def profile(name: str, calls: int, args: Any, results: list[RunResult]) -> None:
    """One perf-profiled run; run again (up to ``--disturbed-retries``) while disturbed."""
    for _ in range(args.disturbed_retries + 1):
        r = run(VARIANTS[name], "paced", calls, args, profile=True)
        results.append(r)
        if not disturbed(r, args):
            break
        print(f"  ({name} profile disturbed by other processes: run again)", flush=True)
    print_profile(r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument(
        "--only",
        default="echo,relay,relay+rec," + ",".join(WHAT_IF),
        help=f"variants, comma-separated, from: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--start", type=int, default=400, help="first call count")
    parser.add_argument("--step", type=int, default=200, help="call count step")
    parser.add_argument("--resolution", type=int, default=50, help="bisect down to this")
    parser.add_argument("--max-calls", type=int, default=4000)
    parser.add_argument(
        "--attempts", type=int, default=2, help="runs per call count before calling it not clean"
    )
    parser.add_argument(
        "--max-foreign",
        type=float,
        default=0.2,
        help="a failed run during which other processes used more than this many cores is "
        "run again (not counted); before each run, wait until they use less",
    )
    parser.add_argument(
        "--max-cpu-wait",
        type=float,
        default=0.15,
        help="a failed run during which some task waited for a CPU more than this share of "
        "the time (PSI) is run again (not counted)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=300,
        help="before each run, wait up to this many seconds for other processes to go quiet",
    )
    parser.add_argument(
        "--disturbed-retries",
        type=int,
        default=5,
        help="how often a disturbed failure is run again before it counts",
    )
    parser.add_argument(
        "--flood-calls",
        type=int,
        default=50,
        help="calls (echo: socket pairs) in the saturation runs; 0 to skip",
    )
    parser.add_argument(
        "--window", type=int, default=16, help="packets in flight per stream in the saturation runs"
    )
    parser.add_argument(
        "--generator-sockets",
        type=int,
        default=8,
        help="far-party sockets (even); every call's sides are spread over them",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 s runs, steps of 300, resolution 100, one attempt, no what-if",
    )
    parser.add_argument("--port-min", type=int, default=10000)
    parser.add_argument("--port-max", type=int, default=29999)
    parser.add_argument(
        "--profile-calls",
        type=int,
        help="profile the relay (perf) at this many calls; default: the relay's "
        "highest clean count; 0 to skip",
    )
    parser.add_argument(
        "--no-micro",
        dest="micro",
        action="store_false",
        help="skip the Python-only per-packet figures",
    )
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--serve", choices=["relay", "echo"], help=argparse.SUPPRESS)
    parser.add_argument("--record", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connected", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the generator to CPU 0 and relay worker w to CPU w + 1",
    )
    args = parser.parse_args()
    raise_fd_limit()
    if args.serve:
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        uvloop.run(serve(args.serve, args))
        return
    if args.quick:
        args.seconds, args.step, args.resolution, args.attempts = 3.0, 300, 100, 1
        if "--only" not in sys.argv:
            args.only = "echo,relay,relay+rec"
    if args.generator_sockets < 2 or args.generator_sockets % 2:
        parser.error("--generator-sockets must be even and at least 2")
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    args.generator = build_generator()
    args.payload = payload_file()
    print(
        f"media benchmark: {PACKET_BYTES}-byte G.711 packets, 50/s each way per call, "
        f"{args.seconds:g} s per run, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"uvloop {version('uvloop')}, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"recorder: {recording().name}")
    results: list[RunResult] = []
    print("\nstepping up the call count (paced; each line one run)")
    searches = search(names, args, results)
    flood: dict[str, RunResult] = {}
    if args.flood_calls:
        print(
            f"\nsaturation: {args.flood_calls} calls, {args.window} packets in flight per "
            "stream, every packet answered at once; best of 2 interleaved rounds"
        )
        flood = saturation(names, args, results)
    summary(names, searches, flood, results)
    if args.micro:
        ns = hot_path_ns(args)
        print(
            "\nPython work per packet (datagram_received called directly, no kernel, no "
            "uvloop; best of 5 x 200,000):"
        )
        print(
            f"  echo {ns['echo']:.0f} ns, relay {ns['relay']:.0f} ns, relay + recording hook "
            f"{ns['relay+rec']:.0f} ns: the relay's logic adds {ns['relay'] - ns['echo']:.0f} ns "
            f"to the echo's, the recording hook {ns['relay+rec'] - ns['relay']:.0f} ns"
        )
    profile_calls = args.profile_calls
    if profile_calls is None and "relay" in searches:
        profile_calls = searches["relay"].clean_max
    if profile_calls and shutil.which("perf") is None:
        print("\nprofile skipped: perf is not installed")
    elif profile_calls:
        for name in [n for n in ("relay", "relay+rec") if n in names]:
            profile(name, profile_calls, args, results)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                [asdict(r) | {"pps": r.pps, "us_per_packet": r.us_per_packet} for r in results],
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
