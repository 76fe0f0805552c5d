"""values.schema.json: it describes every value, values.yaml meets it, the chart lints strictly,
and a wrong value is refused before anything renders, with a message that names it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import yaml

from tests.helm_chart import CHART_DIR, KUBE_VERSION, run_helm

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
# Keys the schema allows that values.yaml leaves out on purpose.
NOT_IN_VALUES = {"global": "an umbrella chart's shared values; Lepton reads none"}
# `helm lint` has no --api-versions: the PrometheusRule and ServiceMonitor stay unrendered
# here (tests/test_prometheus_rules.py and test_kubernetes_schemas.py render them).
EVERYTHING_ON = [
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.grafanaDashboard.enabled=true",
    "--set",
    "networkPolicy.enabled=true",
]


def _closed_objects(
    values: dict[str, Any], schema: dict[str, Any], path: str = ""
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(path, value, schema) of every object in values.yaml whose schema lists its keys."""
    if "properties" not in schema:
        return
    yield path, values, schema
    for key, value in values.items():
        child = schema["properties"].get(key, {})
        if isinstance(value, dict):
            yield from _closed_objects(value, child, f"{path}.{key}")


def test_values_yaml_meets_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)


def test_schema_describes_exactly_the_values_in_values_yaml() -> None:
    # Two ways: a value without a schema is refused by additionalProperties, and a schema
    # entry with no value behind it is a leftover.
    for path, values, schema in _closed_objects(VALUES, SCHEMA):
        allowed = set(schema["properties"]) - (set(NOT_IN_VALUES) if path == "" else set())
        assert set(values) == allowed, path or "(top level)"
        assert schema.get("additionalProperties") is False, path or "(top level)"
    leaves = _leaf_schemas(VALUES, SCHEMA)
    untyped = [path for path, schema in leaves if not ({"type", "anyOf", "enum"} & set(schema))]
    assert untyped == []


def _leaf_schemas(
    values: dict[str, Any], schema: dict[str, Any], path: str = ""
) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for key, value in values.items():
        child = schema.get("properties", {}).get(key)
        assert child is not None, f"{path}.{key} has no schema"
        if isinstance(value, dict) and "properties" in child:
            found += _leaf_schemas(value, child, f"{path}.{key}")
        else:
            found.append((f"{path}.{key}", child))
    return found


@pytest.mark.parametrize(
    "extra",
    [[], ["--set", "watchNamespaces={team-a}"], EVERYTHING_ON],
    ids=["default", "namespaced", "everything-on"],
)
def test_helm_lint_strict_passes(extra: list[str]) -> None:
    result = run_helm("lint", "--strict", str(CHART_DIR), "--kube-version", KUBE_VERSION, *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        # A wrong type.
        ("metrics.port=http", "'/metrics/port': got string, want integer"),
        ("scheduling.preemption=yes", "'/scheduling/preemption': got string, want boolean"),
        # An unknown key, e.g. a typo: without the schema helm would silently ignore it.
        ("metrics.prot=9090", "'/metrics': additional properties 'prot' not allowed"),
        ("serviceMonitor.enabled=true", "additional properties 'serviceMonitor' not allowed"),
        # Out of range, not one of the choices, malformed.
        ("health.port=70000", "'/health/port'"),
        ("logLevel=VERBOSE", "'/logLevel': value must be one of"),
        ("image.pullPolicy=Sometimes", "'/image/pullPolicy'"),
        ("watchNamespaces={Team_A}", "'/watchNamespaces/0'"),
        ("sourcePollSeconds=0", "'/sourcePollSeconds'"),
        (
            "metrics.prometheusRule.alerts.gpusFragmented.fragmentedRatio=1.5",
            "'/metrics/prometheusRule/alerts/gpusFragmented/fragmentedRatio'",
        ),
        (
            "metrics.prometheusRule.alerts.reconcileErrorsRising.for=15 minutes",
            "'/metrics/prometheusRule/alerts/reconcileErrorsRising/for'",
        ),
    ],
)
def test_a_wrong_value_is_refused_with_its_name(setting: str, named: str) -> None:
    for command in ("template", "lint"):
        args = [command, str(CHART_DIR), "--set", setting]
        if command == "template":
            args.insert(1, "lepton")
        result = run_helm(*args)
        assert result.returncode != 0, f"helm {command} accepted {setting}"
        output = result.stdout + result.stderr
        assert "values don't meet the specifications of the schema" in output, output
        assert named in output, output
