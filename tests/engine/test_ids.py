"""Time-ordered row ids (engine.ids)."""

from __future__ import annotations

import re
import time

from engine.ids import time_ordered_id


def test_ids_are_32_hex_digits_and_unique() -> None:
    ids = [time_ordered_id() for _ in range(5000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids)
    assert len(set(ids)) == len(ids)
    # The random part varies in every digit position (a constant position would show a bug).
    for position in range(12, 32):
        assert len({value[position] for value in ids}) > 8


def test_ids_begin_with_the_millisecond_they_were_made_so_later_ones_sort_later() -> None:
    before_ms = time.time_ns() // 1_000_000
    first = time_ordered_id()
    time.sleep(0.003)
    second = time_ordered_id()
    after_ms = time.time_ns() // 1_000_000
    assert first < second
    assert before_ms <= int(first[:12], 16) <= int(second[:12], 16) <= after_ms
