"""Process wiring for ``maskline serve``: one uvloop event loop, SIP on UDP and TCP, clean stop.

Media features wired here (engine.b2bua uses them through injected callables, so it imports
neither the API nor the store): the announcement and IVR prompts of ``[audio] prompts_dir``
(missing defaults made with espeak-ng at start; if that fails, calls still work, announcements
are skipped), and enterprise ringback — the binding's code, else its pool's, resolved to a
tenant's tone file under ``[audio] ringback_dir`` (pools are cached by the control plane).

Metrics (``engine.metrics``, ``GET /metrics`` on the API listener): made before the API starts,
the engine's parts attached as they are built. The B2BUA's call events go to the reports service
and the metrics alike (:class:`CallEventsFanOut`); each call's record is counted on its way to
the store (:func:`observed_write`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import resource
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from api.app import create_app
from api.control import ControlPlane, open_control_plane
from api.errors import ControlError
from api.recordings import configure_recordings, run_retention
from api.report_push import ReportPusher
from api.reports import attach_reports
from api.ringback import attach_ringback
from api.server import start_api
from api.sms import attach_sms
from billing.ledger_run import run_billing
from config import Settings
from engine import gc_policy
from engine.b2bua import B2bua, CallEvents, RingbackSource
from engine.calls import Call
from engine.logging import get_logger
from engine.metrics import CountingMediaRelay, Metrics
from engine.overload import OverloadCounters
from engine.records import CallRecorder
from engine.signalling import Signalling
from engine.sms_gateway import TEXT_PLAIN, SmsGateway
from engine.transport import SipTransport
from media.audio import AudioError
from media.dtmf import INFO_CONTENT_TYPES
from media.ports import PortAllocator
from media.prompts import PromptLibrary, ensure_prompts
from media.relay import DEFAULT_REUSE_AFTER_S, DEFAULT_SPARE_PAIRS, parked_pairs_limit
from media.ringback import RingbackLibrary, ringback_tone_for
from routing.model import Binding
from sip.compiled_guard import compiled_modules
from sip.endpoint import Endpoint, EndpointStats
from sip.reliable import OPTION_TAG as REL_OPTION_TAG
from sip.session_timer import OPTION_TAG
from sip.transaction import TimerConfig
from sip.uas import DEFAULT_METHODS, UasPolicy
from store.cdr import CdrWriter
from store.records import CallRecord

_log = get_logger("engine.server")

# What an unlimited open-file limit counts as when the relay's share of it is worked out.
_OPEN_FILES_UNLIMITED = 1 << 20


def run(settings: Settings) -> int:
    """Run the engine until SIGTERM/SIGINT; returns the process exit code."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop  # noqa: PLC0415

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio is the fallback
        loop_factory = asyncio.new_event_loop
    raise_open_files_limit()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(settings))
    except OSError as error:
        _log.error("startup_failed", error=str(error))
        return 1
    return 0


# An INVITE's 100 (Trying) goes out only when nothing else did within this time (RFC 3261
# §17.2.1 allows leaving it out when the answer comes within 200 ms), or at once when the caller
# retransmits: a callee ringing quickly costs no 100 to build and send (~5 % of a call's work).
TRYING_DELAY_S = 0.2


def build_endpoint(settings: Settings) -> Endpoint:
    """The SIP endpoint configured from ``[sip]``."""
    sip = settings.sip
    return Endpoint(
        local_host=sip.listen_host,
        local_port=sip.listen_port,
        timers=TimerConfig(
            t1_s=sip.t1_ms / 1000,
            t2_s=sip.t2_ms / 1000,
            t4_s=sip.t4_ms / 1000,
            trying_delay_s=TRYING_DELAY_S,
        ),
        max_message_bytes=sip.max_message_bytes,
        # RFC 4028 session timers and RFC 3262 100rel on each leg: Require: timer or 100rel
        # is served, not answered 420. INFO bodies with DTMF reach the extension IVR; other
        # bodies than SDP and those are answered 415 by the UAS checks. MESSAGE (SMS to X,
        # engine.sms_gateway) takes text/plain only (3GPP SMS TPDUs get 415 with Accept).
        policy=UasPolicy(
            allowed_methods=DEFAULT_METHODS | {"MESSAGE"},
            supported_extensions=frozenset({OPTION_TAG, REL_OPTION_TAG}),
            accepted_content_types=frozenset({"application/sdp", *INFO_CONTENT_TYPES}),
            content_types_by_method={"MESSAGE": frozenset({TEXT_PLAIN})},
        ),
    )


async def load_prompts(prompts_dir: Path, *, voice: str) -> PromptLibrary:
    """The prompts, the missing defaults made first (espeak-ng, in a worker thread).

    A failure to make them (espeak-ng missing, directory not writable) is logged and the
    server runs on: a prompt without a file plays as nothing, so intercepted calls get their
    final response at once, as without announcements.
    """
    try:
        await asyncio.to_thread(ensure_prompts, prompts_dir, voice=voice)
    except (AudioError, OSError) as error:
        _log.error("prompts_unavailable", prompts_dir=str(prompts_dir), error=str(error))
    return await asyncio.to_thread(PromptLibrary, prompts_dir)


def ringback_source(control: ControlPlane, library: RingbackLibrary) -> RingbackSource:
    """The enterprise ringback of a routed call: binding code first, else the pool's (SPEC
    §2), as the payloads of the pool's tenant's tone; empty for none."""

    async def frames(binding: Binding, call_type: int, payload_type: int) -> Sequence[bytes]:
        try:
            pool = await control.get_pool(binding.pool_key)
        except ControlError:
            return ()
        tone = ringback_tone_for(
            binding.ringback, pool.ringback, binding_type=binding.type, call_type=call_type
        )
        if tone is None:
            return ()
        return library.frames(pool.tenant_id, tone, payload_type)

    return frames


class CallEventsFanOut:
    """A ``CallEvents`` telling each of ``listeners`` in turn (the reports, then the metrics)."""

    __slots__ = ("_listeners",)

    def __init__(self, *listeners: CallEvents) -> None:
        self._listeners = listeners

    def call_started(self, call: Call) -> None:
        """Routing outcome known."""
        for listener in self._listeners:
            listener.call_started(call)

    def call_ringing(self, call: Call) -> None:
        """The callee rings."""
        for listener in self._listeners:
            listener.call_ringing(call)

    def call_answered(self, call: Call) -> None:
        """The callee answered."""
        for listener in self._listeners:
            listener.call_answered(call)


def observed_write(
    write: Callable[[CallRecord], Awaitable[None]], observe: Callable[[CallRecord], None]
) -> Callable[[CallRecord], Awaitable[None]]:
    """``write`` (the durable write of a call record), ``observe(record)`` first: the call has
    ended whether or not its record then reaches the disk."""

    async def write_record(record: CallRecord) -> None:
        observe(record)
        await write(record)

    return write_record


def raise_open_files_limit() -> int:
    """Lift the soft open-file limit to the hard one (as Go's runtime does) and return it.

    Every call holds two RTP sockets and, for reuse, the sockets of calls that ended in the last
    seconds stay open too (media.relay); a soft limit of 1,024, the usual default outside a
    systemd unit with LimitNOFILE, would cap the engine far below its call rate.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if resource.RLIM_INFINITY in (soft, hard) or soft >= hard:
        # Linux never reports an unlimited NOFILE (fs.nr_open bounds it); nothing to lift.
        return _open_files_limit()
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as error:  # e.g. above fs.nr_open: keep what we have
        _log.warning("open_files_limit_kept", soft=soft, hard=hard, error=str(error))
        return soft
    _log.info("open_files_limit_raised", soft=hard, was=soft)
    return hard


def _open_files_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _OPEN_FILES_UNLIMITED if soft == resource.RLIM_INFINITY else soft


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None)."""
    loop = asyncio.get_running_loop()
    stop = stop or _stop_on_signals(loop)
    metrics = Metrics(clock=time.monotonic)
    # --- control plane (api/): database + binding index, loaded before SIP listens ---------
    control = await open_control_plane(settings)
    # Tenants' reports (SPEC §6): the outbox writer now, the push workers once SIP is up.
    reports = attach_reports(control)
    # SMS (SPEC §5): the service the REST routes and the SIP gateway share (api.sms).
    sms_service = attach_sms(control, reports=reports, settings=settings.sms)
    index = control.index
    metrics.attach(db=control.db, reports=reports, bindings_indexed=index.__len__)
    # Signed recording URLs and the download route read [recording] (directory, URL lifetime).
    configure_recordings(control, settings.recording)
    audio = settings.audio
    attach_ringback(control, ringback_dir=audio.ringback_dir, voice=audio.tts_voice)
    metrics.start(loop)  # the event-loop lag timer
    try:
        api_server = await start_api(
            create_app(control, operator_token=settings.api.operator_token, metrics=metrics),
            settings.api.listen_host,
            settings.api.listen_port,
        )
    except BaseException:
        metrics.stop()
        await control.close()
        raise
    # --- end control plane ----------------------------------------------------------------
    try:
        prompts = await load_prompts(audio.prompts_dir, voice=audio.tts_voice)
        # Every pool in the control plane's cache now: the ringback lookup of a call never
        # reads the database (a pool created later is read once, on its first call).
        await control.list_pools()
        endpoint = build_endpoint(settings)
        signalling = Signalling(endpoint, clock=loop.time)
        transport = SipTransport(
            endpoint,
            on_events=signalling.handle_events,
            loop=loop,
            max_tcp_connections=settings.overload.max_tcp_connections,
        )
        media = settings.media
        relay = CountingMediaRelay(
            media.address,
            PortAllocator(media.port_min, media.port_max),
            loop=loop,
            reuse_after_s=DEFAULT_REUSE_AFTER_S,  # sockets of ended calls reused (media.relay)
            max_parked_pairs=parked_pairs_limit(
                port_count=media.port_max - media.port_min + 1,
                open_files_limit=_open_files_limit(),
            ),
            spare_pairs=DEFAULT_SPARE_PAIRS,  # bound ahead for a rising load (media.relay)
        )
        cdr = CdrWriter(settings.cdr.dir, settings.time.tzinfo)
        signalling.b2bua = b2bua = B2bua(
            endpoint=endpoint,
            index=control.index,
            relay=relay,
            settings=settings,
            record_sink=CallRecorder(
                control.db,
                cdr,
                recording_dir=settings.recording.dir,
                zone=settings.time.tzinfo,
                write_record=observed_write(reports.call_ended, metrics.calls.call_ended),
            ),
            flush=transport.flush,
            clock=loop.time,
            wall_clock=time.time,
            x_usable=control.inventory.is_bindable,
            prompts=prompts,
            ringback=ringback_source(control, RingbackLibrary(audio.ringback_dir)),
            events=CallEventsFanOut(reports, metrics.calls),
        )
        # SMS: MESSAGE to X in, smart SMS out over the trunk (engine.sms_gateway); what becomes
        # of a message is the SMS service's decision.
        signalling.sms = sms = SmsGateway(
            endpoint=endpoint,
            settings=settings,
            flush=transport.flush,
            clock=loop.time,
            wall_clock=time.time,
            receive=sms_service.receive,
        )
        sms_service.attach_sender(sms.send)
        metrics.attach(
            endpoint=endpoint,
            relay=relay,
            active_calls=lambda: b2bua.active_calls,
            overload_refused=lambda: _overload_refused(b2bua.overload.counters, transport),
            sip_not_sent=transport.not_sent,
        )
        await transport.start(settings.sip.listen_host, settings.sip.listen_port)
        # Which modules run compiled (build_compiled.py, `make compiled`): none means pure Python.
        compiled = compiled_modules()
        _log.info(
            "sip_listening",
            address=str(settings.sip.listen),
            transports=["udp", "tcp"],
            compiled=len(compiled),
            compiled_modules=list(compiled),
        )
        pusher = ReportPusher(reports)
        await pusher.start()  # reports left pending by the last run go first
        await reports.warnings.check()  # pool thresholds crossed while the server was down
        # Periodic jobs: recordings older than [recording] retention_days are deleted; calls
        # are rated and monthly rent billed into the ledger (billing.ledger_run).
        jobs = [
            asyncio.create_task(run_retention(control.db, settings.recording)),
            asyncio.create_task(run_billing(control.db, settings)),
            asyncio.create_task(sms_service.run_periodic()),  # resend, confirm expiry, retention
            asyncio.create_task(
                gc_policy.FullCollections(
                    interval_s=settings.overload.full_gc_interval_s,
                    max_pause_s=settings.overload.max_gc_pause_ms / 1000,
                ).run()
            ),
        ]
        # Serving from here on: the start-up's objects are frozen (never walked again), full
        # collections only by schedule (engine.gc_policy explains why).
        gc.collect()
        gc.freeze()
        gc_policy.tune_for_serving()
        try:
            await stop.wait()
        finally:
            _log.info("stopping", **_stats(endpoint.stats))
            for job in jobs:
                job.cancel()
            for job in jobs:
                with contextlib.suppress(asyncio.CancelledError):
                    await job
            # SMS being handled or sent finish while SIP is up (bounded); then the calls,
            # released while SIP can still send their BYEs; then stop listening.
            await sms_service.close()
            await sms.close()
            await b2bua.close()
            transport.close()
            await transport.wait_closed()
            await relay.close_all()
            await cdr.close()
            # Reports last: every call's end report is in the outbox by now. A push in flight
            # gets a moment, then is cut and sent again after the restart.
            await pusher.stop()
            await reports.close()
    finally:
        # --- control plane shutdown, after SIP: API first, then the database -----------------
        await api_server.stop()
        metrics.stop()
        await control.close()
        _log.info("stopped")


def _stop_on_signals(loop: asyncio.AbstractEventLoop) -> asyncio.Event:
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    return stop


def _overload_refused(counters: OverloadCounters, transport: SipTransport) -> dict[str, int]:
    """What overload protection refused, by reason: the guard's requests, and the inbound TCP
    connections closed at ``[overload] max_tcp_connections``."""
    return {**counters.as_dict(), "tcp_connections": transport.tcp_refused}


def _stats(stats: EndpointStats) -> dict[str, int]:
    # dataclasses.fields, not __slots__: a class compiled with mypyc has no __slots__ attribute.
    return {field.name: getattr(stats, field.name) for field in dataclasses.fields(stats)}
