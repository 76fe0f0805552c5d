"""LeptonEndpoint: a model served by NVIDIA Triton over the Open Inference Protocol."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, JsonValue

from lepton_operator.api.base import (
    LIST_MAX,
    NAME_MAX,
    TEXT_MAX,
    URI_MAX,
    Condition,
    EndpointPhase,
    LeptonModel,
    ObjectMeta,
    Quantity,
)
from lepton_operator.api.common import (
    EXACTLY_ONE_SOURCE_RULE,
    LABEL_VALUE_MAX,
    LABEL_VALUE_PATTERN,
    ModelSourceRefs,
    PodMetadata,
    SchedulingSpec,
)

TritonBackend = Literal["pytorch_libtorch", "onnxruntime", "python"]
ModelFormat = Literal["torchscript", "onnx", "state-dict"]
AutoscalingMetric = Literal["cpu", "queue-time", "inference-rate"]

DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"


class EndpointSource(ModelSourceRefs):
    """The model to serve."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                EXACTLY_ONE_SOURCE_RULE,
                {
                    "rule": "!has(self.format) || has(self.modelURI)",
                    "message": "source.format applies to source.modelURI only: Lepton knows "
                    "the format of its own jobs' artifacts",
                },
            ]
        }
    )

    format: ModelFormat | None = None
    """Format of the artifact at modelURI (torchscript or onnx)."""


class DynamicBatchingSpec(LeptonModel):
    """Triton's dynamic batcher: combine concurrent requests into one batch."""

    enabled: bool = True
    """Turn the dynamic batcher on (the default) or off."""
    preferred_batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "set", "default": []},
    )
    """Batch sizes the batcher aims for (each <= triton.maxBatchSize)."""
    max_queue_delay_microseconds: int = Field(default=100, ge=0, le=10_000_000)
    """How long a request may wait for others to join its batch."""


class InstanceGroupSpec(LeptonModel):
    """How many copies of the model Triton runs, and where."""

    count: int = Field(default=1, ge=1, le=64)
    """Model instances per replica."""
    kind: Literal["auto", "cpu", "gpu"] = "auto"
    """auto: on the GPU when the replica has one, else the CPU."""


class TritonSpec(LeptonModel):
    """The Triton Inference Server that serves the model."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    # The apiserver checks these rules against `default: {}` too, before
                    # nested defaults are filled in: every field read must be guarded by has().
                    "rule": "!has(self.dynamicBatching) || !has(self.maxBatchSize) || "
                    "!has(self.dynamicBatching.preferredBatchSizes) || "
                    "self.dynamicBatching.preferredBatchSizes.all(b, b <= self.maxBatchSize)",
                    "message": "every triton.dynamicBatching.preferredBatchSizes entry must be "
                    "<= triton.maxBatchSize",
                },
                {
                    "rule": "!has(self.dynamicBatching) || !has(self.maxBatchSize) || "
                    "!has(self.dynamicBatching.enabled) || !self.dynamicBatching.enabled || "
                    "self.maxBatchSize > 0",
                    "message": "dynamic batching needs triton.maxBatchSize > 0: raise "
                    "maxBatchSize or set dynamicBatching.enabled to false",
                },
            ]
        }
    )

    image: str = Field(default=DEFAULT_TRITON_IMAGE, min_length=1, max_length=URI_MAX)
    """Triton server image."""
    backend: TritonBackend = "pytorch_libtorch"
    """pytorch_libtorch (TorchScript), onnxruntime (ONNX) or python."""
    max_batch_size: int = Field(default=32, ge=0, le=4096)
    """Largest batch Triton forms; 0 disables batching."""
    dynamic_batching: DynamicBatchingSpec = Field(
        default_factory=DynamicBatchingSpec, json_schema_extra={"default": {}}
    )
    """Dynamic batching (on by default)."""
    instance_group: InstanceGroupSpec = Field(
        default_factory=InstanceGroupSpec, json_schema_extra={"default": {}}
    )
    """Model instances per replica."""
    model_name: str | None = Field(
        default=None, max_length=NAME_MAX, pattern=r"^[a-zA-Z0-9][-a-zA-Z0-9_.]*$"
    )
    """Name the model is served under; defaults to the endpoint's name."""


class AutoscalingSpec(LeptonModel):
    """Horizontal autoscaling (autoscaling/v2) between minReplicas and maxReplicas."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "autoscaling.minReplicas must be less than or equal to "
                    "autoscaling.maxReplicas",
                }
            ]
        }
    )

    min_replicas: int = Field(default=1, ge=1, le=1000)
    """Fewest replicas."""
    max_replicas: int = Field(ge=1, le=1000)
    """Most replicas."""
    metric: AutoscalingMetric = "cpu"
    """cpu (utilisation), queue-time (Triton queue time per request, microseconds, through the
    custom-metrics API) or inference-rate (requests per second per replica)."""
    target: int = Field(default=70, ge=1, le=1_000_000_000)  # the HPA holds an int32
    """Target value of the metric: percent for cpu, microseconds for queue-time,
    requests/s for inference-rate."""


class EndpointResources(LeptonModel):
    """Resources of each replica."""

    gpus: int = Field(default=0, ge=0, le=16)
    """GPUs per replica (0 serves on the CPU)."""
    gpu_type: str | None = Field(
        default=None, max_length=LABEL_VALUE_MAX, pattern=LABEL_VALUE_PATTERN
    )
    """GPU product (nvidia.com/gpu.product), e.g. NVIDIA-A100-SXM4-80GB."""
    cpu: Quantity = "2"
    """CPU request of each replica."""
    memory: Quantity = "4Gi"
    """Memory request and limit of each replica."""


def _int_set(default: list[int], max_items: int = 16) -> Any:
    """A list-type set of bounded integers with a default (one tuning dimension)."""
    schema_default: list[JsonValue] = list(default)
    return Field(
        default_factory=lambda: list(default),
        min_length=1,
        max_length=max_items,
        json_schema_extra={"x-kubernetes-list-type": "set", "default": schema_default},
    )


ServedFormat = Literal["torchscript", "onnx"]
"""The model files the python backend can run (a state dict is not served). In the order of
the runtime's ExportFormat: typing treats Literals of the same values as one type whatever
their order, and pydantic reuses the schema of the first it meets, so another order would
make the CRD's enum depend on which module built its schema first."""


def _both_formats() -> list[ServedFormat]:
    return ["onnx", "torchscript"]


class TuningSpaceSpec(LeptonModel):
    """The Triton settings tuning may choose from; each list is one dimension of the search."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.preferredBatchSizes) || !has(self.maxBatchSizes) || "
                    "self.preferredBatchSizes.all(p, self.maxBatchSizes.exists(m, p <= m))",
                    "message": "every tuning.space.preferredBatchSizes entry must be <= the "
                    "largest tuning.space.maxBatchSizes entry: lower it or add a larger "
                    "maxBatchSizes entry",
                }
            ]
        }
    )

    max_batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = _int_set([1, 4, 8, 16, 32, 64])
    """maxBatchSize values to try."""
    max_queue_delays_microseconds: list[Annotated[int, Field(ge=0, le=10_000_000)]] = _int_set(
        [0, 100, 500, 2000]
    )
    """dynamicBatching.maxQueueDelayMicroseconds values to try."""
    preferred_batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "set", "default": []},
    )
    """Preferred batch sizes to try one at a time, besides none (default: none only)."""
    instance_counts: list[Annotated[int, Field(ge=1, le=64)]] = _int_set([1, 2], 8)
    """instanceGroup.count values to try."""
    model_formats: list[ServedFormat] = Field(
        default_factory=_both_formats,
        min_length=1,
        max_length=2,
        json_schema_extra={"x-kubernetes-list-type": "set", "default": ["onnx", "torchscript"]},
    )
    """Files of the model the python backend may run, tried where the model has them: onnx
    (ONNX Runtime) and torchscript (torch); the first is where the search starts."""


class TuningSpec(LeptonModel):
    """Measure Triton configurations under load before serving and serve the fastest whose
    p99 latency stays within the budget."""

    latency_budget_ms: float = Field(gt=0, le=60_000)
    """p99 latency, in milliseconds, every concurrency level must stay within."""
    concurrency: list[Annotated[int, Field(ge=1, le=1024)]] = _int_set([8], 4)
    """Concurrent closed-loop clients to measure at (one value, or up to four: throughput
    counts at the highest, the budget at every one)."""
    space: TuningSpaceSpec = Field(
        default_factory=TuningSpaceSpec, json_schema_extra={"default": {}}
    )
    """What tuning may change (defaults: batch 1-64, delay 0-2000 us, 1-2 instances, ONNX
    and TorchScript where the model has both)."""
    seconds_per_candidate: float = Field(default=1.5, ge=0.2, le=60)
    """Measured load per candidate and concurrency level."""
    strategy: Literal["quick", "grid"] = "quick"
    """quick: hill-climb one setting at a time until throughput stops rising; grid: measure
    every candidate."""


class EndpointSpec(LeptonModel):
    """Desired state of a LeptonEndpoint."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.replicas) && has(self.autoscaling))",
                    "message": "set either replicas or autoscaling, not both",
                },
                {
                    "rule": "!has(self.resources.gpuType) || self.resources.gpus > 0",
                    "message": "resources.gpuType is set but resources.gpus is 0: ask for at "
                    "least one GPU or remove gpuType",
                },
                {
                    "rule": "!has(self.tuning) || (has(self.triton.backend) && "
                    "self.triton.backend == 'python')",
                    "message": "tuning measures the python backend (the Triton of the runtime "
                    "image has no other): set triton.backend to python, or remove tuning",
                    "fieldPath": ".tuning",
                },
            ]
        }
    )

    source: EndpointSource
    """The model to serve."""
    triton: TritonSpec = Field(default_factory=TritonSpec, json_schema_extra={"default": {}})
    """Triton server settings."""
    replicas: int | None = Field(default=None, ge=0, le=1000)
    """Fixed number of replicas (default 1); use autoscaling instead to scale with load."""
    autoscaling: AutoscalingSpec | None = None
    """Scale replicas with load."""
    resources: EndpointResources = Field(
        default_factory=EndpointResources, json_schema_extra={"default": {}}
    )
    """What each replica gets."""
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec, json_schema_extra={"default": {}}
    )
    """Node pool choice and placement policy."""
    pod_metadata: PodMetadata = Field(
        default_factory=PodMetadata, json_schema_extra={"default": {}}
    )
    """Labels and annotations added to every pod."""
    tuning: TuningSpec | None = None
    """Tune maxBatchSize, the queue delay, the instance count and the model format to a
    latency budget by measuring them on the real Triton before serving (python backend)."""


class TuningCandidate(LeptonModel):
    """One configuration as measured."""

    max_batch_size: int = Field(ge=1)
    """maxBatchSize."""
    preferred_batch_size: int | None = Field(default=None, ge=1)
    """The preferred batch size, if any."""
    max_queue_delay_microseconds: int = Field(ge=0)
    """dynamicBatching.maxQueueDelayMicroseconds."""
    instances: int = Field(ge=1)
    """instanceGroup.count."""
    model_format: ServedFormat | None = None
    """The model file the python backend ran (none: the model offers no choice)."""
    throughput: float = Field(ge=0)
    """Requests per second at the highest concurrency level."""
    p50_ms: float = Field(ge=0)
    """Median latency there."""
    p99_ms: float = Field(ge=0)
    """Highest p99 latency over the concurrency levels."""
    within_budget: bool
    """p99Ms <= latencyBudgetMs."""


class EndpointTuningStatus(LeptonModel):
    """What the last tuning run measured and chose."""

    key: str = Field(max_length=64)
    """Digest of the model URI and spec.tuning it ran for: an unchanged key reuses the
    choice without measuring again."""
    chosen: TuningCandidate
    """The configuration served."""
    budget_met: bool
    """False: no candidate met the budget and the fastest is served (phase Degraded)."""
    best_p99_ms: float = Field(ge=0)
    """Lowest p99 any candidate reached."""
    seconds: float = Field(ge=0)
    """Wall time of the tuning run."""
    strategy: Literal["quick", "grid"]
    """How the space was searched."""
    grid_size: int = Field(ge=0)
    """Candidates in the whole space."""
    candidates: list[TuningCandidate] = Field(default_factory=list, max_length=64)
    """Every candidate measured, in the order tried."""


class EndpointStatus(LeptonModel):
    """Observed state of a LeptonEndpoint, written by the operator only."""

    phase: EndpointPhase = "Pending"
    """Pending, Queued (waiting for GPUs), Progressing, Available, Degraded or Failed."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=LIST_MAX,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Latest observations: Ready, Admitted (GPU endpoints), Available, Progressing, Degraded."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation this status describes."""
    message: str | None = Field(default=None, max_length=TEXT_MAX)
    """One line on the current state, for humans."""
    url: str | None = Field(default=None, max_length=URI_MAX)
    """In-cluster URL of the Open Inference Protocol (KServe v2) HTTP endpoint."""
    grpc_address: str | None = Field(default=None, max_length=URI_MAX)
    """In-cluster host:port of the gRPC endpoint."""
    replicas: int | None = Field(default=None, ge=0)
    """Replicas the Deployment has."""
    ready_replicas: int | None = Field(default=None, ge=0)
    """Replicas that serve."""
    model_name: str | None = Field(default=None, max_length=NAME_MAX)
    """Name the model is served under."""
    model_version: str | None = Field(default=None, max_length=64)
    """Version of the served model."""
    model_uri: str | None = Field(default=None, alias="modelURI", max_length=URI_MAX)
    """The artifact being served."""
    pool: str | None = Field(default=None, max_length=NAME_MAX)
    """The node pool the replicas were placed on."""
    queue_position: int | None = Field(default=None, ge=1)
    """While Queued: the endpoint's place in the GPU admission queue (1 is next)."""
    tuning: EndpointTuningStatus | None = None
    """The tuning result being served (spec.tuning)."""


class LeptonEndpoint(LeptonModel):
    """A model served by NVIDIA Triton Inference Server."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = "lepton.ai/v1alpha1"
    kind: Literal["LeptonEndpoint"] = "LeptonEndpoint"
    metadata: ObjectMeta
    spec: EndpointSpec
    status: EndpointStatus | None = None
