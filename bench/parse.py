"""Parse + serialize benchmark: maskline's SIP core beside sippy's, same messages, same run.

Each measured operation takes the wire bytes of a message, parses them, reads the fields a
transaction/dialog layer needs on every message (top Via branch, From tag, To tag, Call-ID,
CSeq number and method), and serializes the message back to bytes. Both libraries do the same
work: sippy receives ``str`` (its transports decode the datagram), so the decode and the final
encode are counted on its side.

Usage::

    .venv/bin/python bench/parse.py [--iterations N] [--repeats R]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run from a checkout without installing: make the repository root importable.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

_SDP_OFFER = (
    "v=0\r\n"
    "o=- 3912345678 3912345678 IN IP4 203.0.113.10\r\n"
    "s=-\r\n"
    "c=IN IP4 203.0.113.10\r\n"
    "t=0 0\r\n"
    "m=audio 30000 RTP/AVP 8 0 18 101\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:18 G729/8000\r\n"
    "a=fmtp:18 annexb=no\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)

_SDP_ANSWER = (
    "v=0\r\n"
    "o=maskline 1700000000 1700000001 IN IP4 198.51.100.20\r\n"
    "s=maskline\r\n"
    "c=IN IP4 198.51.100.20\r\n"
    "t=0 0\r\n"
    "m=audio 40002 RTP/AVP 8 101\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)


def _message(head: str, body: str) -> bytes:
    data = head.replace("\n", "\r\n") + f"Content-Length: {len(body)}\r\n\r\n" + body
    return data.encode()


INVITE = _message(
    "INVITE sip:+8613800138000@198.51.100.20:5060;user=phone SIP/2.0\n"
    "Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-524287-1---a3f9c1d2e4b5f6a7;rport\n"
    "Max-Forwards: 69\n"
    'From: "Carrier" <sip:+8613912345678@203.0.113.10;user=phone>;tag=as5f2b7c91\n'
    "To: <sip:+8613800138000@198.51.100.20;user=phone>\n"
    "Call-ID: 6f1c2a7e9b3d4c5e8f0a1b2c3d4e5f60@203.0.113.10\n"
    "CSeq: 102 INVITE\n"
    "Contact: <sip:+8613912345678@203.0.113.10:5060;transport=udp>\n"
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY\n"
    "Supported: 100rel, timer, replaces\n"
    "Session-Expires: 1800;refresher=uac\n"
    "Min-SE: 90\n"
    "P-Asserted-Identity: <sip:+8613912345678@203.0.113.10;user=phone>\n"
    "User-Agent: CarrierSBC/5.2\n"
    "Content-Type: application/sdp\n",
    _SDP_OFFER,
)

OK_200 = _message(
    "SIP/2.0 200 OK\n"
    "Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-524287-1---a3f9c1d2e4b5f6a7;"
    "rport=5060;received=203.0.113.10\n"
    'From: "Carrier" <sip:+8613912345678@203.0.113.10;user=phone>;tag=as5f2b7c91\n'
    "To: <sip:+8613800138000@198.51.100.20;user=phone>;tag=ml-7c3e91a04b\n"
    "Call-ID: 6f1c2a7e9b3d4c5e8f0a1b2c3d4e5f60@203.0.113.10\n"
    "CSeq: 102 INVITE\n"
    "Contact: <sip:+8613800138000@198.51.100.20:5060;transport=udp>\n"
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY\n"
    "Supported: 100rel, timer, replaces\n"
    "Require: timer\n"
    "Session-Expires: 1800;refresher=uac\n"
    "Server: maskline/0.1\n"
    "Content-Type: application/sdp\n",
    _SDP_ANSWER,
)

MESSAGES: dict[str, bytes] = {"INVITE+SDP": INVITE, "200 OK+SDP": OK_200}

# The fields every library must produce for each message (checked once before timing).
EXPECTED_FIELDS: dict[str, tuple[str, str, str | None, str, int, str]] = {
    "INVITE+SDP": (
        "z9hG4bK-524287-1---a3f9c1d2e4b5f6a7",
        "as5f2b7c91",
        None,
        "6f1c2a7e9b3d4c5e8f0a1b2c3d4e5f60@203.0.113.10",
        102,
        "INVITE",
    ),
    "200 OK+SDP": (
        "z9hG4bK-524287-1---a3f9c1d2e4b5f6a7",
        "as5f2b7c91",
        "ml-7c3e91a04b",
        "6f1c2a7e9b3d4c5e8f0a1b2c3d4e5f60@203.0.113.10",
        102,
        "INVITE",
    ),
}

Fields = tuple[str, str, str | None, str, int, str]
RoundTrip = Callable[[bytes], tuple[Fields, bytes]]


# --------------------------------------------------------------------------- sippy
def _sippy_round_trip(kind: str) -> RoundTrip:
    # Imported lazily so a missing library is reported, not a crash.
    module = "sippy.SipRequest" if kind == "INVITE+SDP" else "sippy.SipResponse"
    cls: Any = getattr(importlib.import_module(module), module.rsplit(".", 1)[1])

    def round_trip(data: bytes) -> tuple[Fields, bytes]:
        msg = cls(buf=data.decode())
        cseq_num, cseq_method = msg.getHFBody("cseq").getCSeq()
        fields: Fields = (
            msg.getHFBody("via").getBranch(),
            msg.getHFBody("from").getTag(),
            msg.getHFBody("to").getTag(),
            str(msg.getHFBody("call-id")),
            cseq_num,
            cseq_method,
        )
        return fields, str(msg).encode()

    return round_trip


# ------------------------------------------------------------------------ maskline
def _maskline_round_trip(kind: str) -> RoundTrip:
    parse_message = importlib.import_module("sip").parse_message
    del kind  # one parser for requests and responses

    def round_trip(data: bytes) -> tuple[Fields, bytes]:
        msg: Any = parse_message(data)
        fields: Fields = (
            msg.top_via.branch,
            msg.from_tag,
            msg.to_tag,
            msg.call_id,
            msg.cseq.seq,
            msg.cseq.method,
        )
        return fields, msg.to_bytes()

    return round_trip


# -------------------------------------------------------------------------- timing
@dataclass(frozen=True, slots=True)
class Result:
    library: str
    message: str
    best_us: float
    median_us: float


def _time_loop(fn: RoundTrip, data: bytes, iterations: int) -> float:
    """Nanoseconds per message over one loop of ``iterations`` calls, GC paused."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(iterations):
            fn(data)
        return (time.perf_counter_ns() - start) / iterations
    finally:
        if gc_was_enabled:
            gc.enable()


def _measure_all(
    cases: dict[tuple[str, str], tuple[RoundTrip, bytes]], iterations: int, repeats: int
) -> list[Result]:
    """Warm every case up, then interleave the repeats so load changes hit all cases alike."""
    for fn, data in cases.values():
        for _ in range(max(iterations // 5, 100)):
            fn(data)
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
    for _ in range(repeats):
        for key, (fn, data) in cases.items():
            samples[key].append(_time_loop(fn, data, iterations))
    return [
        Result(library, kind, min(ns) / 1000, statistics.median(ns) / 1000)
        for (library, kind), ns in samples.items()
    ]


def _check(library: str, kind: str, fn: RoundTrip, data: bytes) -> None:
    """Both sides must really parse the message and produce a re-parseable equivalent."""
    fields, out = fn(data)
    if fields != EXPECTED_FIELDS[kind]:
        raise SystemExit(f"{library} {kind}: read {fields!r}, expected {EXPECTED_FIELDS[kind]!r}")
    again, _ = fn(out)
    if again != fields:
        raise SystemExit(f"{library} {kind}: serialized output re-parses as {again!r}")
    body = data.split(b"\r\n\r\n", 1)[1]
    if not out.endswith(body):
        raise SystemExit(f"{library} {kind}: body not preserved by serialization")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=5000, help="messages per repeat")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (best and median)")
    args = parser.parse_args(argv)

    libraries: dict[str, Callable[[str], RoundTrip]] = {
        "maskline": _maskline_round_trip,
        "sippy": _sippy_round_trip,
    }
    cases: dict[tuple[str, str], tuple[RoundTrip, bytes]] = {}
    unavailable: dict[str, str] = {}
    for library, factory in libraries.items():
        for kind, data in MESSAGES.items():
            try:
                fn = factory(kind)
                _check(library, kind, fn, data)
            except (ImportError, AttributeError) as exc:
                unavailable[library] = f"{type(exc).__name__}: {exc}"
                break
            cases[(library, kind)] = (fn, data)
    results = _measure_all(cases, args.iterations, args.repeats)

    print(
        f"parse + read Via branch/From tag/To tag/Call-ID/CSeq + serialize; "
        f"{args.repeats} repeats x {args.iterations} iterations; Python {sys.version.split()[0]}"
    )
    print(f"{'library':<10} {'message':<12} {'best µs':>10} {'median µs':>10}")
    for r in results:
        print(f"{r.library:<10} {r.message:<12} {r.best_us:>10.2f} {r.median_us:>10.2f}")
    for library, reason in unavailable.items():
        print(f"{library:<10} unavailable: {reason}")

    by_key = {(r.library, r.message): r for r in results}
    if unavailable:
        return 1
    print()
    for kind in MESSAGES:
        ml, sp = by_key[("maskline", kind)], by_key[("sippy", kind)]
        print(
            f"sippy/maskline {kind:<12} best {sp.best_us / ml.best_us:5.2f}x   "
            f"median {sp.median_us / ml.median_us:5.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
