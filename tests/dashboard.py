"""The chart's Grafana dashboard as tests see it: its panels and their PromQL.

`dashboard_queries()` is what an end-to-end check runs against a real Prometheus (each query
parses and returns a series); tests/test_prometheus_rules.py has promtool parse the same list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_PATH = REPO_ROOT / "helm" / "lepton-operator" / "files" / "grafana-dashboard.json"
# What Grafana puts in place of the dashboard's variables when every pool is selected:
# `allValue` of the pool variable, and a rate window a few scrape intervals long.
ALL_POOLS = ".*"
DEFAULT_RATE_INTERVAL = "5m"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
    return loaded


def panels(board: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, including those inside collapsed rows."""
    for panel in (board or dashboard())["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def raw_queries(board: dict[str, Any] | None = None) -> list[str]:
    """Each panel target's expression as written, with Grafana's variables in it."""
    return [target["expr"] for panel in panels(board) for target in panel.get("targets", [])]


def dashboard_queries(rate_interval: str = DEFAULT_RATE_INTERVAL) -> list[str]:
    """Each panel target's PromQL as Grafana sends it with every pool selected."""
    return [
        expr.replace("$__rate_interval", rate_interval).replace("$pool", ALL_POOLS)
        for expr in raw_queries()
    ]
