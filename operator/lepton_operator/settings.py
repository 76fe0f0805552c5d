"""Operator settings, from environment variables prefixed LEPTON_ (pydantic-settings).

LEPTON_RUNTIME_IMAGE=registry.local/lepton/runtime:0.1.0 lepton-operator
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_RUNTIME_IMAGE = "lepton/runtime:0.1.0"
POOL_LABEL_FALLBACKS = (
    "karpenter.sh/nodepool",
    "cloud.google.com/gke-nodepool",
    "eks.amazonaws.com/nodegroup",
    "kubernetes.azure.com/agentpool",
)


class OperatorSettings(BaseSettings):
    """Everything an installation may want to change, with defaults that work out of the box."""

    model_config = SettingsConfigDict(env_prefix="LEPTON_", frozen=True)

    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    """Image with the Lepton runtime (torch) that training and compression pods run."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Pull policy of the runtime and Triton containers."""
    image_pull_secrets: list[str] = Field(default_factory=list)
    """Secrets for pulling the runtime and Triton images (JSON list in the environment)."""
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch; empty means the whole cluster."""
    pool_label: str = "lepton.ai/node-pool"
    """Node label that names a node's pool (also recognised: Karpenter, GKE, EKS, AKS labels)."""
    gpu_product_label: str = "nvidia.com/gpu.product"
    """Node label with the GPU product, as GPU feature discovery sets it."""
    gpu_resource: str = "nvidia.com/gpu"
    """Extended resource name of a GPU."""
    pvc_mount_root: str = "/mnt/lepton/pvc"
    """Where pods mount the claims that pvc:// URIs name."""
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    """Port of the operator's Prometheus metrics (0 turns the endpoint off)."""
    health_port: int = Field(default=8081, ge=1, le=65535)
    """Port of the liveness endpoint (/healthz)."""
    bind_address: str = "0.0.0.0"  # in a pod, the kubelet and Prometheus must reach it
    """Address the metrics and health endpoints listen on."""
    runtime_metrics_port: int = Field(default=9400, ge=1, le=65535)
    """Port on which training pods expose live progress."""
    source_poll_seconds: float = Field(default=15.0, gt=0)
    """How often a resource waiting for its source checks again."""
    admission_starvation_seconds: float = Field(default=600.0, gt=0)
    """After this long in the queue, the job first in line that does not fit gets its pool held:
    smaller jobs behind it stop starting there, so it is not overtaken forever."""
    admission_resync_seconds: float = Field(default=300.0, gt=0)
    """The admission queue's safety resync: list nodes, pods and PyTorchJobs again this often
    (its watches keep the view current in between)."""
    admission_position_refresh_seconds: float = Field(default=30.0, ge=0)
    """A queued job's status.queuePosition is refreshed at most this often when only its
    position moved (a new reason is published at once): with a thousand jobs queued, every
    admission moves them all."""
    admission_positions_per_second: float = Field(default=5.0, gt=0)
    """At most this many position-only status updates per second in all, the front of the
    queue first: a bound on what a long queue costs while capacity frees continuously."""
    admission_preemption: bool = False
    """Let a gang that fits only by evicting jobs of lower priority evict them (whole jobs,
    lowest priority and youngest first; evicted training jobs are queued again and resume from
    their newest checkpoint). Off by default: turning it on lets priorities stop running work."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the operator."""
    cluster_domain: str = "cluster.local"
    """DNS suffix of in-cluster Service names, for endpoint URLs."""
