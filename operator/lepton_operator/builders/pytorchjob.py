"""Render a Kubeflow PyTorchJob (and the ConfigMap with its runtime contract).

Training and compression both run as PyTorchJobs: the training operator creates the pods,
their Services and torchrun's environment (PET_* variables, MASTER_ADDR, RANK, WORLD_SIZE),
so the container only has to call torchrun with the runtime module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lepton_operator.api.base import ObjectMeta
from lepton_operator.api.common import PodMetadata, RunPolicySpec, WorkerResources
from lepton_operator.api.training import ElasticSpec
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
    PodStorage,
    config_mount,
    config_volume,
    container_resources,
    container_security_context,
    image_pull_secrets,
    pod_security_context,
    scratch_mounts,
    scratch_volumes,
    template_metadata,
)
from lepton_operator.scheduling.placement import Placement
from lepton_runtime.contract import CompressConfig, TrainConfig

PYTORCHJOB_API_VERSION = "kubeflow.org/v1"
# The training operator finds the training container by this name.
CONTAINER_NAME = "pytorch"
# DataLoader workers and NCCL share tensors through /dev/shm.
SHM_GIB_PER_GPU = 8


@dataclass(frozen=True)
class JobWorkload:
    """Everything a PyTorchJob needs besides its owner: what to run and where."""

    owner_kind: str
    owner: ObjectMeta
    name: str
    component: str
    command: list[str]
    config: TrainConfig | CompressConfig | None
    resources: WorkerResources
    run_policy: RunPolicySpec
    placement: Placement
    storage: PodStorage
    image: str
    image_pull_policy: str
    pull_secrets: list[str]
    gpu_resource: str
    metrics_port: int
    priority_class_name: str | None = None
    elastic: ElasticSpec | None = None
    queue_name: str | None = None
    pod_metadata: PodMetadata = field(default_factory=PodMetadata)


def runtime_command(subcommand: str) -> list[str]:
    """torchrun reads its rendezvous settings from the PET_* variables the training operator
    sets, so the same command serves one process or a hundred."""
    return ["torchrun", "-m", "lepton_runtime", subcommand, "--config", CONFIG_PATH]


def config_map_name(workload: JobWorkload) -> str:
    return f"{workload.name}-config"


def render_config_map(workload: JobWorkload) -> dict[str, Any] | None:
    """The contract the runtime reads; none for user code, which brings its own."""
    if workload.config is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(
            workload.owner_kind, workload.owner, config_map_name(workload), workload.component
        ),
        "data": {CONFIG_FILE: workload.config.to_wire()},
    }


def _pod_template(workload: JobWorkload) -> dict[str, Any]:
    resources = workload.resources
    gpus = resources.gpus_per_worker
    shm = f"{SHM_GIB_PER_GPU * gpus}Gi" if gpus else None
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": workload.image,
        "imagePullPolicy": workload.image_pull_policy,
        "command": workload.command,
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "ports": [{"name": "metrics", "containerPort": workload.metrics_port}],
        "resources": container_resources(
            resources.cpu, resources.memory, gpus, workload.gpu_resource, cpu_limit=False
        ),
        "securityContext": container_security_context(),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [*scratch_mounts(), *workload.storage.mounts],
    }
    volumes = [*scratch_volumes(shm), *workload.storage.volumes]
    if workload.config is not None:
        container["volumeMounts"].insert(0, config_mount())
        volumes.insert(0, config_volume(config_map_name(workload)))
    if workload.storage.env_from:
        container["envFrom"] = workload.storage.env_from
    spec: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }
    if workload.placement.node_selector:
        spec["nodeSelector"] = dict(workload.placement.node_selector)
    if workload.placement.tolerations:
        spec["tolerations"] = list(workload.placement.tolerations)
    if workload.priority_class_name:
        spec["priorityClassName"] = workload.priority_class_name
    if workload.pull_secrets:
        spec["imagePullSecrets"] = image_pull_secrets(workload.pull_secrets)
    labels = child_labels(workload.owner_kind, workload.owner, workload.component)
    owner = owner_annotation(workload.owner_kind, workload.owner)
    return {"metadata": template_metadata(labels, owner, workload.pod_metadata), "spec": spec}


def _replica(replicas: int, template: dict[str, Any]) -> dict[str, Any]:
    # OnFailure restarts a crashed worker in place; backoffLimit bounds how often.
    return {"replicas": replicas, "restartPolicy": "OnFailure", "template": template}


def render_pytorchjob(workload: JobWorkload) -> dict[str, Any]:
    """The PyTorchJob: a Master and (workers - 1) Workers, or only Workers when elastic
    (torchrun's c10d rendezvous then needs no fixed master)."""
    template = _pod_template(workload)
    workers = workload.resources.workers
    replica_specs: dict[str, Any]
    if workload.elastic is None:
        replica_specs = {"Master": _replica(1, template)}
        if workers > 1:
            replica_specs["Worker"] = _replica(workers - 1, template)
    else:
        replica_specs = {"Worker": _replica(workers, template)}
    policy = workload.run_policy
    run_policy: dict[str, Any] = {
        "backoffLimit": policy.backoff_limit,
        "cleanPodPolicy": policy.clean_pod_policy,
        # With Kueue the job starts suspended and Kueue unsuspends it on admission.
        "suspend": policy.suspend or workload.queue_name is not None,
    }
    if policy.active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = policy.active_deadline_seconds
    if policy.ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = policy.ttl_seconds_after_finished
    spec: dict[str, Any] = {
        "runPolicy": run_policy,
        "nprocPerNode": str(max(workload.resources.gpus_per_worker, 1)),
        "pytorchReplicaSpecs": replica_specs,
    }
    if workload.elastic is not None:
        spec["elasticPolicy"] = {
            "minReplicas": workload.elastic.min_workers,
            "maxReplicas": workload.elastic.max_workers,
            "maxRestarts": workload.elastic.max_restarts,
            "rdzvBackend": "c10d",
        }
    metadata = child_metadata(
        workload.owner_kind, workload.owner, workload.name, workload.component
    )
    if workload.queue_name is not None:
        metadata["labels"]["kueue.x-k8s.io/queue-name"] = workload.queue_name
    if workload.placement.pool is not None:
        metadata["labels"][POOL_LABEL] = workload.placement.pool
    return {
        "apiVersion": PYTORCHJOB_API_VERSION,
        "kind": "PyTorchJob",
        "metadata": metadata,
        "spec": spec,
    }
