"""Media relay benchmark: N concurrent G.711-like calls through ``media.relay``, beside a plain
uvloop UDP echo measured in the same run.

    .venv/bin/python bench/media_relay.py                      # 1000 calls, 5 s per run
    .venv/bin/python bench/media_relay.py --calls 2000 --seconds 10

Three processes: this one (owns the far parties' sockets), a server (``--serve relay`` or
``--serve echo``, on uvloop) and a load generator written in C (``mlgen``, compiled once into
bench/out/ with ``cc``) that inherits the far parties' sockets, so the generator's own cost per
packet (sendto, recvmmsg in batches of 64) stays well below the Python server's. See
bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from media.ports import PortAllocator
from media.relay import MediaRelay

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
HOST = "127.0.0.1"
PACKET_BYTES = 172  # 12-byte RTP header + 160 bytes = 20 ms of G.711 at 8 kHz
INTERVAL_US = 20_000
SOCKET_BUFFER_BYTES = 256 * 1024

MLGEN_C = r"""/* mlgen: UDP load generator for bench/media_relay.py (sockets are inherited fds).
 * usage: mlgen paced|flood DURATION_S SIZE PARAM   (PARAM: interval us | window)
 * stdin: one flow per line: "send_fd dst_port recv_fd reply_flow" (dst host 127.0.0.1)
 * stdout: JSON {"sent", "received", "received_window" (until DURATION), "misrouted"}
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct { int send_fd, recv_fd, reply; struct sockaddr_in dst; uint32_t seq; } flow_t;

static double now_s(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static flow_t *flows; static int nflows; static int size;
static unsigned char buf[2048]; /* payload template */
static long sent, received, misrouted, received_window = -1;

#define BATCH 64
static struct mmsghdr out[BATCH];
static struct iovec out_iov[BATCH];
static unsigned char out_buf[BATCH][2048];

/* Put flow i's next packet into m: RTP version 2, then flow id and sequence number. */
static void fill(struct mmsghdr *m, int i) {
    flow_t *f = &flows[i];
    int slot = (int)(m - out);
    unsigned char *p = out_buf[slot];
    memcpy(p, buf, size);
    uint32_t id = htonl((uint32_t)i), seq = htonl(f->seq++);
    memcpy(p + 12, &id, 4);
    memcpy(p + 16, &seq, 4);
    out_iov[slot].iov_base = p;
    out_iov[slot].iov_len = size;
    memset(&m->msg_hdr, 0, sizeof m->msg_hdr);
    m->msg_hdr.msg_iov = &out_iov[slot];
    m->msg_hdr.msg_iovlen = 1;
    m->msg_hdr.msg_name = &f->dst;
    m->msg_hdr.msg_namelen = sizeof f->dst;
}

static void send_flow(int i) {
    fill(&out[0], i);
    if (sendmsg(flows[i].send_fd, &out[0].msg_hdr, 0) == size) sent++;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage\n"); return 2; }
    int flood = strcmp(argv[1], "flood") == 0;
    double duration = atof(argv[2]); size = atoi(argv[3]); long param = atol(argv[4]);
    if (size < 20 || size > 2048) return 2;
    memset(buf, 0xd5, sizeof buf);
    buf[0] = 0x80; /* RTP version 2, no padding/extension/CSRC */
    buf[1] = 0;    /* PT 0 (PCMU) */
    int cap = 1024; flows = malloc(cap * sizeof *flows);
    int sfd, port, rfd, reply;
    while (scanf("%d %d %d %d", &sfd, &port, &rfd, &reply) == 4) {
        if (nflows == cap) { cap *= 2; flows = realloc(flows, cap * sizeof *flows); }
        flow_t *f = &flows[nflows++];
        memset(f, 0, sizeof *f);
        f->send_fd = sfd; f->recv_fd = rfd; f->reply = reply;
        f->dst.sin_family = AF_INET; f->dst.sin_port = htons(port);
        f->dst.sin_addr.s_addr = htonl(0x7f000001);
    }
    int ep = epoll_create1(0);
    for (int i = 0; i < nflows; i++) {  /* register each receiving fd once */
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = flows[i].recv_fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, flows[i].recv_fd, &ev) && errno != EEXIST) {
            perror("epoll_ctl");
            return 1;
        }
    }
    struct epoll_event evs[256];
    static struct mmsghdr msgs[BATCH];
    static struct iovec iov[BATCH];
    static unsigned char rbuf[BATCH][2048];
    for (int j = 0; j < BATCH; j++) {
        iov[j].iov_base = rbuf[j];
        iov[j].iov_len = sizeof rbuf[j];
        msgs[j].msg_hdr.msg_iov = &iov[j];
        msgs[j].msg_hdr.msg_iovlen = 1;
    }
    double start = now_s(), end = start + duration, stop = end + 0.3;
    double interval = flood ? 0 : param / 1e6;
    /* paced: the k-th send overall is flow k % n, due at start + (k / n) * interval, so the
       flows are spread evenly over each 20 ms period */
    long tick = 0;
    if (flood) for (long w = 0; w < param; w++) for (int i = 0; i < nflows; i++) send_flow(i);
    for (;;) {
        double t = now_s();
        if (t >= end && received_window < 0) received_window = received;
        if (t >= stop) break;
        int timeout_ms = 1;
        if (!flood && t < end) {
            for (;;) {
                double due = start + ((double)tick / nflows) * interval;
                if (due > t) { timeout_ms = (int)((due - t) * 1000); break; }
                send_flow((int)(tick % nflows)); tick++;
            }
        }
        int n = epoll_wait(ep, evs, 256, timeout_ms);
        int sending = flood && now_s() < end;
        for (int e = 0; e < n; e++) {
            int fd = evs[e].data.fd;
            for (;;) {
                int got = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
                if (got <= 0) break;
                int replies = 0;
                for (int j = 0; j < got; j++) {
                    uint32_t id;
                    memcpy(&id, rbuf[j] + 12, 4);
                    id = ntohl(id);
                    if (msgs[j].msg_len < 20 || id >= (uint32_t)nflows || flows[id].recv_fd != fd) {
                        misrouted++;
                        continue;
                    }
                    received++;
                    /* flood: answer on the reply flow, which sends from this same socket, so a
                       whole batch goes out in one sendmmsg */
                    if (sending) fill(&out[replies++], flows[id].reply);
                }
                if (replies) {
                    int done = sendmmsg(fd, out, replies, 0);
                    if (done > 0) sent += done;
                }
                if (got < BATCH) break;
            }
        }
    }
    printf("{\"sent\": %ld, \"received\": %ld, \"received_window\": %ld, \"misrouted\": %ld}\n",
           sent, received, received_window, misrouted);
    return 0;
}
"""


def raise_fd_limit() -> None:
    """1,000 calls need 2,000 relay sockets and 2,000 far-party sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- servers (child processes) -----------------------------------------------------------------


class Echo(asyncio.DatagramProtocol):
    """The reference: every datagram straight back to its sender."""

    transport: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


async def serve(kind: str, port_min: int, port_max: int) -> None:
    """Child process: set up, then answer ``mark``/``stats``/``quit`` lines on stdin."""
    loop = asyncio.get_running_loop()
    request = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    relay = None
    if kind == "echo":
        # One echo socket per far-party socket: the same socket count (and so the same epoll
        # fan-out and per-socket wake-ups) as the relay, so the ratio isolates the relay's logic.
        echo_ports = []
        for _ in range(request["sockets"]):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
            sock.bind((HOST, 0))
            await loop.create_datagram_endpoint(Echo, sock=sock)
            echo_ports.append(sock.getsockname()[1])
        reply: dict[str, Any] = {"ports": echo_ports}
    else:
        relay = MediaRelay(HOST, PortAllocator(port_min, port_max), loop=loop)
        ports = []
        for a_port, b_port in request["endpoints"]:
            session = await relay.open_session()
            session.expect("a", (HOST, a_port))
            session.expect("b", (HOST, b_port))
            ports.append([session.port_a, session.port_b])
        reply = {"ports": ports}
    print(json.dumps(reply), flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "mark":
            print(json.dumps({"cpu_s": time.process_time(), "wall_s": time.monotonic()}),
                  flush=True)
        elif line == "stats":
            stats = {"a_to_b": 0, "b_to_a": 0, "dropped": 0, "unrouted": 0}
            for s in relay.sessions if relay else ():
                stats["a_to_b"] += s.packets_a_to_b
                stats["b_to_a"] += s.packets_b_to_a
                stats["dropped"] += s.dropped
                stats["unrouted"] += s.unrouted
            print(json.dumps(stats), flush=True)
        else:
            if relay is not None:
                await relay.close_all()
            return


# --- driver ------------------------------------------------------------------------------------


def build_mlgen() -> Path:
    """Compile the generator once per source version into bench/out/."""
    digest = hashlib.sha256(MLGEN_C.encode()).hexdigest()[:12]
    binary = OUT / f"mlgen-{digest}"
    if not binary.exists():
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            sys.exit("bench/media_relay.py needs a C compiler (cc) for its load generator")
        OUT.mkdir(parents=True, exist_ok=True)
        source = OUT / f"mlgen-{digest}.c"
        source.write_text(MLGEN_C)
        subprocess.run([cc, "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def far_party_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


class Server:
    """A ``--serve`` child process and its line protocol."""

    def __init__(self, kind: str, request: dict[str, Any], args: argparse.Namespace) -> None:
        cmd = [sys.executable, __file__, "--serve", kind,
               "--port-min", str(args.port_min), "--port-max", str(args.port_max)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.reply = self.ask(json.dumps(request))

    def ask(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def run(kind: str, mode: str, streams: int, args: argparse.Namespace) -> dict[str, float]:
    """One measured run: ``streams`` far-party pairs (relay) or sockets (echo)."""
    socks = [far_party_socket() for _ in range(2 * streams)]
    try:
        ports = [s.getsockname()[1] for s in socks]
        if kind == "relay":
            pairs = [[ports[2 * i], ports[2 * i + 1]] for i in range(streams)]
            server = Server("relay", {"endpoints": pairs}, args)
            flows = []
            for i, (port_a, port_b) in enumerate(server.reply["ports"]):
                a, b = socks[2 * i].fileno(), socks[2 * i + 1].fileno()
                flows.append(f"{a} {port_a} {b} {2 * i + 1}")  # a -> relay -> b
                flows.append(f"{b} {port_b} {a} {2 * i}")  # b -> relay -> a
        else:
            server = Server("echo", {"sockets": len(socks)}, args)
            flows = [
                f"{s.fileno()} {port} {s.fileno()} {j}"
                for j, (s, port) in enumerate(zip(socks, server.reply["ports"], strict=True))
            ]
        param = INTERVAL_US if mode == "paced" else args.window
        before = server.ask("mark")
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        gen = subprocess.run(
            [str(args.mlgen), mode, str(args.seconds), str(PACKET_BYTES), str(param)],
            input="\n".join(flows) + "\n", capture_output=True, text=True, check=True,
            pass_fds=[s.fileno() for s in socks],
        )
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        after = server.ask("mark")
        stats = server.ask("stats")
        server.close()
    finally:
        for s in socks:
            s.close()
    result = json.loads(gen.stdout)
    wall_s = after["wall_s"] - before["wall_s"]
    cpu = (after["cpu_s"] - before["cpu_s"]) / wall_s
    gen_cpu = (
        children_after.ru_utime + children_after.ru_stime
        - children_before.ru_utime - children_before.ru_stime
    ) / wall_s
    sent, received = result["sent"], result["received"]
    return {
        "sent": sent,
        "received": received,
        "misrouted": result["misrouted"],
        "loss_pct": 100.0 * (sent - received) / sent if sent else 0.0,
        "pps": result["received_window"] / args.seconds,
        "cpu": cpu,
        "gen_cpu": gen_cpu,
        "dropped": stats.get("dropped", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="concurrent calls (paced runs)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--flood-streams", type=int, default=50,
                        help="calls (relay) / socket pairs (echo) in the saturation runs")
    parser.add_argument("--window", type=int, default=16,
                        help="packets in flight per stream in the saturation runs")
    parser.add_argument("--port-min", type=int, default=20000)
    parser.add_argument("--port-max", type=int, default=29999)
    parser.add_argument("--serve", choices=["relay", "echo"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.serve:
        uvloop.run(serve(args.serve, args.port_min, args.port_max))
        return
    args.mlgen = build_mlgen()
    print(f"media relay benchmark: {PACKET_BYTES}-byte packets, {args.seconds:g} s per run, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f}")

    offered = args.calls * 2 * 1_000_000 // INTERVAL_US
    print(f"\npaced: {args.calls} calls = {2 * args.calls} streams x 50 packets/s "
          f"({offered:,} packets/s offered)")
    paced = {kind: run(kind, "paced", args.calls, args) for kind in ("echo", "relay")}
    for kind, r in paced.items():
        print(f"  {kind:5}  relayed {r['received']:>9,} of {r['sent']:>9,}  "
              f"loss {r['loss_pct']:.4f} %  misrouted {r['misrouted']}  "
              f"server CPU {100 * r['cpu']:5.1f} % (generator {100 * r['gen_cpu']:.0f} %)")
    relay_cpu, echo_cpu = paced["relay"]["cpu"], paced["echo"]["cpu"]
    if relay_cpu > 0:
        print(f"  relay CPU per packet / echo CPU per packet: {relay_cpu / echo_cpu:.2f}x; "
              f"projected calls per core at this load: {args.calls / relay_cpu:,.0f}")

    print(f"\nsaturation: {args.flood_streams} streams each way, {args.window} packets in "
          "flight per stream, best of 2 interleaved rounds")
    best: dict[str, dict[str, float]] = {}
    for _ in range(2):
        for kind in ("echo", "relay"):
            r = run(kind, "flood", args.flood_streams, args)
            if kind not in best or r["pps"] > best[kind]["pps"]:
                best[kind] = r
    for kind, r in best.items():
        print(f"  {kind:5}  {r['pps']:>10,.0f} packets/s  server CPU {100 * r['cpu']:5.1f} %"
              f"  (generator {100 * r['gen_cpu']:.0f} %)")
    print(f"  relay / echo: {best['relay']['pps'] / best['echo']['pps']:.2f}")


if __name__ == "__main__":
    main()
