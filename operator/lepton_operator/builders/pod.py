"""Pod-level pieces every Lepton workload shares: storage, security, resources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lepton_operator.api.base import SecretReference
from lepton_operator.api.common import PodMetadata
from lepton_operator.builders.runtime_config import pvc_claims

CONFIG_DIR = "/etc/lepton"
CONFIG_FILE = "config.json"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_FILE}"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
NON_ROOT_UID = 1000


# The Pod Security Standards "restricted" profile: what a multi-tenant cluster enforces.
# Functions, not constants: every manifest gets its own dicts, so no caller can change another's.
def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "runAsGroup": NON_ROOT_UID,
        "fsGroup": NON_ROOT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(read_only_root: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
    }


@dataclass(frozen=True)
class PodStorage:
    """Volumes and how a container sees them."""

    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    env_from: list[dict[str, Any]] = field(default_factory=list)


def volume_name(claim: str) -> str:
    return f"pvc-{claim}"[:63].rstrip("-")


def storage_for(
    uris: list[str], secrets: list[SecretReference | None], pvc_mount_root: str
) -> PodStorage:
    """Mount every claim a pvc:// URI names; expose credentials Secrets as environment.

    Credentials stay in their Secret: the pod reads them through envFrom, the spec and the
    rendered config only ever hold the Secret's name.
    """
    claims = pvc_claims(*uris)
    volumes = [{"name": volume_name(c), "persistentVolumeClaim": {"claimName": c}} for c in claims]
    mounts = [{"name": volume_name(c), "mountPath": f"{pvc_mount_root}/{c}"} for c in claims]
    secret_names = list(dict.fromkeys(s.name for s in secrets if s is not None))
    env_from = [{"secretRef": {"name": name}} for name in secret_names]
    return PodStorage(volumes=volumes, mounts=mounts, env_from=env_from)


def config_volume(config_map: str) -> dict[str, Any]:
    return {"name": "config", "configMap": {"name": config_map}}


def scratch_volumes(shm_size: str | None) -> list[dict[str, Any]]:
    """/tmp for a read-only root filesystem and a memory-backed /dev/shm for DataLoader workers
    and NCCL, whose 64 MiB container default is far too small."""
    shm: dict[str, Any] = {"medium": "Memory"}
    if shm_size:
        shm["sizeLimit"] = shm_size
    return [{"name": "tmp", "emptyDir": {}}, {"name": "dshm", "emptyDir": shm}]


def scratch_mounts() -> list[dict[str, Any]]:
    return [{"name": "tmp", "mountPath": "/tmp"}, {"name": "dshm", "mountPath": "/dev/shm"}]


def config_mount() -> dict[str, Any]:
    return {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}


def container_resources(
    cpu: str, memory: str, gpus: int, gpu_resource: str, cpu_limit: bool
) -> dict[str, Any]:
    """Requests equal to limits for memory and GPUs (GPUs cannot be overcommitted anyway)."""
    requests: dict[str, Any] = {"cpu": cpu, "memory": memory}
    limits: dict[str, Any] = {"memory": memory}
    if cpu_limit:
        limits["cpu"] = cpu
    if gpus > 0:
        requests[gpu_resource] = gpus
        limits[gpu_resource] = gpus
    return {"requests": requests, "limits": limits}


def template_metadata(
    own_labels: dict[str, str], own_annotations: dict[str, str], extra: PodMetadata
) -> dict[str, Any]:
    """Pod template metadata: the user's labels and annotations, Lepton's on top (the operator
    and the Services select pods by the labels; the pod watch reads the owner annotation)."""
    return {
        "labels": {**extra.labels, **own_labels},
        "annotations": {**extra.annotations, **own_annotations},
    }


def image_pull_secrets(names: list[str]) -> list[dict[str, str]]:
    return [{"name": n} for n in names]
