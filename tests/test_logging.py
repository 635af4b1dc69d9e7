"""engine.logging: JSON lines on the configured stream, phone numbers masked everywhere."""

import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import structlog
from hypothesis import example, given, settings
from hypothesis import strategies as st
from structlog.typing import Processor

from engine.logging import BatchedLines, configure_logging, get_logger, reset_logging
from routing.masking import mask_numbers_in_text


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    # Leave the process as other tests expect it: default structlog, no handler of ours on
    # root, and no logger still bound to this test's stream.
    reset_logging()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_shape(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream=stream)
    get_logger("test.shape").info("call started", call_id="abc", legs=2)
    [line] = lines(stream)
    assert list(line)[:4] == ["timestamp", "level", "event", "logger"]
    assert line["level"] == "info"
    assert line["event"] == "call started"
    assert line["logger"] == "test.shape"
    assert line["call_id"] == "abc"
    assert line["legs"] == 2
    stamp = datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00"))
    offset = stamp.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 0


def test_json_lines_keep_chinese_text_and_a_lone_surrogate(
    stream: io.StringIO,
) -> None:
    configure_logging("info", "json", stream=stream)
    log = get_logger("test.text")
    log.info("city", city="北京", ratio=0.25, keys={1: "one"}, flags=(True, None))
    # A lone surrogate (a peer's undecodable byte, decoded with surrogateescape): still a line.
    log.info("odd user", user="ab\udcffcd")
    raw = stream.getvalue().splitlines()
    assert '"city": "北京"' in raw[0]  # as it is, not as \u escapes; the encoder's spacing
    first, second = lines(stream)
    assert (first["city"], first["ratio"], first["keys"], first["flags"]) == (
        "北京",
        0.25,
        {"1": "one"},
        [True, None],
    )
    assert second["event"] == "odd user"
    assert second["user"] == "ab\udcffcd"


def test_numbers_masked_in_event_values_and_nested(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream=stream)
    get_logger("test.mask", caller="13800138000").info(
        "INVITE from 13800138000 to +8613912345678",
        callee="+86 139 1234 5678",
        headers={"From": "<sip:13800138000@10.0.0.1>", "13800138000": "key too"},
        targets=["13912345678", ("13700137000",)],
        path=Path("/var/rec/13800138000.wav"),
    )
    raw = stream.getvalue()
    for digits in ("13800138000", "13912345678", "13700137000"):
        assert digits not in raw
    [line] = lines(stream)
    assert line["event"] == "INVITE from 138****8000 to +86139****5678"
    assert line["caller"] == "138****8000"
    assert line["callee"] == "+86139****5678"
    assert line["headers"] == {"From": "<sip:138****8000@10.0.0.1>", "138****8000": "key too"}
    assert line["targets"] == ["139****5678", ["137****7000"]]
    assert line["path"] == "/var/rec/138****8000.wav"


def test_numbers_logged_as_ints_are_masked_small_ints_and_floats_are_not(
    stream: io.StringIO,
) -> None:
    configure_logging("info", "json", stream=stream)
    get_logger("test.ints").info(
        "counters", caller=13800138000, nested={"b": [8613912345678]}, packets=999_999,
        started=1_900_000_000.25, legs=2, ok=True,
    )  # fmt: skip
    raw = stream.getvalue()
    assert "13800138000" not in raw and "8613912345678" not in raw
    [line] = lines(stream)
    assert line["caller"] == "138****8000"
    assert line["nested"] == {"b": ["861******5678"]}
    assert (line["packets"], line["started"], line["legs"], line["ok"]) == (
        999_999, 1_900_000_000.25, 2, True,
    )  # fmt: skip


def test_exception_text_masked(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream=stream)
    try:
        raise RuntimeError("no binding for 13800138000")
    except RuntimeError:
        get_logger("test.exc").exception("routing failed")
    [line] = lines(stream)
    assert "RuntimeError: no binding for 138****8000" in str(line["exception"])
    assert "13800138000" not in stream.getvalue()


def test_level_filters(stream: io.StringIO) -> None:
    configure_logging("warning", "json", stream=stream)
    log = get_logger("test.level")
    log.info("dropped")
    log.warning("kept")
    assert [line["event"] for line in lines(stream)] == ["kept"]


def test_stdlib_logging_goes_through_the_same_pipeline(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream=stream)
    logging.getLogger("asyncio").warning("peer %s misbehaved", "13800138000")
    [line] = lines(stream)
    assert line["event"] == "peer 138****8000 misbehaved"
    assert line["logger"] == "asyncio"
    assert line["level"] == "warning"


def test_stdlib_extra_fields_are_kept_and_masked(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream=stream)
    logging.getLogger("test.extra").warning(
        "rtp latched", extra={"session": "c1", "side": "a", "peer": "13800138000"}
    )
    [line] = lines(stream)
    assert (line["session"], line["side"], line["peer"]) == ("c1", "a", "138****8000")


def test_reconfigure_does_not_duplicate_stdlib_lines(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream=io.StringIO())
    configure_logging("info", "json", stream=stream)
    logging.getLogger("x").warning("once")
    assert len(lines(stream)) == 1


def test_logger_made_before_configure_follows_it(stream: io.StringIO) -> None:
    early = get_logger("test.early")
    configure_logging("info", "json", stream=stream)
    early.info("hello")
    assert lines(stream)[0]["logger"] == "test.early"


def test_console_format_masks(stream: io.StringIO) -> None:
    configure_logging("info", "console", stream=stream)
    get_logger("test.console").info("call 13800138000", peer="+8613912345678")
    out = stream.getvalue()
    assert "138****8000" in out
    assert "+86139****5678" in out
    assert "13800138000" not in out


@pytest.mark.parametrize(("level", "fmt"), [("loud", "json"), ("info", "xml")])
def test_bad_arguments(level: str, fmt: str) -> None:
    with pytest.raises(ValueError, match="unknown log"):
        configure_logging(level, fmt, stream=io.StringIO())


def test_batched_lines_leave_together_after_the_interval_and_at_close() -> None:
    target = io.StringIO()
    lines = BatchedLines(target, interval_s=0.05)
    try:
        lines.write('{"event": "one"}\n')
        lines.flush()  # what structlog does after each line: nothing goes out yet
        lines.write('{"event": "two"}\n')
        assert target.getvalue() == ""
        deadline = time.monotonic() + 5
        while not target.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert target.getvalue() == '{"event": "one"}\n{"event": "two"}\n'
        lines.write('{"event": "three"}\n')
    finally:
        lines.close()
    assert target.getvalue().endswith('{"event": "three"}\n')  # close writes what waited
    lines.write('{"event": "late"}\n')  # after close (the exit hook ran): written at once
    assert target.getvalue().endswith('{"event": "late"}\n')


def test_batched_lines_write_out_at_once_when_the_batch_is_full() -> None:
    target = io.StringIO()
    lines = BatchedLines(target, interval_s=3600, max_bytes=100)
    try:
        lines.write("x" * 60 + "\n")
        assert target.getvalue() == ""
        lines.write("y" * 60 + "\n")
        assert target.getvalue() == "x" * 60 + "\n" + "y" * 60 + "\n"
    finally:
        lines.close()


def test_the_serving_configuration_batches_structlog_lines() -> None:
    target = io.StringIO()
    configure_logging("info", "json", stream=target, batch_interval_s=3600)
    try:
        get_logger("test.batch").info("queued", n=1)
        assert target.getvalue() == ""
    finally:
        configure_logging("info", "json", stream=io.StringIO())  # closes the batch: written out
        reset_logging()  # as the stream fixture: later tests log to their own capture
    (line,) = target.getvalue().splitlines()
    assert json.loads(line)["event"] == "queued"


def _exception_info() -> tuple[type[BaseException], BaseException, object]:
    try:
        raise ValueError("callee +8613800138000 unreachable")
    except ValueError as error:
        return (ValueError, error, error.__traceback__)


@pytest.mark.parametrize(
    ("method", "event"),
    [
        (
            "info",
            {
                "event": "call_ended",
                "call": "abcdefghjkmnpqrstuvwxyzab",
                "callee": "+8613800138000",
                "as_int": 13800138000,
                "small": 5,
                "negative": -12345678,
                "seconds": 0.1,
                "flag": True,
                "nothing": None,
                "nested": {"k": ["13800138000", ("１３８００１３８０００",)]},
                "spaced": "138 0013 8000",
                "seven_digits": "5551234",
            },
        ),
        # The processors' own keys win over the caller's; "warn" and "exception" map levels.
        ("warn", {"event": "x 13800138000", "level": "bogus", "logger": "other", "timestamp": "t"}),
        ("exception", {"event": "failed", "exc_info": _exception_info()}),
        ("debug", {"event": "short", "n": 1_000_000}),
    ],
)
def test_one_pass_fields_are_what_the_processor_chain_they_replace_made(
    method: str, event: dict[str, object]
) -> None:
    """engine.logging._line_fields against the structlog processors it stands for."""
    from engine.logging import _line_fields, _NamedWriteLogger, mask_event_dict

    logger = _NamedWriteLogger(io.StringIO(), "engine.test")
    chain: list[Processor] = [
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        mask_event_dict,
    ]
    expected: dict[str, object] = dict(event)
    for processor in chain:
        expected = processor(logger, method, expected)  # type: ignore[assignment]
    got = _line_fields(logger, method, dict(event))
    assert list(got) == list(expected)  # same keys in the same order
    stamps = (str(got.pop("timestamp")), str(expected.pop("timestamp")))
    assert all(stamp.endswith("Z") and datetime.fromisoformat(stamp[:-1]) for stamp in stamps)
    assert got == expected
    assert "13800138000" not in json.dumps(got, ensure_ascii=False)


@settings(max_examples=300)
@example("5551234")  # the shortest run masked
@example("１３８００１３")  # full-width digits are digits too
@given(
    st.text(alphabet=st.sampled_from("0123456789１３８+- abcXYZ_é"), max_size=20)
    | st.from_regex(r"[a-zA-Z]{0,30}", fullmatch=True)
)
def test_string_fast_path_masks_exactly_like_the_full_rule(text: str) -> None:
    """Short strings and letters-only strings skip the regular expression: never a difference."""
    from engine.logging import _mask_value

    assert _mask_value(text) == mask_numbers_in_text(text)
