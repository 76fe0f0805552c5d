"""The simulated node pools (``e2e/cluster.yaml``) and the fake Node objects kwok will manage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_CONFIG = Path(__file__).parent / "cluster.yaml"

POOL_LABEL = "lepton.ai/node-pool"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# The taint NVIDIA's GPU operator and managed clouds put on GPU nodes: only GPU pods land there.
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
# kwok manages only nodes carrying this annotation (cluster-up passes the same selector).
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")


class Pool(BaseModel):
    """One homogeneous group of nodes."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    nodes: int = Field(ge=0)
    gpus_per_node: int = Field(default=0, ge=0, alias="gpusPerNode")
    gpu_product: str | None = Field(default=None, alias="gpuProduct")
    cpu: str
    memory: str
    pods: int = Field(default=110, ge=1)

    def node_names(self) -> list[str]:
        return [f"{self.name}-{index}" for index in range(self.nodes)]


class ClusterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    job_pod_run_seconds: float = Field(default=2, gt=0, alias="jobPodRunSeconds")
    pools: list[Pool]

    @property
    def total_gpus(self) -> int:
        return sum(pool.nodes * pool.gpus_per_node for pool in self.pools)


def load(path: Path = DEFAULT_CONFIG) -> ClusterConfig:
    return ClusterConfig.model_validate(yaml.safe_load(path.read_text()))


def node_manifest(pool: Pool, name: str) -> dict[str, Any]:
    """A Node as a kubelet would register it, for kwok to keep Ready."""
    resources = {"cpu": pool.cpu, "memory": pool.memory, "pods": str(pool.pods)}
    labels = {
        POOL_LABEL: pool.name,
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
    }
    taints: list[dict[str, str]] = []
    if pool.gpus_per_node:
        resources[GPU_RESOURCE] = str(pool.gpus_per_node)
        labels[GPU_PRODUCT_LABEL] = pool.gpu_product or "unknown"
        labels["nvidia.com/gpu.count"] = str(pool.gpus_per_node)
        taints.append(dict(GPU_TAINT))
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]},
        },
        "spec": {"taints": taints},
        "status": {"capacity": resources, "allocatable": dict(resources)},
    }


def node_manifests(config: ClusterConfig) -> list[dict[str, Any]]:
    return [node_manifest(pool, name) for pool in config.pools for name in pool.node_names()]
