"""Structured logging: JSON lines (or console lines) on stderr, phone numbers always masked.

``configure_logging`` sets up structlog for the project's own loggers and routes the standard
library's ``logging`` (asyncio, later uvicorn) through the same processors, so every line that
leaves the process has the same shape and goes through the same masking.

Masking applies to the event and to every string inside the values (nested dicts, lists and
tuples included, and exception tracebacks once rendered). Objects of other types are logged as
their masked ``str()``. Ints of seven or more digits are masked like a run of digits in text
(a phone number passed as an int must not slip through; a large counter pays in readability);
floats are left alone (timestamps and durations), so phone numbers are never logged as floats.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import io
import logging
import sys
import threading
from collections.abc import Mapping
from typing import Any, Final, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from routing.masking import mask_numbers_in_text

__all__ = [
    "BatchedLines",
    "configure_logging",
    "get_logger",
    "mask_event_dict",
    "reset_logging",
    "write_out_logs",
]

_LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_FORMATS: Final = ("json", "console")
# Keys that lead every line, in this order, so lines read the same from left to right.
_LEADING_KEYS: Final = ("timestamp", "level", "event", "logger")
_HANDLER_MARK: Final = "_maskline_handler"
_SEVEN_DIGITS: Final = 1_000_000
_SEVEN: Final = 7  # the shortest run of digits masked (routing.masking)
# Bumped by every configure_logging: loggers bound under an older configuration rebind.
_configuration = 0


def _mask_value(value: object) -> object:
    # The common exact types first (a log line is mostly short strings and small ints).
    if type(value) is int:
        return value if -_SEVEN_DIGITS < value < _SEVEN_DIGITS else mask_numbers_in_text(str(value))
    if value is None or type(value) is float or type(value) is bool:
        return value
    if isinstance(value, str):
        # Shorter than 7 characters, or letters only (call references): no number can be in it.
        if len(value) < _SEVEN or value.isalpha():
            return value
        return mask_numbers_in_text(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -_SEVEN_DIGITS < value < _SEVEN_DIGITS else mask_numbers_in_text(str(value))
    if isinstance(value, Mapping):
        return {_mask_value(k): _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask_value(item) for item in value]
    # Anything else would reach the renderer through repr()/str() unmasked (a dataclass holding
    # a number, an exception object): render it here and mask the text.
    return mask_numbers_in_text(str(value))


def mask_event_dict(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask phone numbers in the event and every value; fix key order."""
    masked: EventDict = {}
    for key in _LEADING_KEYS:
        if key in event_dict:
            masked[key] = _mask_value(event_dict[key])
    for key, value in event_dict.items():
        if key not in masked:
            masked[key] = _mask_value(value)
    return masked


_render_stack_info: Final = structlog.processors.StackInfoRenderer()
# The level a log method writes (structlog's add_log_level: the method's name, but these two).
_LEVEL_OF_METHOD: Final[Mapping[str, str]] = {"warn": "warning", "exception": "error"}


def _utc_timestamp() -> str:
    # What structlog's TimeStamper(fmt="iso", utc=True) writes.
    return datetime.datetime.now(tz=datetime.UTC).isoformat().replace("+00:00", "Z")


def _line_fields(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the line's fields, in one pass — what add_logger_name,
    add_log_level, TimeStamper(iso, utc), StackInfoRenderer, format_exc_info and
    :func:`mask_event_dict` make, in that order (a JSON line 16 → 11 µs; two lines per call
    on the call path). The stamped time, the level and the logger name are ours and are not
    masked; everything the caller passed is."""
    if "stack_info" in event_dict or "exc_info" in event_dict:
        event_dict = _render_stack_info(logger, method_name, event_dict)
        # Tracebacks become text before masking: exception messages carry numbers too.
        event_dict = structlog.processors.format_exc_info(logger, method_name, event_dict)
    level = _LEVEL_OF_METHOD.get(method_name, method_name)
    line: EventDict = {"timestamp": _utc_timestamp(), "level": level}
    if "event" in event_dict:
        line["event"] = _mask_value(event_dict["event"])
    line["logger"] = getattr(logger, "name", "")
    for key, value in event_dict.items():
        if key not in line:
            line[key] = _mask_value(value)
    return line


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that knows its name, for ``structlog.stdlib.add_logger_name``."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    """Logger factory: ``get_logger(name)`` passes the name through to the logger."""

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        name = args[0] if args and isinstance(args[0], str) else ""
        return _NamedWriteLogger(self._file, name)


def _renderer(fmt: str, stream: TextIO) -> Processor:
    if fmt == "json":
        # ensure_ascii=False keeps Chinese text readable in the log. The standard encoder's
        # spacing ("key": value, ...) is what log searches are written against (the e2e tests'
        # among them); orjson writes compact JSON, 4 µs a line faster, and was tried for that.
        return structlog.processors.JSONRenderer(ensure_ascii=False)
    return structlog.dev.ConsoleRenderer(colors=stream.isatty())


class BatchedLines(io.TextIOBase):
    """A text stream whose lines reach ``target`` in batches: every ``interval_s`` (a daemon
    thread), when ``max_bytes`` are waiting, and at exit.

    The serving process writes two JSON lines per call; flushed one by one that was a write
    system call each, ~4 % of the event loop's time at 500 calls/s. Batched, a line reaches the
    file or the journal at most ``interval_s`` later; what a kill -9 can lose is that much.
    ``flush()`` (which structlog and ``logging`` call after every line) only marks the lines as
    complete; :meth:`write_out` writes them.
    """

    def __init__(self, target: TextIO, *, interval_s: float, max_bytes: int = 256 * 1024) -> None:
        super().__init__()
        self._target = target
        self._interval_s = interval_s
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._stopped = threading.Event()
        # Not "_thread": mypyc (build_compiled.py) names the C field after it, and "__thread"
        # is a C keyword.
        self._writer_thread = threading.Thread(
            target=self._run, name="maskline-log-lines", daemon=True
        )
        self._writer_thread.start()
        atexit.register(self.close)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._target.isatty()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending.append(text)
            self._pending_bytes += len(text)
            # Full, or closed (a line logged after the exit hook ran): out at once.
            now = self._pending_bytes >= self._max_bytes or self._stopped.is_set()
        if now:
            self.write_out()
        return len(text)

    def flush(self) -> None:
        """Nothing: lines go out in batches (see the class docstring)."""

    def write_out(self) -> None:
        """Write every waiting line to the target now."""
        with self._lock:
            if not self._pending:
                return
            text = "".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            self._target.write(text)
            self._target.flush()

    def close(self) -> None:
        """Stop the thread, write what waits (also run at exit)."""
        if not self._stopped.is_set():
            self._stopped.set()
            with contextlib.suppress(OSError, ValueError):  # the target may be closed already
                self.write_out()
        super().close()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self.write_out()
            except (OSError, ValueError):  # the target went away (closed pipe, shut down)
                return


_batched: BatchedLines | None = None


def write_out_logs() -> None:
    """Write the lines a batching configuration still holds (the serving process, when it ends)."""
    if _batched is not None:
        _batched.write_out()


def configure_logging(
    level: str, fmt: str, *, stream: TextIO | None = None, batch_interval_s: float | None = None
) -> None:
    """Configure structlog and the stdlib root logger.

    ``level`` is one of debug/info/warning/error/critical, ``fmt`` is ``json`` or ``console``.
    Lines go to ``stream`` (default: ``sys.stderr`` at the time of the call), through a
    :class:`BatchedLines` written out every ``batch_interval_s`` when that is given (the
    serving process). May be called again to reconfigure (tests do).
    """
    level_no = _LEVELS.get(level.lower())
    if level_no is None:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(_LEVELS)}")
    if fmt not in _FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(_FORMATS)}")
    global _configuration  # noqa: PLW0603  # loggers rebind after a reconfiguration
    _configuration += 1
    global _batched  # noqa: PLW0603  # one batching stream at a time
    if _batched is not None:
        _batched.close()  # what waits goes out; the new configuration writes from here on
        _batched = None
    out: TextIO = sys.stderr if stream is None else stream
    if batch_interval_s is not None:
        _batched = BatchedLines(out, interval_s=batch_interval_s)
        out = cast(TextIO, _batched)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")
    renderer = _renderer(fmt, out)

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _line_fields,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=_NamedWriteLoggerFactory(out),
        # Not cached: loggers created at import time must follow a later reconfiguration
        # (tests reconfigure per test). The cost is one small bind per log call.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            # ``extra={...}`` of stdlib calls (the relay's latching lines): kept, then masked.
            structlog.stdlib.ExtraAdder(),
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            timestamper,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            mask_event_dict,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    # Replace only a handler installed by an earlier call; others (pytest's caplog) stay.
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_no)


def reset_logging() -> None:
    """Back to structlog's defaults with no handler of ours on the root logger (tests): what
    :func:`configure_logging` set up is undone, and loggers bound under it bind again."""
    global _configuration  # noqa: PLW0603  # loggers rebind after a reconfiguration
    _configuration += 1
    global _batched  # noqa: PLW0603  # one batching stream at a time
    if _batched is not None:
        _batched.close()
        _batched = None
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


class _ConfiguredLogger:
    """What :func:`get_logger` returns: the structlog logger bound once per configuration.

    structlog's lazy proxy (``cache_logger_on_first_use=False``) binds a new logger on every
    call — ~20 of the ~40 µs a JSON line cost, twice per call on the call path. This binds on
    first use and again only after :func:`configure_logging` ran (tests reconfigure per test).
    """

    __slots__ = ("_bound", "_configuration", "_initial", "_name")

    def __init__(self, name: str, initial: dict[str, Any]) -> None:
        self._name = name
        self._initial = initial
        self._bound: FilteringBoundLogger | None = None
        self._configuration = -1

    def __getattr__(self, attribute: str) -> Any:
        bound = self._bound
        if bound is None or self._configuration != _configuration:
            # The name travels as a logger-factory argument: "logger" is a reserved keyword
            # of structlog.get_logger.
            proxy = structlog.get_logger(self._name, **self._initial)
            bound = self._bound = cast(FilteringBoundLogger, proxy.bind())
            self._configuration = _configuration
        return getattr(bound, attribute)


def get_logger(name: str, **initial: Any) -> FilteringBoundLogger:
    """A structlog logger whose lines carry ``logger=name`` plus ``initial`` key-values."""
    return cast(FilteringBoundLogger, _ConfiguredLogger(name, initial))
