"""End-to-end fixtures: the real ``maskline serve`` process on loopback, SIPp, raw SIP sockets.

Nothing here sleeps to hope: readiness is a 200 to an OPTIONS, shutdown is the process exit
status, and every socket read has a timeout that turns silence into a failure message.
"""

from __future__ import annotations

import csv
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_DEADLINE_S = 15.0
SHUTDOWN_DEADLINE_S = 10.0
SIPP_DEADLINE_S = 30.0
REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = REPO_ROOT / "sipp_scenarios"
LOOPBACK = "127.0.0.1"

# RFC 3261 §7.3.3 compact forms, so replies are read whatever form the server writes.
_COMPACT = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
}


# ----------------------------------------------------------------------------- ports
def free_port_udp_and_tcp(host: str = LOOPBACK) -> int:
    """A port that is free on ``host`` for both TCP and UDP right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP on loopback")


def free_udp_port_range(size: int, host: str = LOOPBACK) -> tuple[int, int]:
    """A start port such that a range of ``size`` UDP ports looks free (best effort)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            start: int = probe.getsockname()[1] & ~1
        if start + size >= 65535:
            continue
        ok = True
        for port in (start, start + size - 1):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    ok = False
        if ok:
            return start, start + size - 1
    raise RuntimeError("no free UDP port range on loopback")


# -------------------------------------------------------------------- SIP messages
def new_branch() -> str:
    return "z9hG4bK-e2e-" + secrets.token_hex(8)


def new_call_id() -> str:
    return "e2e-" + secrets.token_hex(10) + "@127.0.0.1"


@dataclass
class OutgoingRequest:
    """A request built for the wire, remembering what a reply must echo."""

    method: str
    call_id: str
    branch: str
    from_tag: str
    cseq: int
    data: bytes


def build_request(
    method: str,
    local: tuple[str, int],
    *,
    ruri: str | None = None,
    version: str = "SIP/2.0",
    transport: str = "UDP",
    call_id: str | None = None,
    cseq: int = 1,
    cseq_method: str | None = None,
    extra_headers: tuple[str, ...] = (),
    body: bytes = b"",
    content_length: str | None = None,
    max_forwards: int | None = 70,
) -> OutgoingRequest:
    """Build a request whose Via names ``local`` (the socket the reply must reach)."""
    host, port = local
    call_id = call_id or new_call_id()
    branch = new_branch()
    from_tag = "e2e" + secrets.token_hex(4)
    lines = [
        f"{method} {ruri or 'sip:service@127.0.0.1'} {version}",
        f"Via: SIP/2.0/{transport} {host}:{port};branch={branch};rport",
    ]
    if max_forwards is not None:
        lines.append(f"Max-Forwards: {max_forwards}")
    lines += [
        f'From: "e2e" <sip:e2e@{host}:{port}>;tag={from_tag}',
        "To: <sip:service@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        f"Contact: <sip:e2e@{host}:{port};transport={transport.lower()}>",
        *extra_headers,
        f"Content-Length: {len(body) if content_length is None else content_length}",
    ]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    return OutgoingRequest(method, call_id, branch, from_tag, cseq, data)


@dataclass
class SipReply:
    """A response read off the wire by a deliberately small, independent parser."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def tokens(self, name: str) -> set[str]:
        """Comma-separated tokens over every occurrence of a header, lower-cased."""
        return {
            part.strip().lower() for value in self.all(name) for part in value.split(",") if part
        }


def parse_reply(data: bytes) -> SipReply:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"reply has no end of headers: {data[:300]!r}")
    lines = head.decode("utf-8", "replace").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if version != "SIP/2.0" or not code.isdigit() or len(code) != 3:
        raise AssertionError(f"not a SIP/2.0 status line: {lines[0]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation
            key, value = headers[-1]
            headers[-1] = (key, value + " " + line.strip())
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise AssertionError(f"bad header line in reply: {line!r}")
        key = key.strip().lower()
        headers.append((_COMPACT.get(key, key), value.strip()))
    return SipReply(int(code), reason, headers, body, data)


def header_param(value: str, name: str) -> str | None:
    """Value of ``;name=value`` in a header value (outside ``<...>``)."""
    if ">" in value:
        value = value.rsplit(">", 1)[1]
    for part in value.split(";")[1:]:
        key, _, param = part.partition("=")
        if key.strip().lower() == name:
            return param.strip()
    return None


def assert_echoes(reply: SipReply, request: OutgoingRequest) -> None:
    """RFC 3261 §8.2.6.2: the response copies Call-ID, CSeq, From (tag) and the Via."""
    assert reply.get("call-id") == request.call_id, reply.raw
    cseq = reply.get("cseq")
    assert cseq is not None, reply.raw
    number, method = cseq.split()
    assert (int(number), method) == (request.cseq, request.data.split(b" ", 1)[0].decode()), cseq
    from_ = reply.get("from")
    assert from_ is not None and header_param(from_, "tag") == request.from_tag, reply.raw
    vias = reply.all("via")
    assert vias and header_param(vias[0], "branch") == request.branch, reply.raw


# ---------------------------------------------------------------------- UDP / TCP
class UdpClient:
    """A UDP socket on loopback talking to one server address."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind((LOOPBACK, 0))
        self.local: tuple[str, int] = self.sock.getsockname()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def receive(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(70_000)
        except TimeoutError:
            return None
        return data

    def send_and_receive(
        self, request: OutgoingRequest, timeout: float = 3.0, *, final: bool = True
    ) -> SipReply:
        """Send once and return the first reply for this request (final unless told)."""
        self.send(request.data)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            data = self.receive(left)
            if data is None:
                break
            reply = parse_reply(data)
            if reply.get("call-id") != request.call_id:
                continue  # a retransmission or a reply to an earlier request
            if final and reply.status < 200:
                continue
            return reply
        raise AssertionError(
            f"no {'final ' if final else ''}reply within {timeout} s to {request.data[:200]!r}"
        )

    def ack(self, reply: SipReply, ruri: str = "sip:service@127.0.0.1") -> None:
        """ACK a non-2xx final response to an INVITE, built from the response (§17.1.1.3)."""
        self.send(ack_for(reply, ruri))


def ack_for(reply: SipReply, ruri: str = "sip:service@127.0.0.1") -> bytes:
    """The ACK for a non-2xx final response to an INVITE: same Via, From, To, Call-ID, CSeq."""
    via, from_, to, call_id, cseq = (
        reply.get(name) for name in ("via", "from", "to", "call-id", "cseq")
    )
    assert via and from_ and to and call_id and cseq, f"cannot build ACK from {reply.raw!r}"
    return (
        f"ACK {ruri} SIP/2.0\r\n"
        f"Via: {via}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: {from_}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq.split()[0]} ACK\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


class TcpClient:
    """A TCP connection with Content-Length framing of the replies."""

    def __init__(self, server: tuple[str, int], timeout: float = 3.0) -> None:
        self.sock = socket.create_connection(server, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local: tuple[str, int] = self.sock.getsockname()
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, timeout: float) -> bool:
        """Read more bytes; False on timeout, raises ConnectionError on close."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        if not chunk:
            raise ConnectionResetError("server closed the connection")
        self.buffer += chunk
        return True

    def read_reply(self, timeout: float = 3.0) -> SipReply | None:
        """Next complete reply framed by Content-Length, or None after ``timeout`` of silence."""
        deadline = time.monotonic() + timeout
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end >= 0:
                head = parse_reply(self.buffer[: head_end + 4])
                length = int(head.get("content-length") or "0")
                total = head_end + 4 + length
                if len(self.buffer) >= total:
                    data, self.buffer = self.buffer[:total], self.buffer[total:]
                    return parse_reply(data)
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(left):
                return None


# ------------------------------------------------------------------------- server
@dataclass
class MasklineServer:
    proc: subprocess.Popen[bytes]
    sip: tuple[str, int]
    config_path: Path
    stderr_path: Path
    workdir: Path

    def stderr_tail(self, lines: int = 60) -> str:
        try:
            text = self.stderr_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return "<no stderr file>"
        return "\n".join(text.splitlines()[-lines:])

    def assert_alive(self) -> None:
        code = self.proc.poll()
        assert code is None, f"maskline exited with {code}; stderr tail:\n{self.stderr_tail()}"


def maskline_command(config: Path) -> list[str]:
    """The console script next to this interpreter; ``-m engine.cli`` only if it is missing."""
    script = Path(sys.executable).parent / "maskline"
    if script.exists():
        return [str(script), "serve", "--config", str(config)]
    return [sys.executable, "-m", "engine.cli", "serve", "--config", str(config)]


def write_config(directory: Path, sip_port: int) -> Path:
    api_port = free_port_udp_and_tcp()
    # 4 ports per call (RTP + RTCP on each leg): room for 250 simultaneous calls.
    media_min, media_max = free_udp_port_range(1000)
    config = directory / "maskline.toml"
    config.write_text(
        f"""\
[sip]
listen = "{LOOPBACK}:{sip_port}"

[api]
listen = "{LOOPBACK}:{api_port}"
operator_token = "e2e-operator-token"

[store]
path = "{directory / "maskline.sqlite3"}"

[media]
address = "{LOOPBACK}"
port_min = {media_min}
port_max = {media_max}

[cdr]
dir = "{directory / "cdr"}"

[recording]
dir = "{directory / "recordings"}"

[log]
level = "info"
format = "json"
# Each line at once: tests read the log right after what they check (batching: tests/test_logging).
batch_ms = 0
""",
        encoding="utf-8",
    )
    return config


def wait_until_ready(server: MasklineServer) -> None:
    """Await a 200 to OPTIONS over UDP (and a TCP accept), polling until the deadline."""
    deadline = time.monotonic() + READY_DEADLINE_S
    client = UdpClient(server.sip)
    try:
        while True:
            if server.proc.poll() is not None:
                raise AssertionError(
                    f"maskline exited with {server.proc.returncode} during start-up; "
                    f"stderr tail:\n{server.stderr_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"maskline did not answer OPTIONS within {READY_DEADLINE_S} s; "
                    f"stderr tail:\n{server.stderr_tail()}"
                )
            probe = build_request("OPTIONS", client.local)
            try:
                reply = client.send_and_receive(probe, timeout=0.2)
            except AssertionError:
                continue  # no answer yet: poll again
            except ConnectionRefusedError:
                # Not listening yet: the refusal comes back at once, and polling again at once
                # spun a core that the starting server (imports, prompts) needs on 2 cores.
                time.sleep(0.02)
                continue
            if reply.status == 200:
                break
    finally:
        client.close()
    while True:
        try:
            socket.create_connection(server.sip, timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"maskline UDP is up but TCP {server.sip} does not accept; "
                    f"stderr tail:\n{server.stderr_tail()}"
                ) from None
            server.assert_alive()


def stop_server(server: MasklineServer) -> None:
    """SIGTERM, then the process must exit 0 within the deadline."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(timeout=SHUTDOWN_DEADLINE_S)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
            raise AssertionError(
                f"maskline did not exit within {SHUTDOWN_DEADLINE_S} s of SIGTERM; "
                f"stderr tail:\n{server.stderr_tail()}"
            ) from None
    else:
        code = server.proc.returncode
    assert code == 0, (
        f"maskline exited with {code} after SIGTERM (expected 0); "
        f"stderr tail:\n{server.stderr_tail()}"
    )


def server_env() -> dict[str, str]:
    """The environment of a maskline child: the test's config file, not the developer's
    ``MASKLINE_*`` overrides, and no PYTHONPATH (the installed package is what runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASKLINE_")}
    env.pop("PYTHONPATH", None)
    return env


def start_server(
    config: Path, workdir: Path, sip_port: int, log_name: str = "maskline.stderr"
) -> MasklineServer:
    """``maskline serve`` on ``config`` in ``workdir``, returned once it answers OPTIONS.

    Its output goes to ``workdir/log_name``, appended (a restarted server keeps one log).
    """
    stderr_path = workdir / log_name
    with stderr_path.open("ab") as stderr:
        proc = subprocess.Popen(
            maskline_command(config),
            cwd=workdir,
            env=server_env(),
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    server = MasklineServer(proc, (LOOPBACK, sip_port), config, stderr_path, workdir)
    try:
        wait_until_ready(server)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    return server


@pytest.fixture
def maskline(tmp_path: Path) -> Iterator[MasklineServer]:
    """The real ``maskline serve`` on free loopback ports; SIGTERM must end it with 0."""
    sip_port = free_port_udp_and_tcp()
    server = start_server(write_config(tmp_path, sip_port), tmp_path, sip_port)
    yield server
    stop_server(server)


# --------------------------------------------------------------------------- SIPp
@dataclass
class SippRun:
    returncode: int
    output: str
    stats: dict[str, str]

    @property
    def successful_calls(self) -> int:
        return int(self.stats.get("SuccessfulCall(C)", "-1"))

    @property
    def failed_calls(self) -> int:
        return int(self.stats.get("FailedCall(C)", "-1"))


@pytest.fixture
def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        pytest.fail(
            "SIPp is not installed (no `sipp` on PATH). Run `make test`, which installs the "
            "Debian package sip-tester, or `sudo apt-get install sip-tester`.",
            pytrace=False,
        )
    return path


def run_sipp(
    sipp: str, scenario: str, transport: str, target: tuple[str, int], workdir: Path
) -> SippRun:
    """Run one scenario for one call; return exit code, screen and the final -trace_stat row."""
    workdir.mkdir(parents=True, exist_ok=True)
    stat_file = workdir / f"{Path(scenario).stem}_{transport}_stat.csv"
    command = [
        sipp,
        "-sf",
        str(SCENARIOS / scenario),
        "-m",
        "1",
        "-t",
        transport,
        "-i",
        LOOPBACK,
        "-p",
        str(free_port_udp_and_tcp()),
        "-nostdin",
        "-timeout",
        "20s",
        "-timeout_error",
        "-trace_stat",
        "-stf",
        str(stat_file),
        "-trace_err",
        f"{target[0]}:{target[1]}",
    ]
    try:
        done = subprocess.run(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=SIPP_DEADLINE_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"SIPp did not finish within {SIPP_DEADLINE_S} s: {command}") from exc
    output = done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace")
    stats: dict[str, str] = {}
    if stat_file.exists():
        with stat_file.open(newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.DictReader(f, delimiter=";"))
        if rows:
            stats = {k: v for k, v in rows[-1].items() if k is not None and v is not None}
    for log in workdir.glob("*_errors.log"):
        output += f"\n--- {log.name}\n" + log.read_text("utf-8", "replace")
    return SippRun(done.returncode, output, stats)
