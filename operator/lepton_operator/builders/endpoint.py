"""The children of a LeptonEndpoint: Triton Deployment, Service, and HPA / PDB when wanted.

An init container with the runtime image fetches the artifact and lays out the Triton model
repository (config.pbtxt + versioned model files) in an emptyDir; the official Triton image
then serves it. Triton itself never needs cloud credentials or torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from lepton_operator.api.base import SecretReference
from lepton_operator.api.endpoint import LeptonEndpoint
from lepton_operator.builders.meta import (
    POOL_LABEL,
    child_labels,
    child_metadata,
    owner_annotation,
)
from lepton_operator.builders.pod import (
    CONFIG_FILE,
    CONFIG_PATH,
    TERMINATION_MESSAGE_PATH,
    config_mount,
    config_volume,
    container_resources,
    container_security_context,
    image_pull_secrets,
    pod_security_context,
    storage_for,
    template_metadata,
)
from lepton_operator.builders.runtime_config import StorageLayout, render_package_config
from lepton_operator.scheduling.placement import Placement
from lepton_operator.settings import OperatorSettings
from lepton_runtime.contract import PackageConfig, RuntimeOptions, TritonSettings

COMPONENT = "endpoint"
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
MODEL_REPOSITORY = "/models"
MODEL_VERSION = "1"
# Names the Prometheus adapter exposes Triton's metrics under (see docs/autoscaling.md).
QUEUE_TIME_METRIC = "lepton_triton_queue_time_microseconds"
INFERENCE_RATE_METRIC = "lepton_triton_inference_requests_per_second"
# On the pod template: what the pods were rendered to serve. A change rolls the Deployment;
# pinning a tuning result (the same model and space) does not.
PACKAGE_DIGEST_ANNOTATION = "lepton.ai/package-digest"
# Which tuning run a pod's package step reports on (the pod watch reads it back).
TUNING_KEY_ANNOTATION = "lepton.ai/tuning-key"
PACKAGE_CONTAINER = "fetch-model"


@dataclass(frozen=True)
class ResolvedEndpointSource:
    """The artifact to serve, after the operator looked up the endpoint's source."""

    model_uri: str
    secret_ref: SecretReference | None = None


def model_name(endpoint: LeptonEndpoint) -> str:
    return endpoint.spec.triton.model_name or endpoint.metadata.name


PRE_STOP_SLEEP_SECONDS = 5


def config_map_name(endpoint: LeptonEndpoint) -> str:
    return f"{endpoint.metadata.name}-package"


def service_url(endpoint: LeptonEndpoint, cluster_domain: str) -> str:
    """The Open Inference Protocol HTTP base URL inside the cluster."""
    meta = endpoint.metadata
    return f"http://{meta.name}.{meta.namespace}.svc.{cluster_domain}:{HTTP_PORT}"


def grpc_address(endpoint: LeptonEndpoint, cluster_domain: str) -> str:
    meta = endpoint.metadata
    return f"{meta.name}.{meta.namespace}.svc.{cluster_domain}:{GRPC_PORT}"


def _selector(endpoint: LeptonEndpoint) -> dict[str, str]:
    labels = child_labels("LeptonEndpoint", endpoint.metadata, COMPONENT)
    return {k: labels[k] for k in ("app.kubernetes.io/instance", "lepton.ai/endpoint")}


def _metadata(endpoint: LeptonEndpoint, name: str) -> dict[str, Any]:
    return child_metadata("LeptonEndpoint", endpoint.metadata, name, COMPONENT)


def tuning_key(endpoint: LeptonEndpoint, model_uri: str) -> str | None:
    """Digest of what a tuning run depends on: the model and spec.tuning (None: no tuning)."""
    tuning = endpoint.spec.tuning
    if tuning is None:
        return None
    what = {
        "modelURI": model_uri,
        "tuning": tuning.to_wire(),
        "resources": endpoint.spec.resources.to_wire(),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def pinned_choice(endpoint: LeptonEndpoint, model_uri: str) -> TritonSettings | None:
    """The tuning result in status, when it was measured for this model and tuning spec."""
    status = endpoint.status.tuning if endpoint.status else None
    key = tuning_key(endpoint, model_uri)
    if status is None or key is None or status.key != key:
        return None
    chosen = status.chosen
    return TritonSettings(
        max_batch_size=chosen.max_batch_size,
        preferred_batch_size=chosen.preferred_batch_size,
        max_queue_delay_microseconds=chosen.max_queue_delay_microseconds,
        instances=chosen.instances,
        model_format=chosen.model_format,
    )


def _package_config(
    endpoint: LeptonEndpoint,
    source: ResolvedEndpointSource,
    settings: OperatorSettings,
    tuned: TritonSettings | None,
) -> PackageConfig:
    return render_package_config(
        endpoint.spec,
        model_uri=source.model_uri,
        model_name=model_name(endpoint),
        repository=MODEL_REPOSITORY,
        layout=StorageLayout(settings.pvc_mount_root),
        runtime=RuntimeOptions(termination_message_path=TERMINATION_MESSAGE_PATH),
        tuned=tuned,
    )


def package_digest(
    endpoint: LeptonEndpoint, source: ResolvedEndpointSource, settings: OperatorSettings
) -> str:
    """Digest of the package config before any tuning result is pinned into it."""
    wire = _package_config(endpoint, source, settings, None).to_wire()
    return hashlib.sha256(wire.encode()).hexdigest()[:16]


def render_package_config_map(
    endpoint: LeptonEndpoint,
    source: ResolvedEndpointSource,
    settings: OperatorSettings,
    tuned: TritonSettings | None = None,
) -> dict[str, Any]:
    config = _package_config(endpoint, source, settings, tuned)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(endpoint, config_map_name(endpoint)),
        "data": {CONFIG_FILE: config.to_wire()},
    }


def _http_probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
    }


def _package_annotations(
    endpoint: LeptonEndpoint, source: ResolvedEndpointSource, settings: OperatorSettings
) -> dict[str, str]:
    annotations = {PACKAGE_DIGEST_ANNOTATION: package_digest(endpoint, source, settings)}
    key = tuning_key(endpoint, source.model_uri)
    if key is not None:
        annotations[TUNING_KEY_ANNOTATION] = key
    return annotations


def render_deployment(
    endpoint: LeptonEndpoint,
    source: ResolvedEndpointSource,
    placement: Placement,
    settings: OperatorSettings,
) -> dict[str, Any]:
    spec = endpoint.spec
    resources = spec.resources
    storage = storage_for([source.model_uri], [source.secret_ref], settings.pvc_mount_root)
    repository_mount = {"name": "model-repository", "mountPath": MODEL_REPOSITORY}
    # Tuning measures the model on this pod's own share of the node (its CPUs, its GPU):
    # init containers run before Triton does, so asking for the same costs the pod nothing.
    package_resources = (
        container_resources(
            resources.cpu, resources.memory, resources.gpus, settings.gpu_resource, False
        )
        if spec.tuning is not None
        else container_resources("500m", "1Gi", 0, settings.gpu_resource, False)
    )
    fetch_model = {
        "name": PACKAGE_CONTAINER,
        "image": settings.runtime_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "lepton_runtime", "package", "--config", CONFIG_PATH],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "resources": package_resources,
        "securityContext": container_security_context(),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            config_mount(),
            repository_mount,
            {"name": "tmp", "mountPath": "/tmp"},
            *storage.mounts,
        ],
    }
    if storage.env_from:
        fetch_model["envFrom"] = storage.env_from
    name = model_name(endpoint)
    triton = {
        "name": "tritonserver",
        "image": spec.triton.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [
            "tritonserver",
            f"--model-repository={MODEL_REPOSITORY}",
            f"--http-port={HTTP_PORT}",
            f"--grpc-port={GRPC_PORT}",
            f"--metrics-port={METRICS_PORT}",
            "--strict-readiness=true",
            "--exit-on-error=true",
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT},
            {"name": "grpc", "containerPort": GRPC_PORT},
            {"name": "metrics", "containerPort": METRICS_PORT},
        ],
        # Ready only once the model is loaded: a Service never routes to an empty server.
        "readinessProbe": _http_probe(f"/v2/models/{name}/ready", period=5, failures=3),
        "livenessProbe": _http_probe("/v2/health/live", period=10, failures=3),
        # Large models take minutes to load; liveness must not kill them meanwhile.
        "startupProbe": _http_probe("/v2/health/ready", period=5, failures=120),
        # A deleted pod keeps serving while its endpoint leaves every node's Service rules
        # (kube-proxy, load balancers): without the pause, Triton stops first and new
        # connections routed to it in that window fail.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}},
        "resources": container_resources(
            resources.cpu, resources.memory, resources.gpus, settings.gpu_resource, False
        ),
        "securityContext": container_security_context(read_only_root=False),
        "volumeMounts": [
            {**repository_mount, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    pod_spec: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "initContainers": [fetch_model],
        "containers": [triton],
        "volumes": [
            config_volume(config_map_name(endpoint)),
            {"name": "model-repository", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
            *storage.volumes,
        ],
    }
    if placement.node_selector:
        pod_spec["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        pod_spec["tolerations"] = list(placement.tolerations)
    if spec.scheduling.priority_class_name:
        pod_spec["priorityClassName"] = spec.scheduling.priority_class_name
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = image_pull_secrets(settings.image_pull_secrets)
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": _selector(endpoint)},
        # A new version starts before an old one stops: no request meets zero ready replicas.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": template_metadata(
                child_labels("LeptonEndpoint", endpoint.metadata, COMPONENT),
                {
                    **owner_annotation("LeptonEndpoint", endpoint.metadata),
                    **_package_annotations(endpoint, source, settings),
                },
                spec.pod_metadata,
            ),
            "spec": pod_spec,
        },
    }
    # With autoscaling the HPA owns .spec.replicas; applying it too would fight the HPA.
    if spec.autoscaling is None:
        deployment_spec["replicas"] = 1 if spec.replicas is None else spec.replicas
    metadata = _metadata(endpoint, endpoint.metadata.name)
    if placement.pool is not None:  # status reads the pool back, and admission's view selects by it
        metadata["labels"][POOL_LABEL] = placement.pool
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": deployment_spec,
    }


def render_service(endpoint: LeptonEndpoint) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(endpoint, endpoint.metadata.name),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(endpoint),
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "appProtocol": "grpc"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }


def _hpa_metric(metric: str, target: int) -> dict[str, Any]:
    if metric == "cpu":
        return {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": target},
            },
        }
    name = QUEUE_TIME_METRIC if metric == "queue-time" else INFERENCE_RATE_METRIC
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": name},
            "target": {"type": "AverageValue", "averageValue": str(target)},
        },
    }


def render_hpa(endpoint: LeptonEndpoint) -> dict[str, Any] | None:
    autoscaling = endpoint.spec.autoscaling
    if autoscaling is None:
        return None
    name = endpoint.metadata.name
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(endpoint, name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [_hpa_metric(autoscaling.metric, autoscaling.target)],
        },
    }


def minimum_replicas(endpoint: LeptonEndpoint) -> int:
    spec = endpoint.spec
    if spec.autoscaling is not None:
        return spec.autoscaling.min_replicas
    return 1 if spec.replicas is None else spec.replicas


def render_pdb(endpoint: LeptonEndpoint) -> dict[str, Any] | None:
    """Only with more than one replica: a PDB over one replica would block node drains."""
    if minimum_replicas(endpoint) <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(endpoint, endpoint.metadata.name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(endpoint)}},
    }


def render_endpoint_children(
    endpoint: LeptonEndpoint,
    source: ResolvedEndpointSource,
    placement: Placement,
    settings: OperatorSettings,
) -> list[dict[str, Any]]:
    """ConfigMap, Deployment, Service, then the optional HPA and PDB, in apply order."""
    optional = [render_hpa(endpoint), render_pdb(endpoint)]
    tuned = pinned_choice(endpoint, source.model_uri)
    return [
        render_package_config_map(endpoint, source, settings, tuned),
        render_deployment(endpoint, source, placement, settings),
        render_service(endpoint),
        *[manifest for manifest in optional if manifest is not None],
    ]


def absent_optional_kinds(endpoint: LeptonEndpoint) -> list[str]:
    """Optional children the spec no longer wants (to delete after a spec change)."""
    absent = []
    if render_hpa(endpoint) is None:
        absent.append("HorizontalPodAutoscaler")
    if render_pdb(endpoint) is None:
        absent.append("PodDisruptionBudget")
    return absent
