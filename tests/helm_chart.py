"""The Helm chart as tests see it: the helm binary, rendering, and what the operator needs.

`OPERATOR_NEEDS` and `CLUSTER_NEEDS` are the single table of permissions: every API call
the operator makes (lepton_operator/k8s.py through handlers/) and every one Kopf makes for it.
The chart's roles must grant exactly these (tests/test_chart.py) and a real API server must
agree (e2e/test_chart_rbac.py). When the operator starts making a new call, add it here first.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e import build

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART_DIR = REPO_ROOT / "helm" / "lepton-operator"
# Render for the Kubernetes the e2e cluster runs; the chart requires >= 1.30.
KUBE_VERSION = build.KUBERNETES_VERSION.removeprefix("v")

READ = ("get", "list", "watch")
# Server-side apply is a PATCH (plus `create` when it creates); delete drops an HPA or PDB the
# spec no longer asks for. Nothing sends PUT, so no `update`.
OWN = (*READ, "create", "patch", "delete")


@dataclass(frozen=True)
class Grant:
    """Verbs on one resource of one API group, and why the operator needs them."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]
    why: str

    def triples(self) -> set[tuple[str, str, str]]:
        return {(self.api_group, self.resource, verb) for verb in self.verbs}


LEPTON_PLURALS = ("leptontrainingjobs", "leptoncompressions", "leptonendpoints", "leptonsearches")

# In every watched namespace (a ClusterRole when cluster-wide).
OPERATOR_NEEDS: tuple[Grant, ...] = (
    *(
        Grant("lepton.ai", plural, ("get", "list", "watch", "patch"), "Kopf: watch, annotate")
        for plural in LEPTON_PLURALS
    ),
    *(
        Grant("lepton.ai", f"{plural}/status", ("get", "patch"), "k8s.patch_status")
        for plural in LEPTON_PLURALS
    ),
    Grant("lepton.ai", "leptontrainingjobs", ("create",), "a search's trials (k8s.create)"),
    Grant("kubeflow.org", "pytorchjobs", OWN, "training/compression child; watched"),
    Grant("", "configmaps", OWN, "runtime config child"),
    Grant("", "services", OWN, "endpoint child"),
    Grant("apps", "deployments", OWN, "endpoint child (Triton); watched"),
    Grant("autoscaling", "horizontalpodautoscalers", OWN, "endpoint child, deleted when dropped"),
    Grant("policy", "poddisruptionbudgets", OWN, "endpoint child, deleted when dropped"),
    Grant("", "pods", READ, "termination message -> results; why a pod cannot start"),
    Grant("", "persistentvolumeclaims", ("get",), "pvc:// claim exists?"),
    Grant("", "events", ("list", "watch", "create"), "Kopf posts; pod creations refused"),
    Grant("kueue.x-k8s.io", "workloads", ("list", "watch"), "Kueue's word on queueName jobs"),
)

# Cluster-scoped, in every mode: Kopf lists, then watches CRDs to notice resources come and go;
# GPU admission reads every node and every pod (of any owner) for the inventory.
CLUSTER_NEEDS: tuple[Grant, ...] = (
    Grant("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"), "Kopf scan"),
    Grant("", "nodes", ("list", "watch"), "GPU admission: the queue's view (services/)"),
    Grant("", "pods", ("list", "watch"), "GPU admission: GPUs that pods of any namespace hold"),
    Grant("scheduling.k8s.io", "priorityclasses", ("get",), "a queued job's priority"),
)

# Cluster-scoped, only with a namespace list: Kopf follows namespaces appearing and going.
KOPF_NAMESPACED_MODE_NEEDS: tuple[Grant, ...] = (
    Grant("", "namespaces", ("list", "watch"), "Kopf namespace observer"),
)

# What the operator must never be able to do, whatever the mode.
FORBIDDEN: tuple[tuple[str, str, str], ...] = (
    # No Secret at all: a missing one is read from the pods' state (pod_problems.py).
    ("", "secrets", "get"),
    ("", "secrets", "list"),
    ("", "secrets", "watch"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "delete"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "create"),
    ("", "pods", "delete"),
    ("rbac.authorization.k8s.io", "clusterroles", "create"),
)


def triples(grants: Iterable[Grant]) -> set[tuple[str, str, str]]:
    return {triple for grant in grants for triple in grant.triples()}


def rule_triples(rules: Iterable[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every combination an RBAC rule list allows."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def helm() -> Path:
    """The helm binary e2e uses, built from its Go module on first use (see e2e/build.py)."""
    build.ensure(("helm",), quiet=True)
    return build.binary("helm")


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm()), *args], capture_output=True, text=True, check=False, timeout=120
    )


def render(
    values: dict[str, Any] | None = None,
    *extra: str,
    release: str = "lepton",
    namespace: str = "lepton-system",
) -> list[dict[str, Any]]:
    """`helm template` of the chart, parsed; fails the test with helm's message on an error."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values_file:
        yaml.safe_dump(values or {}, values_file)
        values_file.flush()
        result = run_helm(
            "template",
            release,
            str(CHART_DIR),
            "--namespace",
            namespace,
            "--kube-version",
            KUBE_VERSION,
            "--values",
            values_file.name,
            *extra,
        )
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(documents: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    return (doc for doc in documents if doc["kind"] == kind)


def only(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = list(of_kind(documents, kind))
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]
