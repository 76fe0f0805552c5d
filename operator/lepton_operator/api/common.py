"""Spec fragments that more than one Lepton kind uses: data, resources, scheduling, output."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, JsonValue

from lepton_operator.api.base import (
    LIST_MAX,
    NAME_MAX,
    OBJECT_NAME_PATTERN,
    URI_MAX,
    LeptonModel,
    LocalObjectReference,
    ObjectName,
    Quantity,
    SecretReference,
)

# Storage the runtime can read and write. pvc://<claim>/<path> mounts the claim into the pod.
# What becomes a label value on a child or a nodeSelector value (pool, GPU product, queue):
# at most 63, alphanumeric at both ends, or the API server refuses the child.
LABEL_VALUE_MAX = 63
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
INT32_MAX = 2**31 - 1  # what Kubernetes' own int32 fields (the PyTorchJob's) hold
# pvc://<claim>/<path>: the claim is an object name (a DNS subdomain); anything else there
# made the operator's look-up of the claim a 400 from the API server, not a reason.
_PVC_URI = r"pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(/.*)?"
ARTIFACT_URI_PATTERN = rf"^({_PVC_URI}|(file|s3|gs|https?)://.+)$"
DATASET_URI_PATTERN = rf"^({_PVC_URI}|(file|s3|gs|https?|synthetic)://.+)$"

PlacementPolicy = Literal["binpack", "least-loaded", "spread"]


class DatasetSpec(LeptonModel):
    """Where the data lives. The runtime reads it with fsspec; credentials come from a Secret."""

    uri: str = Field(max_length=URI_MAX, pattern=DATASET_URI_PATTERN)
    """Dataset location: file:///path, pvc://claim/path, s3://bucket/prefix, https://host/path,
    or synthetic://mnist for generated smoke-test data. MNIST is read in the IDX format."""
    format: Literal["idx", "synthetic"] = "idx"
    """On-disk format of the dataset."""
    secret_ref: SecretReference | None = None
    """Secret with credentials for s3:// or gs:// (never put credentials into the spec)."""


class OutputSpec(LeptonModel):
    """Where artifacts (weights, exported models, checkpoints) are written."""

    uri: str = Field(max_length=URI_MAX, pattern=ARTIFACT_URI_PATTERN)
    """Artifact location: pvc://claim/path, s3://bucket/prefix, file:///path (single node only)."""
    secret_ref: SecretReference | None = None
    """Secret with credentials for s3:// or gs://."""


class SchedulingSpec(LeptonModel):
    """Where the workload may run and how Lepton chooses among GPU node pools."""

    node_pool: str = Field(
        default="auto",
        max_length=LABEL_VALUE_MAX,
        pattern=r"^(auto|[a-z0-9]([-a-z0-9_.]*[a-z0-9])?)$",
    )
    """A node pool by name, or `auto` to let the operator pick one with the placement policy."""
    policy: PlacementPolicy = "binpack"
    """How `auto` chooses a pool: binpack (best fit: the nodes the workers land on keep the
    fewest GPUs free, so whole nodes stay free for large workers), least-loaded (lowest
    allocation ratio) or spread (most GPUs left free)."""
    priority_class_name: str | None = Field(
        default=None, max_length=NAME_MAX, pattern=OBJECT_NAME_PATTERN
    )
    """PriorityClass for the pods (preemption and queue order)."""
    queue_name: str | None = Field(
        default=None, max_length=LABEL_VALUE_MAX, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
    )
    """Kueue LocalQueue: when set, Kueue admits the job instead of the operator."""


class QueueAdmission(LeptonModel):
    """How Kueue admitted a job that names `scheduling.queueName` (from its Workload)."""

    local_queue: str = Field(max_length=LABEL_VALUE_MAX)
    """The LocalQueue the job was submitted to."""
    cluster_queue: str | None = Field(default=None, max_length=NAME_MAX)
    """The ClusterQueue whose quota it was admitted under."""
    admitted_at: datetime | None = None
    """When Kueue reserved its quota."""
    waited_seconds: int | None = Field(default=None, ge=0)
    """Seconds from its Workload's creation to admission."""


class RunPolicySpec(LeptonModel):
    """Lifecycle of the underlying PyTorchJob."""

    backoff_limit: int = Field(default=3, ge=0, le=100)
    """Restarts allowed before the job is marked Failed."""
    active_deadline_seconds: int | None = Field(default=None, ge=1, le=INT32_MAX)
    """Wall-clock limit for the job; it fails when exceeded."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0, le=INT32_MAX)
    """Delete the job's pods this long after it finished (the Lepton resource stays)."""
    clean_pod_policy: Literal["None", "Running", "All"] = "None"
    """Which pods to delete when the job finishes: None keeps logs around."""
    suspend: bool = False
    """Create the job suspended (no pods); set to false to start it."""


class WorkerResources(LeptonModel):
    """Resources of each worker of a distributed job."""

    workers: int = Field(default=1, ge=1, le=1024)
    """Number of workers (pods). One is the master; the rest are workers."""
    gpus_per_worker: int = Field(default=1, ge=0, le=16)
    """GPUs for each worker; torchrun starts one process per GPU (nprocPerNode)."""
    gpu_type: str | None = Field(
        default=None, max_length=LABEL_VALUE_MAX, pattern=LABEL_VALUE_PATTERN
    )
    """GPU product as GPU feature discovery labels it (nvidia.com/gpu.product),
    e.g. NVIDIA-A100-SXM4-80GB. Empty means any."""
    cpu: Quantity = "4"
    """CPU request and limit of each worker."""
    memory: Quantity = "16Gi"
    """Memory request and limit of each worker."""


# Label and annotation keys: an optional DNS-subdomain prefix and '/', then a name of at most 63
# characters; label values: at most 63, alphanumeric at both ends. The API server checks them
# on the pods; checked here too, a bad one is refused at admission, naming the field.
POD_METADATA_MAX = 64
_KEY_PREFIX = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[^/]*$"
_KEY_NAME = r"(^|/)[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
_KEY_MESSAGE = (
    "keys must be a name of at most 63 letters, digits, '-', '_' or '.' (alphanumeric at both "
    "ends), optionally prefixed by a DNS subdomain and '/', as in example.com/team"
)
# Two rules, not one: each stays within the API server's CEL cost budget for a rule.
_KEYS_ARE_QUALIFIED: list[JsonValue] = [
    {"rule": f"self.all(k, k.matches('{_KEY_PREFIX}'))", "message": _KEY_MESSAGE},
    {"rule": f"self.all(k, k.matches('{_KEY_NAME}'))", "message": _KEY_MESSAGE},
]
LabelValue = Annotated[str, Field(max_length=LABEL_VALUE_MAX, pattern=LABEL_VALUE_PATTERN)]


class PodMetadata(LeptonModel):
    """Extra metadata for every pod of the workload (service meshes, cost attribution, ...)."""

    labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=POD_METADATA_MAX,
        json_schema_extra={
            "maxProperties": POD_METADATA_MAX,
            "x-kubernetes-validations": _KEYS_ARE_QUALIFIED,
        },
    )
    """Labels added to each pod; Lepton's own labels win on a clash."""
    annotations: dict[str, str] = Field(
        default_factory=dict,
        max_length=POD_METADATA_MAX,
        json_schema_extra={
            "maxProperties": POD_METADATA_MAX,
            "x-kubernetes-validations": _KEYS_ARE_QUALIFIED,
        },
    )
    """Annotations added to each pod."""


class ModelSourceRefs(LeptonModel):
    """Common shape of a "where does the model come from" reference."""

    training_job_ref: LocalObjectReference | None = None
    """A LeptonTrainingJob in this namespace; its status.results.modelURI is used once it
    succeeds."""
    compression_ref: LocalObjectReference | None = None
    """A LeptonCompression in this namespace; its status.results.modelURI is used once it
    succeeds."""
    search_ref: LocalObjectReference | None = None
    """A LeptonSearch in this namespace; its best trial's model (status.results.modelURI) is
    used once the search succeeds."""
    model_uri: str | None = Field(
        default=None, alias="modelURI", max_length=URI_MAX, pattern=ARTIFACT_URI_PATTERN
    )
    """A model artifact URI produced elsewhere (file://, pvc://, s3://, https://)."""


EXACTLY_ONE_SOURCE_RULE: dict[str, JsonValue] = {
    "rule": "[has(self.trainingJobRef), has(self.compressionRef), has(self.searchRef), "
    "has(self.modelURI)].filter(x, x).size() == 1",
    "message": "set exactly one of trainingJobRef, compressionRef, searchRef or modelURI",
}


__all__ = [
    "ARTIFACT_URI_PATTERN",
    "DATASET_URI_PATTERN",
    "EXACTLY_ONE_SOURCE_RULE",
    "LIST_MAX",
    "DatasetSpec",
    "ModelSourceRefs",
    "ObjectName",
    "OutputSpec",
    "PlacementPolicy",
    "PodMetadata",
    "RunPolicySpec",
    "SchedulingSpec",
    "WorkerResources",
]
