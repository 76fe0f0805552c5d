"""`helm template` output is valid Kubernetes v1.36: every object the chart renders, with any
combination of features on, passes the API's OpenAPI schema (strict: no unknown fields).

kubernetes-validate ships the JSON schemas of each Kubernetes minor; the version validated
against is the e2e control plane's (tests/helm_chart.py KUBE_VERSION, from e2e/build.py).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest

from tests.helm_chart import KUBE_VERSION, render
from tests.prometheus_rules import MONITORING_API

KUBERNETES_VALIDATE_MISSING = (
    "kubernetes-validate is not installed: it validates the chart against the Kubernetes "
    "schemas. It belongs to the [dev] extra (pyproject.toml, requirements.lock): `make setup`."
)
# prometheus-operator's kinds: CRDs, not part of Kubernetes, so it has no schema for them.
NOT_KUBERNETES = {"PrometheusRule", "ServiceMonitor"}
EVERYTHING_ON: dict[str, Any] = {
    "watchNamespaces": ["team-a", "team-b"],
    "imagePullSecrets": ["operator-pull"],
    "runtime": {"pullSecrets": ["regcred"]},
    "metrics": {
        "service": {"annotations": {"example.com/scrape": "true"}},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Lepton"}},
    },
    "networkPolicy": {
        "enabled": True,
        "apiServer": {"cidrs": ["10.0.0.1/32"]},
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
    },
    "serviceAccount": {"annotations": {"example.com/role": "lepton"}},
    "priorityClassName": "platform-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "ops", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "ops", "operator": "Exists"}]}]
            }
        }
    },
    "podAnnotations": {"example.com/a": "b"},
    "podLabels": {"team": "platform"},
}


def kubernetes_validate() -> ModuleType:
    try:
        return importlib.import_module("kubernetes_validate")
    except ModuleNotFoundError as missing:
        raise AssertionError(KUBERNETES_VALIDATE_MISSING) from missing


def schema_errors(documents: list[dict[str, Any]]) -> tuple[list[str], set[str]]:
    """Errors per object, and the kinds Kubernetes has no schema for."""
    validator = kubernetes_validate()
    errors: list[str] = []
    unknown: set[str] = set()
    for doc in documents:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            validated = validator.validate(doc, KUBE_VERSION, strict=True)
        except validator.SchemaNotFoundError:
            unknown.add(doc["kind"])
            continue
        except validator.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"{name}: {path}: {error.message}")
            continue
        # The schemas of this very minor, not an older one kubernetes-validate fell back to.
        minor = ".".join(KUBE_VERSION.split(".")[:2])
        if validated != minor:
            errors.append(f"{name}: validated against {validated}, not {minor}")
    return errors, unknown


@pytest.mark.parametrize(
    ("values", "extra"),
    [
        ({}, ["--include-crds"]),
        (EVERYTHING_ON, ["--api-versions", MONITORING_API]),
        ({"metrics": {"enabled": False}}, []),
        ({"serviceAccount": {"create": False, "name": "ops"}, "rbac": {"create": False}}, []),
    ],
    ids=["default-with-crds", "everything-on", "no-metrics", "bring-your-own-rbac"],
)
def test_rendered_objects_are_valid_kubernetes(values: dict[str, Any], extra: list[str]) -> None:
    documents = render(values, *extra)
    errors, unknown = schema_errors(documents)
    assert errors == []
    assert unknown <= NOT_KUBERNETES


def test_everything_on_renders_the_monitoring_objects_too() -> None:
    # So that the case above validated the ConfigMap and saw prometheus-operator's kinds.
    documents = render(EVERYTHING_ON, "--api-versions", MONITORING_API)
    kinds = {doc["kind"] for doc in documents}
    assert {"ConfigMap", "NetworkPolicy", "Role", "RoleBinding"} | NOT_KUBERNETES <= kinds
    _, unknown = schema_errors(documents)
    assert unknown == NOT_KUBERNETES


def test_a_wrong_object_is_caught() -> None:
    # The check can fail: an unknown field and a wrong type in a rendered Deployment.
    documents = render()
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "one"
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    errors, _ = schema_errors([deployment])
    assert len(errors) == 1  # jsonschema reports the first of them
    assert errors[0].startswith("Deployment/lepton-lepton-operator: ")
