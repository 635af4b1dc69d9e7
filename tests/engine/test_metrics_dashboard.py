"""docs/grafana-maskline.json charts what engine.metrics exports: every ``maskline_*`` series a
panel queries exists, and every exported family is charted (or deliberately left to Prometheus).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.metrics import CountingMediaRelay, Metrics
from media.ports import PortAllocator
from sip.endpoint import Endpoint
from store.db import Database

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-maskline.json"
# Exported, but the dashboard computes the same from counters over its own range instead.
NOT_CHARTED = {
    "maskline_calls_per_second",
    "maskline_asr_ratio",
    "maskline_acd_seconds",
    "maskline_rtp_sessions_closed",
    # The same requests as maskline_overload_refused_total{reason="source_rate"}, charted.
    "maskline_sip_flood_dropped",
}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


class _Reports:
    buffered = 0
    dropped = 0


@pytest.fixture
async def exported(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """Family name → type, with every source attached."""
    db = await Database.open(tmp_path / "m.sqlite3")
    metrics = Metrics(process_metrics=True)
    metrics.attach(
        endpoint=Endpoint(local_host="127.0.0.1", local_port=5060),
        active_calls=lambda: 0,
        relay=CountingMediaRelay(
            "127.0.0.1", PortAllocator(42000, 42010), loop=asyncio.get_running_loop()
        ),
        bindings_indexed=lambda: 0,
        reports=_Reports(),
        db=db,
        overload_refused=lambda: {"calls": 0},
        sip_not_sent=lambda: {"udp_write_queue_full": 0},
    )
    body, _ = await metrics.exposition()
    await db.close()
    yield {f.name: f.type for f in text_string_to_metric_families(body.decode())}


def _expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in _expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in _expressions(item)]
    return []


def test_dashboard_queries_only_exported_series_and_charts_them_all(
    exported: dict[str, str],
) -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    expressions = _expressions(dashboard["panels"])
    assert len(expressions) >= 20
    queried = {
        name for expr in expressions for name in re.findall(r"\b((?:maskline|process)_\w+)", expr)
    }
    series = {
        family + suffix
        for family, kind in exported.items()
        for suffix in _SUFFIXES.get(kind, ("",))
    }
    assert queried - series == set(), "the dashboard queries series that are not exported"
    charted = {
        family
        for family in exported
        if family.startswith("maskline_")
        and any(family + suffix in queried for suffix in _SUFFIXES[exported[family]])
    }
    uncharted = {f for f in exported if f.startswith("maskline_")} - charted - NOT_CHARTED
    assert uncharted == set(), "exported families missing from the dashboard"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
