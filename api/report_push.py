"""Push delivery of the reports (SPEC §6): JSON arrays POSTed to each tenant's URLs.

One worker task per tenant with push URLs, so a slow or dead receiver of one tenant never delays
another's reports. A worker sends its tenant's undelivered reports of the pushed types in
``seq`` order, as JSON arrays of at most ``batch_max`` reports, one run of consecutive reports
with the same URL per request:

* an answer 2xx delivers the batch (``delivered_at``); the next batch follows at once;
* anything else — another status, a refused connection, a timeout — is a failure: the batch's
  rows get ``attempts + 1``, ``last_error`` and ``next_attempt_at`` = now + back-off
  (exponential from ``backoff_base_s``, capped at ``backoff_max_s``, "equal jitter": between
  half and all of it), persisted, so a restarted process waits the same and resumes;
* the worker retries that same batch first: a tenant's reports never overtake each other, so a
  call's reports arrive in order (head-of-line blocking is per tenant only).

At least once: a batch the receiver took but whose 2xx was lost (timeout, crash before the
``delivered_at`` commit) is sent again with the same ids. Reports are never re-serialised: the
stored JSON text is sent as written.

Wiring (engine/server.py): ``pusher = ReportPusher(reports_of(control)); await
pusher.start()`` once the control plane is loaded, ``await pusher.stop()`` at shutdown before
the database closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import httpx

from api.reports import CallReports
from engine.logging import get_logger
from store import outbox
from store.outbox import DEFAULT_URL_TYPE, DeliveryVia, QueuedReport

__all__ = ["PushSettings", "ReportPusher", "backoff_s", "batches_by_url"]

_log = get_logger("api.report_push")

_USER_AGENT: Final = "maskline-reports/1"


@dataclass(frozen=True, slots=True)
class PushSettings:
    """How reports are pushed (defaults for production; tests shorten the times)."""

    batch_max: int = 100  # reports per request
    timeout_s: float = 10.0  # per request: connect, send, first byte, body
    backoff_base_s: float = 1.0  # first retry after 0.5..1 s
    backoff_max_s: float = 300.0  # retries at least every 5 min
    idle_check_s: float = 60.0  # a worker looks at its queue at least this often
    retention_delivered_s: float = 3 * 86_400.0  # delivered rows kept this long
    retention_undelivered_s: float = 7 * 86_400.0  # undelivered rows expire after this
    sweep_interval_s: float = 3_600.0
    stop_grace_s: float = 2.0  # at stop, requests in flight get this long to finish


def backoff_s(
    attempts: int, settings: PushSettings, rand: Callable[[], float] = random.random
) -> float:
    """The pause before the next try after ``attempts`` failed ones (>= 1): exponential,
    capped, with "equal jitter" (half fixed, half random) so that many tenants' retries after
    one outage do not arrive together."""
    exponent = min(max(attempts, 1) - 1, 62)
    ceiling = min(settings.backoff_max_s, settings.backoff_base_s * (2.0**exponent))
    return ceiling / 2 + rand() * ceiling / 2


def batches_by_url(
    rows: Sequence[QueuedReport], urls: dict[str, str], now: float, batch_max: int
) -> tuple[str, list[QueuedReport]] | None:
    """The next request: the leading due rows that share one URL (at most ``batch_max``).

    None when the first row is not due yet (back-off or pull lease) or has no URL.
    """
    batch: list[QueuedReport] = []
    url: str | None = None
    for row in rows:
        row_url = urls.get(row.type, urls.get(DEFAULT_URL_TYPE))
        if row.next_attempt_at > now or row_url is None:
            break
        if url is None:
            url = row_url
        elif row_url != url:
            break
        batch.append(row)
        if len(batch) >= batch_max:
            break
    if url is None or not batch:
        return None
    return url, batch


def _where(url: str) -> str:
    """Scheme, host and port of ``url`` for logs (a path or query may hold a token)."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


@dataclass(slots=True)
class _Worker:
    tenant_id: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    sending: bool = False


class ReportPusher:
    """Pushes every tenant's reports of its pushed types; see the module docstring."""

    def __init__(
        self,
        reports: CallReports,
        settings: PushSettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        """``transport``: an httpx transport (tests); None: real HTTP."""
        self.reports = reports
        self.settings = PushSettings() if settings is None else settings
        self._transport = transport
        self._rand = rand
        self._client: httpx.AsyncClient | None = None
        self._urls: dict[str, dict[str, str]] = {}  # tenant → report type → URL
        self._workers: dict[str, _Worker] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._reloads: set[asyncio.Task[None]] = set()  # referenced until done
        self._stopping = False
        # Observability: requests made and failed, reports delivered.
        self.requests = 0
        self.failures = 0
        self.delivered = 0

    @property
    def clock(self) -> Callable[[], float]:
        """UTC epoch seconds (the reports service's clock)."""
        return self.reports.clock

    async def start(self) -> None:
        """Load the push URLs, start a worker per tenant that has some, and listen for new
        reports and URL changes. Reports pending from an earlier run are sent first."""
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(self.settings.timeout_s),
            # Each tenant's worker holds at most one request at a time: no shared pool limit
            # may make one tenant wait for another's slow receiver.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=200),
            headers={"user-agent": _USER_AGENT},
            follow_redirects=False,
        )
        for url in await outbox.list_push_urls(self.reports.db):
            self._urls.setdefault(url.tenant_id, {})[url.report_type] = url.url
        self.reports.on_written(self._reports_written)
        self.reports.on_urls_changed(self._urls_changed)
        for tenant_id in self._urls:
            self._ensure_worker(tenant_id)
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="maskline-report-sweep")
        _log.info("report_push_started", tenants=len(self._urls))

    async def stop(self) -> None:
        """Stop the workers: a request in flight gets ``stop_grace_s`` to be answered (and
        recorded); after that it is cut and its reports go again after the next start."""
        self._stopping = True
        for worker in self._workers.values():
            worker.wake.set()
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        if self._sweeper is not None:
            self._sweeper.cancel()
            tasks.append(self._sweeper)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.settings.stop_grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        _log.info("report_push_stopped", requests=self.requests, delivered=self.delivered)

    # --------------------------------------------------------------------- listeners

    def _reports_written(self, tenants: set[str | None]) -> None:
        for tenant_id in tenants:
            if tenant_id is not None and tenant_id in self._urls:
                self._ensure_worker(tenant_id).wake.set()

    def _urls_changed(self, tenant_id: str) -> None:
        self._spawn_reload(tenant_id)

    def _spawn_reload(self, tenant_id: str) -> None:
        async def reload() -> None:
            urls = await outbox.list_push_urls(self.reports.db, tenant_id)
            if urls:
                self._urls[tenant_id] = {u.report_type: u.url for u in urls}
                self._ensure_worker(tenant_id).wake.set()
            else:
                self._urls.pop(tenant_id, None)
                worker = self._workers.get(tenant_id)
                if worker is not None:
                    worker.wake.set()

        if not self._stopping:
            task = asyncio.get_running_loop().create_task(reload())
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    # --------------------------------------------------------------------- workers

    def _ensure_worker(self, tenant_id: str) -> _Worker:
        worker = self._workers.get(tenant_id)
        if worker is None:
            worker = self._workers[tenant_id] = _Worker(tenant_id)
        if (worker.task is None or worker.task.done()) and not self._stopping:
            worker.task = asyncio.get_running_loop().create_task(
                self._run(worker), name=f"maskline-report-push-{tenant_id}"
            )
        return worker

    async def _run(self, worker: _Worker) -> None:
        try:
            while not self._stopping:
                pause = await self._step(worker)
                if pause is None:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.wake.wait(), timeout=pause)
        except asyncio.CancelledError:
            raise
        except Exception:  # never expected: log, and let the next report restart the worker
            _log.exception("report_push_worker_failed", tenant_id=worker.tenant_id)

    async def _step(self, worker: _Worker) -> float | None:
        """Send the next batch; None to go on at once, else how long to wait for news."""
        tenant_id = worker.tenant_id
        worker.wake.clear()  # before reading: a report written after the read wakes us again
        urls = self._urls.get(tenant_id)
        idle = self.settings.idle_check_s
        if not urls:
            return idle
        types = None if DEFAULT_URL_TYPE in urls else frozenset(urls)
        limit = self.settings.batch_max

        def read(conn: sqlite3.Connection) -> list[QueuedReport]:
            return outbox.pending_rows(conn, tenant_id, types, limit)

        rows = await self.reports.db.read(read)
        if not rows:
            return idle
        now = self.clock()
        request = batches_by_url(rows, urls, now, limit)
        if request is None:
            return max(0.0, min(idle, rows[0].next_attempt_at - now))
        url, batch = request
        error = await self._post(url, batch)
        seqs = [row.seq for row in batch]
        if error is None:
            await self.reports.db.write(
                lambda conn: outbox.mark_delivered_rows(
                    conn, seqs, now=self.clock(), via=DeliveryVia.PUSH
                ),
                in_loop=True,  # one UPDATE of a push batch's rows: short, on every push
            )
            self.delivered += len(batch)
            return None
        self.failures += 1
        attempts = max(row.attempts for row in batch) + 1
        delay = backoff_s(attempts, self.settings, self._rand)
        retry_at = self.clock() + delay
        await self.reports.db.write(
            lambda conn: outbox.mark_failed_rows(conn, seqs, next_attempt_at=retry_at, error=error)
        )
        _log.warning(
            "report_push_failed",
            tenant_id=tenant_id,
            receiver=_where(url),
            reports=len(batch),
            attempts=attempts,
            retry_in_s=round(delay, 2),
            error=error,
        )
        return None

    async def _post(self, url: str, batch: Sequence[QueuedReport]) -> str | None:
        """POST the batch as a JSON array; None when the receiver answered 2xx, else why not."""
        assert self._client is not None
        body = ("[" + ",".join(row.payload for row in batch) + "]").encode("utf-8")
        self.requests += 1
        try:
            response = await self._client.post(
                url, content=body, headers={"content-type": "application/json; charset=utf-8"}
            )
        except httpx.TimeoutException:
            return f"timeout after {self.settings.timeout_s:g} s"
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"[:300]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    # --------------------------------------------------------------------- retention

    async def _sweep_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:
                _log.exception("report_sweep_failed")

    async def sweep(self) -> tuple[int, int]:
        """Delete old delivered reports and expire undelivered ones past their retention."""
        now = self.clock()
        delivered_before = now - self.settings.retention_delivered_s
        created_before = now - self.settings.retention_undelivered_s
        removed, expired = await self.reports.db.write(
            lambda conn: outbox.sweep_rows(
                conn, delivered_before=delivered_before, created_before=created_before
            )
        )
        if removed or expired:
            _log.info("reports_swept", delivered_removed=removed, undelivered_expired=expired)
        return removed, expired
