"""Binding-path benchmark: durable binds, HTTP binds, route lookups, memory, start-up load.

DESIGN "Performance" targets: ≥ 5,000 durable binds/s, ≥ 1,000,000 route lookups/s in process,
≤ 400 bytes of memory per binding, 1,000,000 bindings loaded at start-up in ≤ 5 s. Every figure
is printed beside a reference measured in the same invocation (raw store insert, minimal ASGI
app on the same uvicorn, plain dict lookup, raw SQL read), with the ratio.

Usage::

    .venv/bin/python bench/bind.py            # full run (~3-4 min on 2 cores)
    .venv/bin/python bench/bind.py --quick    # smaller counts (~1 min)
    .venv/bin/python bench/bind.py --only durable,http,lookup,load

Heavy parts run in child processes of this script (``--child ...``) so each memory figure is
measured in a fresh interpreter and the HTTP server, its clients and this script do not share a
CPU budget unnoticed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

# Run from a checkout without installing: make the repository root importable.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

TOKEN = "bench-operator-token"
ZONE_NAME = "Asia/Shanghai"
NOW = 1_900_000_000.0  # fixed "now" of the lookup and load sections (2030)
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(args: Sequence[str], *, timeout_s: float = 300) -> dict[str, Any]:
    """Run this script as ``--child ...``; its last stdout line is a JSON result."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"child {args[0]} failed with exit status {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _quiet_logging(level: str = "info") -> None:
    """The engine's logging as ``maskline serve`` sets it up (INFO, JSON), into /dev/null.

    The control plane logs one line per bind; rendering it is part of a bind's cost.
    """
    from engine.logging import configure_logging  # noqa: PLC0415

    configure_logging(level, "json", stream=open(os.devnull, "w"))  # noqa: SIM115


def _uvloop_run(main: Awaitable[Any]) -> Any:
    import uvloop  # noqa: PLC0415

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)  # type: ignore[arg-type]


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    print("  " + "  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


# =========================================================================================
# 1. Durable binds in process: ControlPlane.bind against store.insert_binding alone


def _settings(db_path: Path) -> Any:
    from config.settings import ApiSettings, Settings, StoreSettings  # noqa: PLC0415

    return Settings(
        store=StoreSettings(path=db_path),
        api=ApiSettings(operator_token=TOKEN, master_key_file=db_path.with_name("master.key")),
    )


async def _prepare_pools(control: Any, *, pools: int, numbers_per_pool: int) -> list[str]:
    """Import X numbers and create AXB pools holding them; returns the pool keys."""
    from api.control import ImportRow  # noqa: PLC0415
    from routing.model import BindingType  # noqa: PLC0415

    total = pools * numbers_per_pool
    rows = [ImportRow(f"170{i:08d}", "北京", "北京", "CMCC", "1") for i in range(total)]
    await control.import_numbers(rows)
    keys: list[str] = []
    for p in range(pools):
        key = await control.create_pool(BindingType.AXB, f"bench-{p}")
        left = numbers_per_pool
        while left:
            step = min(left, 1000)
            await control.add_numbers(key, step)
            left -= step
        keys.append(key)
    return keys


def _party(i: int) -> tuple[str, str]:
    """A and B of the i-th bind: real Chinese mobile numbers, distinct per bind."""
    return f"138{i:08d}", f"139{i:08d}"


async def _run_tasks(count: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> float:
    """Run ``one(i)`` for i in range(count) on ``concurrency`` tasks; returns the wall seconds."""
    counter = iter(range(count))

    async def worker() -> None:
        for i in counter:
            await one(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def _durable(count: int, concurrency: int, rounds: int, workdir: Path) -> dict[str, Any]:
    import store  # noqa: PLC0415
    from api.control import open_control_plane  # noqa: PLC0415
    from routing.model import Binding, BindingType, PhoneNumber, PoolKey, SubId  # noqa: PLC0415

    control = await open_control_plane(_settings(workdir / "durable.sqlite3"))
    per_pool = max(500, count // 40)  # ≤ 40 bindings per X per round: far from capacity (200)
    alloc_pool, x_pool, store_pool = await _prepare_pools(
        control, pools=3, numbers_per_pool=per_pool
    )
    xs = control.pool_numbers(PoolKey(x_pool))
    store_xs = control.pool_numbers(PoolKey(store_pool))
    expires = control.local_time(time.time() + 86_400)
    expires_at = time.time() + 86_400
    serial = iter(range(10**7))

    async def via_store(i: int) -> None:
        n = next(serial)
        a, b = _party(n)
        await store.insert_binding(
            control.db,
            Binding(
                SubId(store.new_numeric_id()),
                PoolKey(store_pool),
                BindingType.AXB,
                store_xs[n % len(store_xs)],
                PhoneNumber("+86" + a),
                expires_at,
                PhoneNumber("+86" + b),
                created_at=time.time(),
            ),
        )

    async def via_alloc(i: int) -> None:
        a, b = _party(next(serial))
        await control.bind(BindingType.AXB, alloc_pool, a, b, expires=expires)

    async def via_x(i: int) -> None:
        n = next(serial)
        a, b = _party(n)
        await control.bind(BindingType.AXB, x_pool, a, b, xs[n % len(xs)], expires=expires)

    import api.control as control_module  # noqa: PLC0415

    shipped_normalize = vars(control_module)["normalize"]
    cases: list[tuple[str, Callable[[int], Awaitable[None]], bool, bool]] = [
        # name, one bind, normalize fast path patched in, per-bind log line
        ("store", via_store, False, True),
        ("alloc", via_alloc, False, True),
        ("x", via_x, False, True),
        ("x+fastnum", via_x, True, True),
        ("x+fastnum+cachedlog", via_x, True, True),
        ("x+fastnum+nolog", via_x, True, False),
        ("alloc+fastnum+nolog", via_alloc, True, False),
    ]
    results: dict[str, list[float]] = {name: [] for name, *_ in cases}
    # Process CPU (loop and SQLite writer thread) per bind: moves less with foreign load.
    cpu_us: dict[str, list[float]] = {name: [] for name, *_ in cases}
    # Rounds interleave the cases so a change of machine load hits all of them alike.
    for _ in range(rounds):
        for name, one, fast_numbers, log_binds in cases:
            vars(control_module)["normalize"] = (
                _fast_normalize if fast_numbers else shipped_normalize
            )
            _quiet_logging("info" if log_binds else "warning")
            if name.endswith("cachedlog"):
                import structlog  # noqa: PLC0415

                # What-if for engine/logging.py: loggers built once, not on every call.
                structlog.configure(cache_logger_on_first_use=True)
            gc.collect()
            cpu = time.process_time()
            results[name].append(count / await _run_tasks(count, concurrency, one))
            cpu_us[name].append((time.process_time() - cpu) / count * 1e6)
    vars(control_module)["normalize"] = shipped_normalize
    _quiet_logging()
    batches, ops = control.db.batches_committed, control.db.ops_committed
    await control.close()
    return {
        "rates": results,
        "cpu_us": cpu_us,
        "ops_per_batch": ops / max(batches, 1),
    }


def _fast_normalize(raw: str, *, region: str = "CN") -> Any:
    """What-if for routing.numbers.normalize: the fast path ``from_sip_user`` already has.

    A plain 11-digit Chinese mobile, or one written +86/86 + 11 digits, checked against the
    library's own mobile pattern (``routing.numbers._CN_MOBILE``) without a full phonenumbers
    parse; anything else goes the shipped way.
    """
    from routing.numbers import _CN_MOBILE, normalize  # noqa: PLC0415

    if raw.isascii():
        if len(raw) == 11 and raw.isdigit() and _CN_MOBILE.fullmatch(raw):
            return "+86" + raw
        if (
            len(raw) == 14
            and raw[:3] == "+86"
            and raw[3:].isdigit()
            and _CN_MOBILE.fullmatch(raw, 3)
        ):
            return raw
    return normalize(raw, region=region)


def section_durable(options: argparse.Namespace, workdir: Path) -> tuple[list[str], float]:
    _quiet_logging()
    result = _uvloop_run(_durable(options.binds, options.concurrency, options.rounds, workdir))
    rates = result["rates"]
    store_best = max(rates["store"])
    rows = []
    for key, label in (
        ("store", "store.insert_binding (reference)"),
        ("alloc", "ControlPlane.bind AXB, X allocated"),
        ("x", "ControlPlane.bind AXB, explicit X"),
        ("x+fastnum", "  what-if: + normalize fast path for CN mobiles"),
        ("x+fastnum+cachedlog", "  what-if: + that, structlog loggers cached"),
        ("x+fastnum+nolog", "  what-if: + fast normalize, no per-bind log line"),
        ("alloc+fastnum+nolog", "  what-if: X allocated, both of the above"),
    ):
        best, median = max(rates[key]), statistics.median(rates[key])
        cpu = min(result["cpu_us"][key])
        rows.append(
            (label, f"{best:,.0f}", f"{median:,.0f}", f"{best / store_best:.2f}", f"{cpu:.0f}")
        )
    _table(
        f"1. Durable binds in process (SQLite synchronous=FULL, {options.binds:,} binds per round,"
        f" {options.concurrency} concurrent tasks, {options.rounds} rounds, uvloop;"
        f" {result['ops_per_batch']:.0f} ops per group commit)",
        ("path", "best binds/s", "median binds/s", "best / store", "CPU µs/bind"),
        rows,
    )
    summary = [
        f"durable binds/s in process, X allocated {max(rates['alloc']):,.0f},"
        f" explicit X {max(rates['x']):,.0f}  target ≥ 5,000"
    ]
    return summary, store_best


# =========================================================================================
# 2. Binds over HTTP: a server child (as `maskline serve` starts the API), client children


def _server_child(db_path: str, variant: str, port_file: str) -> None:
    """Serve the operator API on 127.0.0.1 (port written to ``port_file``) until stdin closes.

    Variants (monkeypatches, measuring what a change in api/ or engine/ would give):
    ``engine`` as shipped (uvicorn's httptools parser); ``h11``: the shipped app on uvicorn's
    pure-Python h11 parser (what maskline used before); ``httptools``: the same as ``engine``
    (kept for older command lines); ``-fastnum``: the normalize fast path of section 1 (now
    shipped, so a no-op); ``-quiet``: log level WARNING (no per-bind log line); ``floor``: a
    minimal ASGI app answering a fixed JSON body on the same uvicorn (httptools) — the HTTP
    stack's ceiling on this machine.
    """
    import uvicorn  # noqa: PLC0415

    http = "h11" if variant in ("h11", "floor-h11") else "httptools"
    base_config = uvicorn.Config

    class _Config(base_config):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["http"] = http
            super().__init__(*args, **kwargs)

    uvicorn.Config = _Config  # type: ignore[misc]
    from engine.logging import configure_logging  # noqa: PLC0415

    level = "warning" if "quiet" in variant else "info"
    if "fastnum" in variant:
        import api.control as control_module  # noqa: PLC0415

        vars(control_module)["normalize"] = _fast_normalize
    configure_logging(level, "json", stream=open(os.devnull, "w"))  # noqa: SIM115

    async def serve() -> None:
        from api.app import create_app  # noqa: PLC0415
        from api.control import open_control_plane  # noqa: PLC0415
        from api.server import start_api  # noqa: PLC0415

        loop = asyncio.get_running_loop()
        control = await open_control_plane(_settings(Path(db_path)))
        app: Any
        if variant.startswith("floor"):
            body = json.dumps({"sub_id": "1" * 18, "secret_no": "+8617000000001"}).encode()

            async def floor(scope: Any, receive: Any, send: Any) -> None:
                while (await receive()).get("more_body"):
                    pass
                await send(
                    {
                        "type": "http.response.start",
                        "status": 201,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})

            app = floor
        elif variant.startswith("asgi"):
            app = _plain_bind_app(control)
        else:
            app = create_app(control, operator_token=TOKEN)
        server = await start_api(app, "127.0.0.1", 0)
        Path(port_file).write_text(str(server.port))
        stdin_closed = asyncio.Event()
        loop.add_reader(sys.stdin.fileno(), stdin_closed.set)
        await stdin_closed.wait()
        await server.stop()
        await control.close()

    _uvloop_run(serve())


def _plain_bind_app(control: Any) -> Any:
    """What-if for api/app.py: the bind route as a bare ASGI app, without FastAPI.

    Same work as the FastAPI route (bearer check, ``BindIn`` validated by pydantic from the
    raw JSON, ``control.bind``, the same JSON answer built from ``binding_view``), none of the
    framework's routing, dependency solving and middleware. Other paths answer 404.
    """
    from api.app import BindIn  # noqa: PLC0415

    expected = f"Bearer {TOKEN}".encode()
    prefix, suffix = "/v1/pools/", "/bindings"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        path: str = scope["path"]
        status, payload = 404, {"code": "NOT_FOUND", "message": "no such route"}
        if scope["method"] == "POST" and path.startswith(prefix) and path.endswith(suffix):
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != expected:
                status, payload = 401, {"code": "UNAUTHENTICATED", "message": "token"}
            else:
                body = BindIn.model_validate_json(b"".join(chunks))
                binding = await control.bind(
                    body.type,
                    path[len(prefix) : -len(suffix)],
                    body.a,
                    body.b,
                    body.x,
                    expires=body.expires,
                    record=body.record,
                    group_id=body.group_id,
                    extension=body.extension,
                    restriction=body.restriction,
                    ring_timeout_s=body.ring_timeout_s,
                    out_id=body.out_id,
                    expect_city=body.expect_city,
                )
                status = 201
                payload = {
                    "sub_id": binding.sub_id,
                    "secret_no": binding.x,
                    "extension": binding.extension,
                    "binding": control.binding_view(binding),
                }
        data = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    return app


async def _client(
    port: int, pool_key: str, *, start: int, count: int, connections: int
) -> dict[str, Any]:
    """Bind ``count`` AXB pairs over ``connections`` keep-alive HTTP/1.1 connections.

    A hand-rolled client (asyncio streams, one request in flight per connection) so the client
    spends little CPU per request next to the server.
    """
    import datetime as dt  # noqa: PLC0415
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    expires = (dt.datetime.fromtimestamp(time.time() + 86_400, tz=ZoneInfo(ZONE_NAME))).strftime(
        "%Y-%m-%d %H:%M:%S"
    )
    head = (
        f"POST /v1/pools/{pool_key}/bindings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
    )
    numbers = iter(range(start, start + count))
    statuses: dict[int, int] = {}
    latencies: list[float] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for n in numbers:
            a, b = _party(n)
            body = f'{{"type":"AXB","a":"{a}","b":"{b}","expires":"{expires}"}}'.encode()
            sent = time.perf_counter()
            writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            response_head = await reader.readuntil(b"\r\n\r\n")
            status = int(response_head[9:12])
            length = 0
            for line in response_head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - sent)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    cpu0 = _self_cpu_s()
    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "statuses": statuses,
        "wall_s": wall,
        "cpu_s": _self_cpu_s() - cpu0,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def _http_variant(
    options: argparse.Namespace, workdir: Path, variant: str, pool_key: str, offset: int
) -> dict[str, Any]:
    db_path = workdir / "http.sqlite3"
    port_file = workdir / f"port-{variant}"
    server = subprocess.Popen(
        [sys.executable, __file__, "--child", "serve", str(db_path), variant, str(port_file)],
        stdin=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"HTTP server ({variant}) did not start")
            time.sleep(0.05)
        port = int(port_file.read_text())
        per_client = options.http_binds // options.clients
        server_cpu0 = _proc_cpu_s(server.pid)
        started = time.perf_counter()
        clients = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "client",
                    str(port),
                    pool_key,
                    str(offset + c * per_client),
                    str(per_client),
                    str(options.connections),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for c in range(options.clients)
        ]
        reports = []
        for client in clients:
            out, _ = client.communicate(timeout=300)
            reports.append(json.loads(out.strip().splitlines()[-1]))
        wall = time.perf_counter() - started
        server_cpu = _proc_cpu_s(server.pid) - server_cpu0
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=60)
    statuses: dict[str, int] = {}
    for report in reports:
        for status, n in report["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    total = per_client * options.clients
    client_wall = max(r["wall_s"] for r in reports)
    return {
        "rate": total / client_wall,
        "statuses": statuses,
        "server_cpu_pct": server_cpu / wall * 100,
        "server_cpu_us": server_cpu / total * 1e6,
        "client_cpu_pct": sum(r["cpu_s"] for r in reports) / wall * 100,
        "client_cpu_us": sum(r["cpu_s"] for r in reports) / total * 1e6,
        "p50_ms": statistics.median(r["p50_ms"] for r in reports),
        "p99_ms": max(r["p99_ms"] for r in reports),
    }


async def _prepare_http_db(db_path: Path, numbers: int) -> str:
    from api.control import open_control_plane  # noqa: PLC0415

    control = await open_control_plane(_settings(db_path))
    (pool_key,) = await _prepare_pools(control, pools=1, numbers_per_pool=numbers)
    await control.close()
    return pool_key


def section_http(options: argparse.Namespace, workdir: Path, store_rate: float | None) -> list[str]:
    _quiet_logging()
    # All variants bind into one pool: size it so no X nears its capacity of 200.
    variants = options.http_variants.split(",")
    if importlib.util.find_spec("httptools") is None:
        # A tree installed before httptools became a dependency: only h11 runs.
        skipped = [v for v in variants if not v.endswith("h11")]
        variants = [v for v in variants if v not in skipped]
        print(f"\n  httptools is not installed: skipping the variants {', '.join(skipped)}")
    numbers = max(500, options.http_binds * len(variants) // 50)
    pool_key = _uvloop_run(_prepare_http_db(workdir / "http.sqlite3", numbers))
    results = {}
    for i, variant in enumerate(variants):
        results[variant] = _http_variant(
            options, workdir, variant, pool_key, offset=10_000_000 + i * options.http_binds
        )
    floor = results.get("floor")
    rows = []
    for variant, r in results.items():
        ok = r["statuses"].get("201", 0) + r["statuses"].get("200", 0)
        rows.append(
            (
                variant,
                f"{r['rate']:,.0f}",
                f"{ok:,}/{sum(r['statuses'].values()):,}",
                f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}",
                f"{r['server_cpu_pct']:.0f} % ({r['server_cpu_us']:.0f} µs/req)",
                f"{r['client_cpu_pct']:.0f} % ({r['client_cpu_us']:.0f} µs/req)",
                "-" if store_rate is None else f"{r['rate'] / store_rate:.3f}",
                "-" if floor is None else f"{r['rate'] / floor['rate']:.2f}",
            )
        )
    _table(
        f"2. Binds over HTTP (POST /v1/pools/{{key}}/bindings, AXB, X allocated;"
        f" {options.http_binds:,} per variant from {options.clients} client processes x"
        f" {options.connections} keep-alive connections; server = api.server.start_api on uvloop"
        f" in its own process)",
        (
            "variant",
            "binds/s",
            "2xx",
            "p50 / p99 ms",
            "server CPU",
            "client CPU",
            "/ store",
            "/ floor",
        ),
        rows,
    )
    print(
        "  variants: engine = as shipped (uvicorn httptools); h11 = uvicorn http='h11' (before);\n"
        "  -fastnum = normalize fast path (section 1); -quiet = log level warning (no per-bind\n"
        "  line); floor = fixed-body ASGI app on the same uvicorn+httptools (the HTTP stack\n"
        "  alone); asgi- = the bind route as a bare ASGI app (pydantic BindIn, control.bind,\n"
        "  same JSON), no FastAPI. '/ store' = against the in-process store reference of\n"
        "  section 1. Server CPU µs per request is the figure least sensitive to other load\n"
        "  on the machine."
    )
    best = max(r["rate"] for v, r in results.items() if not v.startswith("floor"))
    return [f"HTTP binds/s (best app variant) {best:,.0f}  target ≥ 5,000"]


# =========================================================================================
# 3 + 4. Memory per binding and route lookups, in a fresh interpreter


def _synthetic_rows(count: int, *, seed: int = 1) -> list[tuple[object, ...]]:
    """Rows of ``store.repositories._BINDING_COLUMNS``: 90 % AXB (200 per X), 10 % AXN.

    A and B are distinct numbers per binding (the worst case for memory); 5 % have expired
    (still indexed, as the load keeps them); ring timeout 60 s, no ringback, no out_id.
    """
    rng = random.Random(seed)
    rows: list[tuple[object, ...]] = []
    axb = count * 9 // 10
    for i in range(count):
        if i < axb:
            kind, x, pool = "AXB", f"+86170{i // 200:08d}", "FC00000000000000A1"
        else:
            kind, x, pool = "AXN", f"+86171{i:08d}", "FC00000000000000A2"
        expires = NOW - 3600 if rng.random() < 0.05 else NOW + rng.randrange(60, 30 * 86_400)
        rows.append(
            (
                str(10**17 + rng.randrange(9 * 10**17)),
                pool,
                kind,
                x,
                f"+86138{i:08d}",
                float(expires),
                f"+86139{i:08d}",
                None,
                None,
                0,
                "NONE",
                60,
                None,
                NOW - rng.randrange(30 * 86_400) + rng.random(),
                "{}",
            )
        )
    return rows


def _memory_lookup_child(db_path: str, probes: int) -> dict[str, Any]:
    import store  # noqa: PLC0415
    from routing.index import BindingIndex, Intercept, Route  # noqa: PLC0415

    # The Binding objects are built by the store's own load loop from what SQLite hands back.
    async def load() -> Any:
        db = await store.Database.open(Path(db_path))
        try:
            return await store.load_active_bindings(db, NOW)
        finally:
            await db.close()

    gc.collect()
    gc.disable()
    rss0 = _rss()
    bindings = _uvloop_run(load())
    gc.collect()
    rss_bindings = _rss()
    index = BindingIndex()
    refused = index.load(bindings)
    assert not refused
    gc.collect()
    rss_index = _rss()
    count = len(bindings)
    gc.enable()
    gc.freeze()
    sample = next(b for b in bindings if b.type.value == "AXB")
    parts = {name: sys.getsizeof(getattr(sample, name)) for name in ("sub_key", "a", "b")}
    # A whole-second expiry is held as a shared int (seconds past its shared hour): 0 B own.
    rest = sample._expires_at
    parts["expiry"] = 0 if type(rest) is int else sys.getsizeof(rest)
    parts["Binding object"] = sys.getsizeof(sample)

    # Route lookups: AXB A→B and B→A, a stranger calling an AXB X, an N calling an AXN X.
    # Strangers and Ns are random numbers (one fixed stranger would probe the same slot of
    # every X's table, which then stays in cache).
    rng = random.Random(5)
    active = [b for b in bindings if b.expires_at > NOW]
    axb = [b for b in active if b.type.value == "AXB"]
    axn = [b for b in active if b.type.value == "AXN"]
    mix: list[tuple[str, Any, Any]] = []
    for i in range(probes):
        which = i % 4
        if which == 3:
            binding = axn[rng.randrange(len(axn))]
            mix.append(("axn-n", binding.x, f"+86137{rng.randrange(10**8):08d}"))
        else:
            binding = axb[rng.randrange(len(axb))]
            caller = (binding.a, binding.b, f"+86137{rng.randrange(10**8):08d}")[which]
            mix.append((("axb-a", "axb-b", "unknown")[which], binding.x, caller))
    rng.shuffle(mix)
    resolve = index.resolve
    # Check before timing: each probe resolves as its kind says.
    for label, x, caller in mix[:2000]:
        result = resolve(x, caller, now=NOW)
        expected = Intercept if label == "unknown" else Route
        assert isinstance(result, expected), (label, result)

    def fresh(calls: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        # New str objects equal to X and the caller, made just before a timed round: what the
        # SIP parser hands the engine for each call (a str of its own, its hash not computed
        # yet), not the index's own objects (same object: the dict compares by identity and
        # never reads the key; the hash is cached).
        return [(x[:1] + x[1:], caller[:1] + caller[1:]) for x, caller in calls]

    own = [(x, caller) for _, x, caller in mix]
    table = {b.a: b for b in bindings}  # the reference: one plain dict lookup per call
    lookup = table.get

    def timed_resolve(calls: list[tuple[Any, Any]]) -> float:
        start = time.perf_counter()
        for x, caller in calls:
            resolve(x, caller, now=NOW)
        return time.perf_counter() - start

    best_fresh = best_own = best_dict = float("inf")
    for _ in range(5):
        best_fresh = min(best_fresh, timed_resolve(fresh(own)))
        best_own = min(best_own, timed_resolve(own))
        calls = fresh(own)
        start = time.perf_counter()
        for _x, caller in calls:
            lookup(caller)
        best_dict = min(best_dict, time.perf_counter() - start)
    per_kind = {}
    for kind in ("axb-a", "axb-b", "unknown", "axn-n"):
        subset = [(x, c) for label, x, c in mix if label == kind]
        best = min(timed_resolve(fresh(subset)) for _ in range(3))
        per_kind[kind] = best / len(subset) * 1e9
    return {
        "count": count,
        "parts": parts,
        "bindings_b": (rss_bindings - rss0) / count,
        "index_b": (rss_index - rss_bindings) / count,
        "resolve_ns": best_fresh / len(own) * 1e9,
        "resolve_own_ns": best_own / len(own) * 1e9,
        "dict_ns": best_dict / len(own) * 1e9,
        "per_kind_ns": per_kind,
    }


def section_lookup(options: argparse.Namespace, db_path: Path) -> list[str]:
    r = _child(["memory", str(db_path), str(options.probes)])
    total = r["bindings_b"] + r["index_b"]
    _table(
        f"3. Memory per binding ({r['count']:,} bindings from store.load_active_bindings,"
        " 90 % AXB at 200 per X, 10 % AXN; RSS deltas with the cyclic GC off, fresh interpreter)",
        ("part", "bytes/binding"),
        [
            ("Binding objects and their strings (store load loop)", f"{r['bindings_b']:.0f}"),
            ("BindingIndex structures (by X, per-X maps)", f"{r['index_b']:.0f}"),
            ("total", f"{total:.0f}"),
        ],
    )
    print(
        "  one AXB binding's own objects (sys.getsizeof, before allocator rounding): "
        + ", ".join(f"{name} {size}" for name, size in r["parts"].items())
        + "; X and the profile (pool, type, flags, ringback…) are shared, created_at not loaded"
    )
    rate = 1e9 / r["resolve_ns"]
    _table(
        f"4. Route lookups in process (BindingIndex.resolve over {options.probes:,} probes of"
        " the index above: 1/4 each AXB A→B, AXB B→A, random stranger on an AXB X, random N→A"
        " on AXN; X and caller fresh str objects as the SIP parser makes them; best of 5)",
        ("operation", "ns/op", "lookups/s", "ratio"),
        [
            (
                "resolve, mixed",
                f"{r['resolve_ns']:.0f}",
                f"{rate:,.0f}",
                f"{r['resolve_ns'] / r['dict_ns']:.1f}x dict",
            ),
            *(
                (f"  {kind}", f"{ns:.0f}", f"{1e9 / ns:,.0f}", "")
                for kind, ns in r["per_kind_ns"].items()
            ),
            (
                "resolve, mixed, probes = the index's own str objects",
                f"{r['resolve_own_ns']:.0f}",
                f"{1e9 / r['resolve_own_ns']:,.0f}",
                f"{r['resolve_own_ns'] / r['dict_ns']:.1f}x dict",
            ),
            (
                "plain dict.get of the fresh callers (reference)",
                f"{r['dict_ns']:.0f}",
                f"{1e9 / r['dict_ns']:,.0f}",
                "1.0x",
            ),
        ],
    )
    return [
        f"memory per binding (Binding + index) {total:.0f} B  target ≤ 400 B",
        f"route lookups/s {rate:,.0f}  target ≥ 1,000,000",
    ]


# =========================================================================================
# 5. Start-up load of a database holding N active bindings


def _build_load_db(db_path: Path, count: int) -> None:
    """A migrated database with ``count`` active bindings, written with executemany."""
    from store.db import _connect, _migrate, bundled_migrations  # noqa: PLC0415

    conn = _connect(db_path, "NORMAL")
    _migrate(conn, bundled_migrations())
    rows = _synthetic_rows(count, seed=2)
    rows.sort()  # by sub_id, the primary key: appends to its B-tree instead of random inserts
    # The secondary indexes of bindings are dropped for the bulk insert and re-created after it
    # from their own SQL (one sort each instead of a million random B-tree inserts).
    indexes = [
        sql
        for (sql,) in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'bindings'"
            " AND sql IS NOT NULL"
        )
    ]
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'bindings'"
        " AND sql IS NOT NULL"
    ).fetchall():
        conn.execute(f"DROP INDEX {name}")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO pools (pool_key, type, name, created_at) VALUES (?, ?, ?, ?)",
        [
            ("FC00000000000000A1", "AXB", "bench-axb", NOW),
            ("FC00000000000000A2", "AXN", "bench-axn", NOW),
        ],
    )
    xs = {(r[3], r[1]) for r in rows}
    conn.executemany(
        "INSERT INTO numbers (number, city, province, carrier, spec, status, pool_key,"
        " imported_at, purchased_at) VALUES (?, '北京', '北京', 'CMCC', 1, 'in_pool', ?, ?, ?)",
        [(x, pool, NOW, NOW) for x, pool in sorted(xs)],
    )
    conn.executemany(
        "INSERT INTO bindings (sub_id, pool_key, type, x, a, expires_at, b, group_id, extension,"
        " record, restriction, ring_timeout_s, out_id, created_at, ringback)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    for sql in indexes:
        conn.execute(sql)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _load_child(db_path: str, mode: str) -> dict[str, Any]:
    path = Path(db_path)
    if mode == "proposed":
        # What-if for api/control.py: the city and province keys of the allocator's numbers
        # cached (one str operation per distinct city instead of one per number).
        import functools  # noqa: PLC0415

        from api import control as control_module  # noqa: PLC0415

        names = vars(control_module)
        for name in ("_city_key", "province_key"):
            names[name] = functools.lru_cache(maxsize=4096)(names[name])
        mode = "open"
    if mode == "open":
        # What `maskline serve` does at start: open_control_plane, timed end to end.
        from api.control import open_control_plane  # noqa: PLC0415

        _quiet_logging()
        gc.collect()
        rss0 = _rss()

        async def run() -> tuple[float, float, int]:
            cpu = time.process_time()
            start = time.perf_counter()
            control = await open_control_plane(_settings(path), clock=lambda: NOW)
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu
            count = len(control.index)
            await control.close()
            return elapsed, cpu, count

        elapsed, cpu, count = _uvloop_run(run())
        return {
            "open_s": elapsed,
            "open_cpu_s": cpu,
            "count": count,
            "rss_b": (_rss() - rss0) / count,
        }
    # The same steps one at a time: raw SQL read, Binding construction, index load, freeze.
    import store  # noqa: PLC0415
    from routing.index import BindingIndex  # noqa: PLC0415
    from store.repositories import _LOAD_COLUMNS  # noqa: PLC0415

    conn = sqlite3.connect(path)
    sql = f"SELECT {_LOAD_COLUMNS} FROM bindings WHERE unbound_at IS NULL"  # as the store
    sql_s = float("inf")
    for _ in range(2):  # the first pass also warms SQLite's schema and the OS page cache
        start = time.perf_counter()
        n = 0
        for _row in conn.execute(sql):
            n += 1
        sql_s = min(sql_s, time.perf_counter() - start)
    conn.close()

    async def load() -> Any:
        db = await store.Database.open(path)
        try:
            return await store.load_active_bindings(db, NOW)
        finally:
            await db.close()

    gc.disable()
    start = time.perf_counter()
    bindings = _uvloop_run(load())
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    BindingIndex().load(bindings)
    index_s = time.perf_counter() - start
    gc.enable()
    start = time.perf_counter()
    gc.freeze()
    freeze_s = time.perf_counter() - start
    return {
        "count": n,
        "sql_s": sql_s,
        "read_s": read_s,
        "index_s": index_s,
        "freeze_s": freeze_s,
    }


def section_load(db_path: Path, build_s: float) -> list[str]:
    steps = _child(["load", str(db_path), "steps"])
    opened = _child(["load", str(db_path), "open"])
    proposed = _child(["load", str(db_path), "proposed"])
    construct_s = steps["read_s"] - steps["sql_s"]
    _table(
        f"5. Start-up load of {steps['count']:,} active bindings (database built in {build_s:.1f} s"
        " with executemany; each measurement in a fresh interpreter)",
        ("step", "seconds", "/ SQL read"),
        [
            ("raw SQL read of the rows (reference)", f"{steps['sql_s']:.2f}", "1.0"),
            (
                "store.load_active_bindings: SQL + Binding construction",
                f"{steps['read_s']:.2f}",
                f"{steps['read_s'] / steps['sql_s']:.1f}",
            ),
            ("  of which Binding construction (difference)", f"{construct_s:.2f}", ""),
            ("BindingIndex.load", f"{steps['index_s']:.2f}", ""),
            ("gc.freeze", f"{steps['freeze_s']:.2f}", ""),
            (
                "api.control.open_control_plane, end to end",
                f"{opened['open_s']:.2f}",
                f"{opened['open_s'] / steps['sql_s']:.1f}",
            ),
            ("  its process CPU time (all threads)", f"{opened['open_cpu_s']:.2f}", ""),
            (
                "  what-if: ControlPlane.load with cached city and province keys",
                f"{proposed['open_s']:.2f}",
                f"{proposed['open_s'] / steps['sql_s']:.1f}",
            ),
        ],
    )
    print(
        f"  RSS after open_control_plane: {opened['rss_b']:.0f} bytes per binding"
        " (whole process delta)"
    )
    return [
        f"start-up load of {opened['count']:,} bindings {opened['open_s']:.2f} s  target ≤ 5 s"
        " (for 1,000,000)",
        f"memory per binding after open_control_plane {opened['rss_b']:.0f} B  target ≤ 400 B",
    ]


# =========================================================================================


def _run_child(argv: list[str]) -> int:
    kind = argv[0]
    if kind == "serve":
        _server_child(argv[1], argv[2], argv[3])
        return 0
    if kind == "client":
        port, pool_key, start, count, connections = argv[1:6]
        result = _uvloop_run(
            _client(
                int(port),
                pool_key,
                start=int(start),
                count=int(count),
                connections=int(connections),
            )
        )
    elif kind == "memory":
        result = _memory_lookup_child(argv[1], int(argv[2]))
    elif kind == "load":
        result = _load_child(argv[1], argv[2])
    else:
        raise SystemExit(f"unknown child {kind!r}")
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        return _run_child(args[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller counts (~1 min)")
    parser.add_argument("--only", default="durable,http,lookup,load")
    parser.add_argument("--binds", type=int, help="in-process binds per case and round")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, help="rounds of the in-process cases")
    parser.add_argument("--http-binds", type=int, help="HTTP binds per variant")
    parser.add_argument("--clients", type=int, default=2, help="HTTP client processes")
    parser.add_argument("--connections", type=int, default=32, help="per client process")
    parser.add_argument(
        "--http-variants",
        default="floor,h11,engine,asgi-httptools,httptools-fastnum-quiet,asgi-httptools-fastnum-quiet",
    )
    parser.add_argument("--bindings", type=int, help="bindings of the memory/lookup/load parts")
    parser.add_argument("--probes", type=int, default=200_000)
    options = parser.parse_args(args)
    quick = options.quick
    options.binds = options.binds or (2_000 if quick else 5_000)
    options.rounds = options.rounds or (1 if quick else 2)
    options.http_binds = options.http_binds or (1_000 if quick else 4_000)
    options.bindings = options.bindings or (200_000 if quick else 1_000_000)
    sections = set(options.only.split(","))
    print(
        f"bench/bind.py — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs,"
        f" load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    summary: list[str] = []
    with tempfile.TemporaryDirectory(prefix="maskline-bench-bind-") as tmp:
        workdir = Path(tmp)
        store_rate: float | None = None
        if "durable" in sections:
            lines, store_rate = section_durable(options, workdir)
            summary += lines
        if "http" in sections:
            summary += section_http(options, workdir, store_rate)
        if sections & {"lookup", "load"}:
            db_path = workdir / "load.sqlite3"
            start = time.perf_counter()
            _build_load_db(db_path, options.bindings)
            build_s = time.perf_counter() - start
            if "lookup" in sections:
                summary += section_lookup(options, db_path)
            if "load" in sections:
                summary += section_load(db_path, build_s)
    print("\nAgainst DESIGN's targets:")
    for line in summary:
        print(f"  {line}")
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
