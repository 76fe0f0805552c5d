"""The chart's Grafana dashboard: a ConfigMap the sidecar loads, panels for every area, and
PromQL that parses (promtool) and names series the operator exports."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboard import DASHBOARD_PATH, dashboard, dashboard_queries, panels, raw_queries
from tests.helm_chart import of_kind, only, render
from tests.prometheus_rules import rule_groups, run_promtool, unknown_names

ENABLED = {"metrics": {"grafanaDashboard": {"enabled": True}}}
ROWS = ["Pools", "Queue", "Jobs", "Endpoints", "Reconcile"]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return dashboard()


def test_config_map_carries_the_dashboard_for_the_sidecar() -> None:
    config_map = only(render(ENABLED), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "lepton-system"
    (content,) = config_map["data"].values()
    assert json.loads(content) == json.loads(DASHBOARD_PATH.read_text())


def test_config_map_labels_annotations_and_namespace_come_from_values() -> None:
    values = {
        "metrics": {
            "grafanaDashboard": {
                "enabled": True,
                "namespace": "monitoring",
                "labels": {"grafana_dashboard": "lepton", "team": "ml"},
                "annotations": {"grafana_folder": "Lepton"},
            }
        }
    }
    metadata = only(render(values), "ConfigMap")["metadata"]
    assert metadata["namespace"] == "monitoring"
    assert metadata["labels"]["grafana_dashboard"] == "lepton"
    assert metadata["labels"]["team"] == "ml"
    assert metadata["labels"]["app.kubernetes.io/instance"] == "lepton"
    assert metadata["annotations"] == {"grafana_folder": "Lepton"}


@pytest.mark.parametrize(
    "values",
    [{}, {"metrics": {"enabled": False, "grafanaDashboard": {"enabled": True}}}],
    ids=["off-by-default", "no-metrics"],
)
def test_no_dashboard_unless_enabled_with_metrics(values: dict[str, Any]) -> None:
    assert not list(of_kind(render(values), "ConfigMap"))


def test_rows_cover_pools_queue_jobs_endpoints_and_reconciles(board: dict[str, Any]) -> None:
    rows = [panel["title"] for panel in board["panels"] if panel["type"] == "row"]
    assert rows == ROWS
    current, per_row = "", dict.fromkeys(ROWS, 0)
    for panel in board["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
        else:
            per_row[current] += 1
    assert all(count > 0 for count in per_row.values()), per_row


def test_panels_query_the_selected_prometheus(board: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    for panel in panels(board):
        assert panel["title"] and panel["description"], panel["id"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_panel_ids_are_unique_and_the_grid_has_no_overlaps(board: dict[str, Any]) -> None:
    assert board["uid"] == "lepton-operator"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(set(ids)) == len(ids)
    boxes = [panel["gridPos"] for panel in board["panels"]]
    for box in boxes:
        assert box["x"] >= 0 and box["w"] > 0 and box["x"] + box["w"] <= 24, box
    for a, b in combinations(boxes, 2):
        apart = (
            a["x"] + a["w"] <= b["x"]
            or b["x"] + b["w"] <= a["x"]
            or a["y"] + a["h"] <= b["y"]
            or b["y"] + b["h"] <= a["y"]
        )
        assert apart, (a, b)


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    # promtool parses only rules files: each query becomes a recording rule of its own.
    queries = dashboard_queries()
    rules = [{"record": f"dashboard:query_{n}:expr", "expr": q} for n, q in enumerate(queries)]
    rules_file = tmp_path / "dashboard-queries.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", rules_file)
    numbered = "\n".join(f"{n}: {q}" for n, q in enumerate(queries))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\nqueries:\n{numbered}"
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_variables_are_all_replaced_in_the_queries() -> None:
    assert any("$" in query for query in raw_queries())  # the dashboard does use variables
    assert not [query for query in dashboard_queries() if "$" in query]


def test_dashboard_queries_name_only_series_the_operator_exports() -> None:
    # And no recorded series: the dashboard works without the PrometheusRule.
    problems = {
        query: found for query in raw_queries() if (found := unknown_names(query, frozenset()))
    }
    assert problems == {}


def test_dashboard_does_not_depend_on_the_recording_rules() -> None:
    records = {
        rule["record"]
        for group in rule_groups()["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    assert records  # the rules do record series; none may appear in a panel
    assert not [query for query in raw_queries() for record in records if record in query]
