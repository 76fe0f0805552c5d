"""The chart's Prometheus rules as tests see them, and promtool to check them.

The rules ship inside the chart's PrometheusRule (templates/prometheusrule.yaml renders
files/prometheus-rules.yaml), so they are taken from `helm template` output: promtool checks
exactly what a cluster gets, thresholds filled in from values.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, get_args

import yaml
from prometheus_client.metrics import MetricWrapperBase

from lepton_operator import metrics
from lepton_operator.api.base import EndpointPhase, JobPhase
from lepton_operator.api.kinds import ALL_KINDS
from lepton_operator.api.search import SearchPhase
from tests.helm_chart import only, render

# prometheus-operator's group/version: without it the chart renders no PrometheusRule.
MONITORING_API = "monitoring.coreos.com/v1"
PROMTOOL_MISSING = (
    "promtool is not on PATH: the chart's alerts are tested with it. Install it (Debian and "
    "Ubuntu: `apt-get install prometheus`, which ships /usr/bin/promtool) and run again."
)


def promtool() -> Path:
    """promtool from PATH; an AssertionError that says how to get it when it is missing."""
    found = shutil.which("promtool")
    if found is None:
        raise AssertionError(PROMTOOL_MISSING)
    return Path(found)


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool()), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def rule_groups(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `spec` of the chart's PrometheusRule: a Prometheus rules file's content."""
    enabled = {"metrics": {"prometheusRule": {"enabled": True}}}
    merged = _merge(enabled, values or {})
    documents = render(merged, "--api-versions", MONITORING_API)
    spec: dict[str, Any] = only(documents, "PrometheusRule")["spec"]
    return spec


def write_rules_file(path: Path, values: dict[str, Any] | None = None) -> Path:
    path.write_text(yaml.safe_dump(rule_groups(values), sort_keys=False))
    return path


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --- are the queries about series the operator exports? -------------------------------------
# Label values the operator writes from a closed set; other labels (pool, gpu_product, outcome
# reasons) are open.
POOL_GPU_STATES = frozenset({"capacity", "allocated", "reserved", "free", "fragmented"})
_RAW_NAME = re.compile(r"(?<![\w:])lepton_\w+(?![\w:])")
_RECORDED_NAME = re.compile(r"(?<![\w:])[a-z_]+:\w+:\w+")
_SELECTOR = re.compile(r"([\w:]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


def exported_series() -> dict[str, frozenset[str]]:
    """Sample name -> label names, for every collector in lepton_operator.metrics."""
    series: dict[str, frozenset[str]] = {}
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        labels = frozenset(collector._labelnames)
        name, kind = collector._name, collector._type
        if kind == "counter":  # prometheus-client keeps the name without _total
            series[f"{name}_total"] = labels
        elif kind == "histogram":
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_count"] = series[f"{name}_sum"] = labels
        else:
            series[name] = labels
    return series


def known_label_values() -> dict[str, frozenset[str]]:
    phases = {*get_args(JobPhase), *get_args(EndpointPhase), *get_args(SearchPhase)}
    return {
        "kind": frozenset(info.kind for info in ALL_KINDS),
        "phase": frozenset(phases),
        # services/admission.py, _export_pool_metrics.
        "state": POOL_GPU_STATES,
    }


def record_labels(record: str) -> frozenset[str]:
    """The labels a recorded series keeps, from its level (`kind_phase:...` -> kind, phase)."""
    level = record.split(":", maxsplit=1)[0]
    return frozenset(level.split("_"))


def unknown_names(expr: str, records: frozenset[str]) -> list[str]:
    """What in one PromQL expression does not exist: metric names, label names and (closed
    set) label values the operator never exports, and recorded series no rule records.

    A regular-expression reading of the PromQL these files use (selectors, `by (...)`), not a
    parser: promtool parses; this checks names against metrics.py.
    """
    exported, values = exported_series(), known_label_values()
    problems: list[str] = []
    raw = set(_RAW_NAME.findall(expr))
    recorded = set(_RECORDED_NAME.findall(expr))
    problems += [f"metric {name} is not exported" for name in sorted(raw - set(exported))]
    problems += [f"{name} is recorded by no rule" for name in sorted(recorded - records)]
    available: set[str] = set().union(
        *(exported.get(name, frozenset()) for name in raw),
        *(record_labels(name) for name in recorded),
    )
    for name, matchers in _SELECTOR.findall(expr):
        labels = exported.get(name) or (record_labels(name) if name in records else frozenset())
        for label, operator, value in _MATCHER.findall(matchers):
            if label not in labels:
                problems.append(f"{name} has no label {label}")
            elif label in values and "$" not in value:
                given = set(value.split("|")) if operator in ("=~", "!~") else {value}
                problems += [
                    f"{name}{{{label}}} is never {item!r}" for item in sorted(given - values[label])
                ]
    for grouping in _GROUPING.findall(expr):
        grouped = {label.strip() for label in grouping.split(",") if label.strip()}
        problems += [f"no series here has label {label}" for label in sorted(grouped - available)]
    return problems
