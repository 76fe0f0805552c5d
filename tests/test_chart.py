"""The Helm chart: it lints, renders, grants exactly what the operator needs, runs restricted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lepton_operator.api import crdgen
from lepton_operator.settings import OperatorSettings
from tests.helm_chart import (
    CHART_DIR,
    CLUSTER_NEEDS,
    FORBIDDEN,
    KOPF_NAMESPACED_MODE_NEEDS,
    OPERATOR_NEEDS,
    REPO_ROOT,
    of_kind,
    only,
    render,
    rule_triples,
    run_helm,
    triples,
)

WATCHED = ["team-a", "team-b"]
# Settings the chart leaves at the operator's default on purpose.
NOT_IN_CHART = {
    "bind_address": "in a pod it must listen on all addresses for the kubelet and Prometheus",
}


def _container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    containers = only(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _env(documents: list[dict[str, Any]]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in _container(documents)["env"]}


def test_helm_lint_passes_with_default_and_namespaced_values() -> None:
    for extra in ([], ["--set", "watchNamespaces={team-a}"]):
        result = run_helm("lint", "--strict", str(CHART_DIR), *extra)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values", "kinds"),
    [
        ({}, ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]),
        (
            {"watchNamespaces": WATCHED, "networkPolicy": {"enabled": True}},
            [
                "ClusterRole",
                "ClusterRoleBinding",
                "Deployment",
                "NetworkPolicy",
                "Role",
                "Role",
                "RoleBinding",
                "RoleBinding",
                "Service",
                "ServiceAccount",
            ],
        ),
        (
            {"metrics": {"enabled": False}},
            ["ClusterRole", "ClusterRoleBinding", "Deployment", "ServiceAccount"],
        ),
    ],
    ids=["default", "namespaced", "no-metrics"],
)
def test_renders_named_objects_of_the_expected_kinds(
    values: dict[str, Any], kinds: list[str]
) -> None:
    documents = render(values)
    assert sorted(doc["kind"] for doc in documents) == kinds
    for doc in documents:
        assert doc["apiVersion"] and doc["metadata"]["name"], doc
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "lepton"


def test_cluster_wide_role_grants_exactly_what_the_operator_needs() -> None:
    documents = render()
    role = only(documents, "ClusterRole")
    granted = rule_triples(role["rules"])
    needed = triples(OPERATOR_NEEDS) | triples(CLUSTER_NEEDS)
    assert needed - granted == set(), "missing grants"
    assert granted - needed == set(), "grants the operator never uses"
    assert not list(of_kind(documents, "Role"))


def test_namespaced_mode_grants_namespaced_rules_only_in_watched_namespaces() -> None:
    documents = render({"watchNamespaces": WATCHED})
    roles = {doc["metadata"]["namespace"]: doc for doc in of_kind(documents, "Role")}
    assert sorted(roles) == WATCHED
    for role in roles.values():
        assert rule_triples(role["rules"]) == triples(OPERATOR_NEEDS)
    cluster_role = only(documents, "ClusterRole")
    assert rule_triples(cluster_role["rules"]) == triples(CLUSTER_NEEDS) | triples(
        KOPF_NAMESPACED_MODE_NEEDS
    )
    bindings = {doc["metadata"]["namespace"]: doc for doc in of_kind(documents, "RoleBinding")}
    assert sorted(bindings) == WATCHED
    service_account = only(documents, "ServiceAccount")["metadata"]
    for binding in bindings.values():
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[binding["metadata"]["namespace"]]["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": service_account["name"],
                "namespace": service_account["namespace"],
            }
        ]


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": WATCHED}], ids=["cluster", "ns"])
def test_no_wildcards_and_nothing_forbidden(values: dict[str, Any]) -> None:
    documents = render(values)
    rules = [
        rule for doc in documents if doc["kind"] in ("ClusterRole", "Role") for rule in doc["rules"]
    ]
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert "nonResourceURLs" not in rule
    granted = rule_triples(rules)
    assert granted.isdisjoint(FORBIDDEN)
    secret_verbs = {verb for group, resource, verb in granted if resource == "secrets"}
    assert secret_verbs == set()  # nothing at all: missing Secrets are read from pod state


def test_deployment_is_one_restricted_recreated_replica() -> None:
    documents = render()
    deployment = only(documents, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    pod_security = pod["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] != 0
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(documents)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # The read-only root needs a writable scratch directory for HOME=/tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    service_account = only(documents, "ServiceAccount")
    assert pod["serviceAccountName"] == service_account["metadata"]["name"]


def test_probes_and_ports_follow_the_operator_settings() -> None:
    documents = render({"health": {"port": 9001}, "metrics": {"port": 9002}})
    container, env = _container(documents), _env(documents)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"health": 9001, "metrics": 9002}
    assert env["LEPTON_HEALTH_PORT"] == "9001"
    assert env["LEPTON_METRICS_PORT"] == "9002"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    service = only(documents, "Service")
    assert service["spec"]["ports"][0]["port"] == 9002
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_every_operator_setting_comes_from_values(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "runtime": {
            "image": {"repository": "registry.example/lepton/runtime", "tag": "1.2.3"},
            "pullPolicy": "Always",
            "pullSecrets": ["regcred", "mirror"],
            "metricsPort": 9500,
            "pvcMountRoot": "/data/claims",
        },
        "watchNamespaces": WATCHED,
        "scheduling": {
            "poolLabel": "karpenter.sh/nodepool",
            "gpuProductLabel": "example.com/gpu",
            "gpuResource": "amd.com/gpu",
            "starvationSeconds": 120,
            "resyncSeconds": 60,
            "preemption": True,
            "positionRefreshSeconds": 5,
            "positionsPerSecond": 20,
        },
        "sourcePollSeconds": 2.5,
        "clusterDomain": "corp.local",
        "logLevel": "DEBUG",
        "health": {"port": 7001},
        "metrics": {"port": 7002},
    }
    env = _env(render(values))
    assert all(name.startswith("LEPTON_") for name in env)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = OperatorSettings()
    assert settings.runtime_image == "registry.example/lepton/runtime:1.2.3"
    assert settings.image_pull_policy == "Always"
    assert settings.image_pull_secrets == ["regcred", "mirror"]
    assert settings.namespaces == WATCHED
    assert settings.pool_label == "karpenter.sh/nodepool"
    assert settings.gpu_product_label == "example.com/gpu"
    assert settings.gpu_resource == "amd.com/gpu"
    assert (settings.admission_starvation_seconds, settings.admission_resync_seconds) == (120, 60)
    assert settings.admission_preemption is True
    assert settings.admission_position_refresh_seconds == 5
    assert settings.admission_positions_per_second == 20
    assert settings.pvc_mount_root == "/data/claims"
    assert settings.runtime_metrics_port == 9500
    assert settings.source_poll_seconds == 2.5
    assert settings.cluster_domain == "corp.local"
    assert settings.log_level == "DEBUG"
    assert (settings.health_port, settings.metrics_port) == (7001, 7002)
    # A new operator setting fails here until the chart exposes it (or says why it does not).
    in_chart = {name.removeprefix("LEPTON_").lower() for name in env}
    assert in_chart | set(NOT_IN_CHART) == set(OperatorSettings.model_fields)


def test_defaults_match_the_operator_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(render())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from_chart = OperatorSettings().model_dump()
    for name in env:
        monkeypatch.delenv(name)
    # Installing with default values behaves like running the operator with no settings.
    assert from_chart == OperatorSettings().model_dump()
    assert json.loads(env["LEPTON_NAMESPACES"]) == []


def test_metrics_off_means_port_zero_and_no_service() -> None:
    documents = render({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})
    assert _env(documents)["LEPTON_METRICS_PORT"] == "0"
    assert [port["name"] for port in _container(documents)["ports"]] == ["health"]
    assert not list(of_kind(documents, "Service"))
    assert not list(of_kind(documents, "ServiceMonitor"))


def test_service_monitor_only_where_prometheus_operator_is_installed() -> None:
    values = {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}}
    assert not list(of_kind(render(values), "ServiceMonitor"))
    # Argo CD passes the cluster's group/versions only; `helm install` also passes the kinds.
    argocd_style = render(values, "--api-versions", "monitoring.coreos.com/v1")
    assert len(list(of_kind(argocd_style, "ServiceMonitor"))) == 1
    documents = render(values, "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    monitor = only(documents, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    service = only(documents, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()


def test_network_policy_allows_dns_api_server_and_metrics_only() -> None:
    values = {
        "networkPolicy": {
            "enabled": True,
            "apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [6443]},
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        }
    }
    policy = only(render(values), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [
        {
            "ports": [{"port": "metrics", "protocol": "TCP"}],
            "from": values["networkPolicy"]["metricsFrom"],
        }
    ]
    dns, api_server = policy["egress"]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert api_server == {
        "ports": [{"port": 6443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
    }
    pod_labels = only(render(values), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_pod_placement_and_pull_secrets_come_from_values() -> None:
    values = {
        "imagePullSecrets": ["operator-pull"],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "ops", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "platform-critical",
        "image": {"repository": "registry.example/lepton/operator", "tag": "9.9.9"},
    }
    documents = render(values)
    pod = only(documents, "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "operator-pull"}]
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["priorityClassName"] == "platform-critical"
    assert pod["containers"][0]["image"] == "registry.example/lepton/operator:9.9.9"


def test_chart_refuses_kubernetes_older_than_1_30() -> None:
    result = run_helm("template", "x", str(CHART_DIR), "--kube-version", "1.29.0")
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr


def test_chart_crds_are_the_generated_ones() -> None:
    chart_crds = CHART_DIR / "crds"
    expected = crdgen.crd_files()
    assert sorted(p.name for p in chart_crds.iterdir()) == sorted(expected)
    for name, content in expected.items():
        assert (chart_crds / name).read_text() == content, f"{name}: run `make crds`"
        assert (chart_crds / name).read_text() == (REPO_ROOT / "crds" / name).read_text()


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert (chart["name"], chart["version"], chart["appVersion"]) == (
        "lepton-operator",
        "0.1.0",
        "0.1.0",
    )
    assert chart["kubeVersion"].startswith(">=1.30")
    assert Path(CHART_DIR / "templates" / "NOTES.txt").exists()


def test_bring_your_own_service_account_and_roles() -> None:
    documents = render(
        {"serviceAccount": {"create": False, "name": "ops"}, "rbac": {"create": False}}
    )
    assert sorted(doc["kind"] for doc in documents) == ["Deployment", "Service"]
    pod = only(documents, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ops"
    with pytest.raises(AssertionError, match=r"serviceAccount\.name is required"):
        render({"serviceAccount": {"create": False}})
