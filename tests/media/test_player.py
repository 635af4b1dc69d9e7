"""RtpPlayer (media/player.py) sending through a real MediaRelay session over loopback UDP.

Arrival times are the kernel's receive timestamps (SO_TIMESTAMP), read by a thread of its own:
what is measured is when packets left the player, not when a busy event loop got round to
reading them. Every test runs on uvloop (production) and on the standard asyncio loop.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import statistics
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import uvloop
from aiortc.rtp import RtpPacket

from media.player import PlaybackEnd, RtpPlayer
from media.ports import PortAllocator
from media.relay import MediaRelay, MediaSession, PacketDirection
from media.rtp_out import RtpStreamWriter

pytestmark = pytest.mark.filterwarnings(
    'ignore:Overriding the "event_loop_policy" fixture:DeprecationWarning'
)

HOST = "127.0.0.1"
FRAME_S = 0.020
# Linux's SO_TIMESTAMP / SCM_TIMESTAMP (asm-generic; Python's socket module does not name it).
SO_TIMESTAMP = 29
_TIMEVAL = struct.Struct("@ll")


@pytest.fixture(params=["uvloop", "asyncio"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    if request.param == "uvloop":
        policy: asyncio.AbstractEventLoopPolicy = uvloop.EventLoopPolicy()
        return policy
    return asyncio.DefaultEventLoopPolicy()


class Receiver:
    """A far party on a plain socket; a thread records each datagram and its kernel arrival time."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.02)
        self.received: list[tuple[bytes, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return host, port

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, ancillary, _, _ = self.sock.recvmsg(2048, 64)
            except TimeoutError:
                continue
            arrived = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP:
                    seconds, micros = _TIMEVAL.unpack(value[: _TIMEVAL.size])
                    arrived = seconds + micros / 1e6
            with self._lock:
                self.received.append((data, arrived))

    def snapshot(self) -> list[tuple[bytes, float]]:
        with self._lock:
            return list(self.received)

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.count() < count:
                await asyncio.sleep(0.005)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    far = Receiver()
    yield far
    far.close()


@pytest.fixture
async def relay() -> AsyncIterator[MediaRelay]:
    allocator = PortAllocator(43000, 43999)
    relay = MediaRelay(HOST, allocator, loop=asyncio.get_running_loop())
    yield relay
    await relay.close_all()
    assert allocator.in_use == 0


@pytest.fixture
async def session(relay: MediaRelay, receiver: Receiver) -> MediaSession:
    session = await relay.open_session("call-1")
    session.expect("a", receiver.address)  # the caller, who hears ringback and prompts
    return session


def numbered_frames(count: int, start: int = 0) -> list[bytes]:
    """Frames whose payload says which they are (frame k is 160 bytes of k)."""
    return [bytes([(start + k) % 256]) * 160 for k in range(count)]


def writer(ssrc: int = 0x5EED) -> RtpStreamWriter:
    return RtpStreamWriter(payload_type=0, ssrc=ssrc, initial_sequence=1000, initial_timestamp=0)


def parsed(received: list[tuple[bytes, float]]) -> list[RtpPacket]:
    return [RtpPacket.parse(data) for data, _ in received]


def max_in_window(times: list[float], window_s: float) -> int:
    """The most arrivals within any ``window_s`` (a burst shows as many in a short window)."""
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_one_second_of_frames_arrives_paced_in_order(
    session: MediaSession, receiver: Receiver
) -> None:
    loop = asyncio.get_running_loop()
    player = RtpPlayer(session, "a", writer=writer())
    started = loop.time()
    end = await asyncio.wait_for(player.play(numbered_frames(50)), 5)
    elapsed = loop.time() - started
    await receiver.wait_for(50)
    await asyncio.sleep(0.05)  # nothing more may come

    received = receiver.snapshot()
    packets = parsed(received)
    assert end is PlaybackEnd.FINISHED
    assert player.packets_sent == 50 and len(packets) == 50
    assert [p.payload for p in packets] == numbered_frames(50)
    assert [p.sequence_number for p in packets] == list(range(1000, 1050))
    assert [p.timestamp for p in packets] == [160 * k for k in range(50)]
    assert [p.marker for p in packets] == [1] + [0] * 49
    # done resolves when the last frame has played: 50 frames are 1 s of audio.
    assert 0.99 <= elapsed < 1.5
    times = [at for _, at in received]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Never ahead of the clock (at most the two catch-up frames early), and 20 ms apart.
    assert times[-1] - times[0] >= 49 * FRAME_S - 2 * FRAME_S - 0.005
    assert 0.015 <= statistics.median(gaps) <= 0.025
    # No burst: one tick sends at most 1 + 2 catch-up frames, so a 20 ms window holds ≤ 4.
    assert max_in_window(times, FRAME_S) <= 4
    assert player.playing is False


async def test_a_stall_is_caught_up_by_two_frames_then_the_schedule_moves(
    session: MediaSession, receiver: Receiver
) -> None:
    player = RtpPlayer(session, "a", writer=writer())
    done = player.play(numbered_frames(40))
    await receiver.wait_for(5)
    time.sleep(0.3)  # the event loop stalls for 15 frames' time
    assert await asyncio.wait_for(done, 5) is PlaybackEnd.FINISHED
    await receiver.wait_for(40)

    received = receiver.snapshot()
    packets = parsed(received)
    # Nothing skipped, nothing repeated: a prompt is heard whole.
    assert [p.payload for p in packets] == numbered_frames(40)
    assert [p.sequence_number for p in packets] == list(range(1000, 1040))
    times = [at for _, at in received]
    # After the 300 ms stall at most 1 + 2 packets leave at once, never the 15 owed.
    assert max_in_window(times, 0.005) <= 3
    assert max_in_window(times, FRAME_S) <= 4
    assert times[-1] - times[0] >= 39 * FRAME_S
    assert player.catch_ups >= 1
    assert 10 <= player.frames_deferred <= 16


async def test_stop_is_immediate_and_idempotent(session: MediaSession, receiver: Receiver) -> None:
    player = RtpPlayer(session, "a", writer=writer())
    done = player.play(numbered_frames(10), loop=True)  # ringback: until stopped
    await receiver.wait_for(15)  # looped past the end of the frames
    player.stop()
    sent_at_stop = player.packets_sent
    assert done.done() and done.result() is PlaybackEnd.STOPPED
    player.stop()
    await asyncio.sleep(0.15)  # 7 frames' time
    assert player.packets_sent == sent_at_stop
    # Everything sent before stop() arrived, and nothing after it.
    assert receiver.count() == sent_at_stop
    assert [p.payload for p in parsed(receiver.snapshot())][:15] == (
        numbered_frames(10) + numbered_frames(5)
    )


async def test_play_sequence_joins_parts_without_a_gap(
    session: MediaSession, receiver: Receiver
) -> None:
    player = RtpPlayer(session, "a", writer=writer())
    prompt, silence = numbered_frames(8), numbered_frames(4, start=200)
    end = await asyncio.wait_for(player.play_sequence([prompt, silence]), 5)
    await receiver.wait_for(12)
    received = receiver.snapshot()
    packets = parsed(received)
    assert end is PlaybackEnd.FINISHED
    assert [p.payload for p in packets] == prompt + silence
    assert [p.timestamp for p in packets] == [160 * k for k in range(12)]
    assert [p.marker for p in packets] == [1] + [0] * 11
    times = [at for _, at in received]
    assert times[8] - times[7] < 3 * FRAME_S  # the join is a frame step, not a pause


async def test_a_new_play_replaces_the_running_one_seamlessly(
    session: MediaSession, receiver: Receiver
) -> None:
    player = RtpPlayer(session, "a", writer=writer())
    first = player.play(numbered_frames(100))
    await receiver.wait_for(5)
    second = player.play(numbered_frames(5, start=100))
    assert first.result() is PlaybackEnd.STOPPED
    assert await asyncio.wait_for(second, 5) is PlaybackEnd.FINISHED
    await asyncio.sleep(0.03)
    packets = parsed(receiver.snapshot())
    switch = next(k for k, p in enumerate(packets) if p.payload[0] == 100)
    assert [p.payload[0] for p in packets[switch:]] == [100, 101, 102, 103, 104]
    seqs = [p.sequence_number for p in packets]
    assert seqs == list(range(1000, 1000 + len(packets)))
    # Same talkspurt: the timestamp steps by one frame and no marker is set.
    assert packets[switch].timestamp - packets[switch - 1].timestamp == 160
    assert packets[switch].marker == 0


async def test_play_after_silence_moves_the_timestamp_over_it(
    session: MediaSession, receiver: Receiver
) -> None:
    loop = asyncio.get_running_loop()
    player = RtpPlayer(session, "a", writer=writer())
    await player.play(numbered_frames(3))
    finished_at = loop.time()
    await asyncio.sleep(0.2)
    resumed_at = loop.time()
    await player.play(numbered_frames(2, start=50))
    await receiver.wait_for(5)
    packets = parsed(receiver.snapshot())
    assert [p.sequence_number for p in packets] == list(range(1000, 1005))  # no loss seen
    gap_samples = packets[3].timestamp - packets[2].timestamp - 160
    assert gap_samples == pytest.approx((resumed_at - finished_at) * 8000, abs=160)
    assert gap_samples >= 0.19 * 8000
    assert packets[3].marker == 1  # a new talkspurt after the silence


async def test_empty_frames_finish_at_once_and_empty_loops_are_refused(
    session: MediaSession,
) -> None:
    player = RtpPlayer(session, "a", writer=writer())
    done = player.play([])
    assert done.done() and done.result() is PlaybackEnd.FINISHED
    with pytest.raises(ValueError):
        player.play([], loop=True)
    assert player.packets_sent == 0


async def test_without_an_address_frames_are_counted_unsent(relay: MediaRelay) -> None:
    session = await relay.open_session("no-sdp-yet")
    player = RtpPlayer(session, "a", writer=writer())
    assert await asyncio.wait_for(player.play(numbered_frames(3)), 5) is PlaybackEnd.FINISHED
    assert (player.packets_sent, player.packets_unsent) == (0, 3)


async def test_closing_the_session_ends_the_playback(session: MediaSession) -> None:
    player = RtpPlayer(session, "a", writer=writer())
    done = player.play(numbered_frames(10), loop=True)
    await asyncio.sleep(0.05)
    await session.close()
    assert await asyncio.wait_for(done, 1) is PlaybackEnd.SESSION_CLOSED
    again = player.play(numbered_frames(3))
    assert again.result() is PlaybackEnd.SESSION_CLOSED


async def test_callee_media_takes_over_at_its_first_packet(
    session: MediaSession, receiver: Receiver
) -> None:
    """The handover as the engine wires it: the relay hook stops ringback at the first b→a packet.

    The caller then hears the callee's own stream (its SSRC) and not one more ringback packet.
    """
    player = RtpPlayer(session, "a", writer=writer(ssrc=0x1111))
    ringback = player.play(numbered_frames(10), loop=True)

    def on_packet(direction: PacketDirection, _data: bytes) -> None:
        if direction == "b_to_a":
            player.stop()

    session.on_packet = on_packet
    await receiver.wait_for(5)
    callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    callee.bind((HOST, 0))
    try:
        session.expect("b", callee.getsockname())
        for seq in range(5):
            header = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x2222)
            callee.sendto(header + b"\x7f" * 160, (HOST, session.port_b))
            await asyncio.sleep(FRAME_S)
        assert await asyncio.wait_for(ringback, 1) is PlaybackEnd.STOPPED
        await receiver.wait_for(player.packets_sent + 5)
        await asyncio.sleep(0.05)
    finally:
        callee.close()
    ssrcs = [p.ssrc for p in parsed(receiver.snapshot())]
    first_callee = ssrcs.index(0x2222)
    assert set(ssrcs[:first_callee]) == {0x1111}
    assert ssrcs[first_callee:] == [0x2222] * 5


def test_construction_is_validated() -> None:
    class Sink:
        closed = False

        def send_to(self, side: str, data: bytes) -> bool:
            return True

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError):
            RtpPlayer(Sink(), "c", writer=writer(), loop=loop)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            RtpPlayer(Sink(), "a", writer=writer(), loop=loop, frame_s=0)
        with pytest.raises(ValueError):
            RtpPlayer(Sink(), "a", writer=writer(), loop=loop, max_catch_up_frames=-1)
    finally:
        loop.close()


# --- pacing on a fake clock: exact schedule, no sockets ---


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """The three loop methods the player uses, with time moved by the test.

    ``call_at`` records each deadline asked for; ``run_until`` fires callbacks ``late_s`` after
    their deadline, as a busy loop would.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.now = 100.0
        self.deadlines: list[float] = []
        self._loop = loop
        self._pending: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def create_future(self) -> asyncio.Future[PlaybackEnd]:
        return self._loop.create_future()

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeTimer:
        self.deadlines.append(when)
        timer = FakeTimer(when, callback)
        self._pending.append(timer)
        return timer

    def run_until(self, until: float, *, late_s: float = 0.0) -> None:
        while True:
            live = [t for t in self._pending if not t.cancelled]
            if not live:
                return
            timer = min(live, key=lambda t: t.when)
            if timer.when + late_s > until:
                return
            self._pending.remove(timer)
            self.now = timer.when + late_s
            timer.callback()


class RecordingSink:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.closed = False
        self.sent: list[tuple[float, bytes]] = []

    def send_to(self, side: str, data: bytes) -> bool:
        self.sent.append((self.clock.now, data))
        return True


async def test_late_timers_do_not_accumulate_drift() -> None:
    clock = FakeClock(asyncio.get_running_loop())
    sink = RecordingSink(clock)
    player = RtpPlayer(sink, "a", writer=writer(), loop=clock)  # type: ignore[arg-type]
    done = player.play(numbered_frames(100))
    clock.run_until(200.0, late_s=0.007)  # every callback 7 ms late
    assert done.result() is PlaybackEnd.FINISHED
    assert len(sink.sent) == 100
    # Deadlines stay on the 20 ms grid from the start: lateness never shifts the next one.
    assert clock.deadlines == pytest.approx([100.0 + 0.02 * k for k in range(1, 101)])
    assert player.catch_ups == 0


async def test_a_long_stall_sends_three_frames_then_resumes_the_grid() -> None:
    clock = FakeClock(asyncio.get_running_loop())
    sink = RecordingSink(clock)
    player = RtpPlayer(sink, "a", writer=writer(), loop=clock)  # type: ignore[arg-type]
    player.play(numbered_frames(50), loop=True)
    clock.run_until(100.1)  # frames 0..5 on time
    assert len(sink.sent) == 6
    clock.run_until(100.95, late_s=0.8)  # the next callback comes 800 ms late
    burst = [at for at, _ in sink.sent if at == pytest.approx(100.12 + 0.8)]
    assert len(burst) == 3  # 1 + max_catch_up_frames, not the 41 owed
    assert player.frames_deferred == 38
    clock.run_until(101.5)
    times = [at for at, _ in sink.sent]
    after = times[6 + 3 :]
    # The next frame follows the burst within one frame time, then every 20 ms again.
    assert 0 < after[0] - burst[-1] <= 0.02 + 1e-9
    steps = [b - a for a, b in itertools.pairwise(after)]
    assert len(steps) > 20
    assert steps == pytest.approx([0.02] * len(steps))
    payloads = [data[12] for _, data in sink.sent]
    assert payloads == [k % 50 for k in range(len(payloads))]  # no frame skipped
    player.stop()
