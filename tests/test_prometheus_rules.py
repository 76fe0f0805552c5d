"""The chart's PrometheusRule: promtool accepts it, its unit tests pass, every alert is tested
both ways, thresholds come from values, and every query names series the operator exports."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm_chart import of_kind, render
from tests.prometheus_rules import (
    MONITORING_API,
    promtool,
    rule_groups,
    run_promtool,
    unknown_names,
    write_rules_file,
)

UNIT_TESTS = Path(__file__).parent / "prometheus" / "lepton-rules.test.yaml"
# What the issue asks the chart to alert on; a new alert needs its unit tests first.
ALERTS = {
    "LeptonJobsQueuedTooLong",
    "LeptonReconcileErrorsRising",
    "LeptonEndpointUnavailable",
    "LeptonGPUsFragmented",
}


@pytest.fixture(scope="module")
def shipped() -> dict[str, Any]:
    return rule_groups()


def _rules(groups: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in groups["groups"] for rule in group["rules"]]


def test_promtool_is_installed() -> None:
    # Fails (never skips) without promtool, saying how to install it.
    assert promtool().is_file()


def test_promtool_check_rules_accepts_the_shipped_rules(
    shipped: dict[str, Any], tmp_path: Path
) -> None:
    rules_file = tmp_path / "lepton-rules.yaml"
    rules_file.write_text(yaml.safe_dump(shipped, sort_keys=False))
    result = run_promtool("check", "rules", rules_file)
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool's lint (duplicate rules) fails the run too; this says it read every rule.
    assert f"SUCCESS: {len(_rules(shipped))} rules found" in result.stdout


def test_promtool_unit_tests_pass_against_the_shipped_rules(tmp_path: Path) -> None:
    # The unit tests name the rules file relative to themselves: both go into one folder.
    write_rules_file(tmp_path / "lepton-rules.yaml")
    unit_tests = shutil.copy(UNIT_TESTS, tmp_path)
    result = run_promtool("test", "rules", unit_tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_wrong_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    # The unit tests can fail: with a threshold above the test data nothing fires.
    values = {
        "metrics": {"prometheusRule": {"alerts": {"gpusFragmented": {"fragmentedRatio": 0.9}}}}
    }
    write_rules_file(tmp_path / "lepton-rules.yaml", values)
    unit_tests = shutil.copy(UNIT_TESTS, tmp_path)
    result = run_promtool("test", "rules", unit_tests)
    assert result.returncode != 0
    assert "LeptonGPUsFragmented" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test(shipped: dict[str, Any]) -> None:
    alerts = {rule["alert"] for rule in _rules(shipped) if "alert" in rule}
    assert alerts == ALERTS
    cases = [
        case
        for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for alert in sorted(alerts):
        expected = [case["exp_alerts"] for case in cases if case["alertname"] == alert]
        assert any(expected), f"{alert}: no unit test where it fires"
        assert not all(expected), f"{alert}: no unit test where it stays quiet"


def test_every_rule_of_one_alert_fires_in_some_unit_test(shipped: dict[str, Any]) -> None:
    # LeptonJobsQueuedTooLong has two rules, told apart by their `reason` label.
    fired = {
        (case["alertname"], alert["exp_labels"].get("reason"))
        for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        for alert in case["exp_alerts"]
    }
    for rule in _rules(shipped):
        if "alert" in rule:
            assert (rule["alert"], rule["labels"].get("reason")) in fired, rule["alert"]


def test_rules_name_only_series_the_operator_exports(shipped: dict[str, Any]) -> None:
    rules = _rules(shipped)
    records = frozenset(rule["record"] for rule in rules if "record" in rule)
    problems = {
        rule.get("record") or rule["alert"]: found
        for rule in rules
        if (found := unknown_names(rule["expr"], records))
    }
    assert problems == {}


def test_recorded_series_follow_the_level_metric_operation_convention(
    shipped: dict[str, Any],
) -> None:
    for rule in _rules(shipped):
        if "record" in rule:
            level, metric, operation = rule["record"].split(":")
            assert metric.startswith("lepton_") and operation, rule["record"]
            # The level names the labels that the outermost aggregation keeps (`le` goes into
            # histogram_quantile).
            outermost = re.search(r"\bby \(([^)]*)\)", rule["expr"])
            assert outermost is not None, rule["record"]
            kept = {label.strip() for label in outermost.group(1).split(",")} - {"le"}
            assert kept == set(level.split("_")), rule["record"]


def test_every_alert_has_a_severity_summary_and_description(shipped: dict[str, Any]) -> None:
    for rule in _rules(shipped):
        if "alert" in rule:
            assert rule["labels"]["severity"], rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["annotations"]["description"], rule["alert"]


def test_thresholds_come_from_values(tmp_path: Path) -> None:
    alerts = {
        "jobsQueuedTooLong": {"waitSeconds": 3600, "severity": "page"},
        "reconcileErrorsRising": {"errorRatio": 0.02, "for": "1h", "severity": "info"},
        "endpointUnavailable": {"for": "2m", "severity": "warning"},
        "gpusFragmented": {"fragmentedRatio": 0.5, "for": "10m", "severity": "info"},
    }
    groups = rule_groups({"metrics": {"prometheusRule": {"alerts": alerts}}})
    by_alert: dict[str, list[dict[str, Any]]] = {}
    for rule in _rules(groups):
        if "alert" in rule:
            by_alert.setdefault(rule["alert"], []).append(rule)
    late, stuck = by_alert["LeptonJobsQueuedTooLong"]
    assert late["expr"].rstrip().endswith("> 3600")
    assert stuck["for"] == "3600s"
    assert {late["labels"]["severity"], stuck["labels"]["severity"]} == {"page"}
    (errors,) = by_alert["LeptonReconcileErrorsRising"]
    assert ("> 0.02" in errors["expr"], errors["for"], errors["labels"]["severity"]) == (
        True,
        "1h",
        "info",
    )
    (endpoint,) = by_alert["LeptonEndpointUnavailable"]
    assert (endpoint["for"], endpoint["labels"]["severity"]) == ("2m", "warning")
    (fragmented,) = by_alert["LeptonGPUsFragmented"]
    assert "> 0.5" in fragmented["expr"]
    assert fragmented["for"] == "10m"
    # Whatever the values, what renders is still a valid rules file.
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(groups))
    result = run_promtool("check", "rules", rules_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_only_with_metrics_and_prometheus_operator() -> None:
    enabled = {"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "prom"}}}}
    assert not list(of_kind(render(enabled), "PrometheusRule"))
    # Off by default, even where prometheus-operator is installed.
    assert not list(of_kind(render({}, "--api-versions", MONITORING_API), "PrometheusRule"))
    off = {"metrics": {"enabled": False, "prometheusRule": {"enabled": True}}}
    assert not list(of_kind(render(off, "--api-versions", MONITORING_API), "PrometheusRule"))
    for api_version in (MONITORING_API, f"{MONITORING_API}/PrometheusRule"):
        (rule,) = of_kind(render(enabled, "--api-versions", api_version), "PrometheusRule")
        assert rule["metadata"]["labels"]["release"] == "prom"
        assert rule["metadata"]["namespace"] == "lepton-system"
