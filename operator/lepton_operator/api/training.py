"""LeptonTrainingJob: distributed PyTorch training that the operator runs as a PyTorchJob."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from lepton_operator.api.base import (
    LIST_MAX,
    NAME_MAX,
    TEXT_MAX,
    URI_MAX,
    Condition,
    JobPhase,
    LeptonModel,
    ObjectMeta,
)
from lepton_operator.api.common import (
    DatasetSpec,
    OutputSpec,
    PodMetadata,
    QueueAdmission,
    RunPolicySpec,
    SchedulingSpec,
    WorkerResources,
)

BuiltinModel = Literal["leptonnet", "mlp"]
Optimizer = Literal["sgd", "adam", "adamw"]


# package.module:function. Spelled out, not \w: the API server's regular expressions (Go's RE2)
# read \w as ASCII, the model's as Unicode, and "a:aµ" passed one and not the other.
FACTORY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"


class ModelParameters(LeptonModel):
    """Shape of a built-in model. Fields that do not apply to the chosen model are ignored."""

    width_multiplier: float = Field(default=1.0, ge=0.125, le=8.0)
    """leptonnet: scales the channels of every stage."""
    depth_multiplier: float = Field(default=1.0, ge=0.25, le=8.0)
    """leptonnet: scales the number of conv blocks per stage."""
    stages: int = Field(default=3, ge=1, le=4)
    """leptonnet: stages, max-pooled between them (32, 64, 128, 256 channels at width 1.0)."""
    blocks_per_stage: int | None = Field(default=None, ge=1, le=8)
    """leptonnet: conv blocks in every stage; unset, depthMultiplier scales 1/2/2(/2)."""
    kernel_size: Literal[3, 5, 7] = 3
    """leptonnet: side of every convolution kernel."""
    activation: Literal["relu", "gelu", "silu"] = "relu"
    """leptonnet: the non-linearity after every normalisation."""
    normalization: Literal["batch", "group", "none"] = "batch"
    """leptonnet: batch norm, group norm or none after every convolution."""
    convolution: Literal["standard", "separable"] = "standard"
    """leptonnet: standard convolutions, or depthwise-separable ones (depthwise k x k, then
    pointwise 1 x 1: an eighth of the weights at width 1.0) in every block but the first."""
    dropout: float = Field(default=0.1, ge=0, le=0.9)
    """leptonnet: dropout before the classifier head."""
    hidden_sizes: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(
        default_factory=lambda: [256, 128], max_length=16
    )
    """mlp: width of each hidden layer."""
    num_classes: int = Field(default=10, ge=2, le=100000)
    """Number of output classes."""
    in_channels: int = Field(default=1, ge=1, le=16)
    """Channels of the input images (1 for MNIST)."""
    image_size: int = Field(default=28, ge=8, le=1024)
    """Height and width of the (square) input images."""


class ModelSpec(LeptonModel):
    """What to train: a built-in model, a model factory in the runtime image, or your own code."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.name), has(self.factory), has(self.command)]"
                    ".filter(x, x).size() == 1",
                    "message": "set exactly one of model.name (a built-in model), model.factory "
                    "(package.module:function) or model.command (your own training code)",
                },
                {
                    "rule": "!has(self.command) || has(self.image)",
                    "message": "model.command runs your own code: set model.image to the image "
                    "that contains it",
                },
                {
                    "rule": "!has(self.maxParameters) || !has(self.command)",
                    "message": "model.maxParameters is checked by the Lepton runtime, which does "
                    "not run model.command: drop one of them",
                },
            ]
        }
    )

    name: BuiltinModel | None = None
    """A built-in model: leptonnet (a small hierarchical CNN family) or mlp."""
    factory: str | None = Field(default=None, max_length=NAME_MAX, pattern=FACTORY_PATTERN)
    """A function returning a torch.nn.Module, as package.module:function, importable in the
    runtime image (or in model.image)."""
    parameters: ModelParameters = Field(
        default_factory=ModelParameters, json_schema_extra={"default": {}}
    )
    """Shape of a built-in model."""
    image: str | None = Field(default=None, min_length=1, max_length=URI_MAX)
    """Container image to run instead of the Lepton runtime image."""
    command: list[str] | None = Field(default=None, min_length=1, max_length=LIST_MAX)
    """Command of your own training code (torchrun's environment is set for it)."""
    max_parameters: int | None = Field(default=None, ge=1, le=10**12)
    """The job fails at once, before training, when the model has more trainable parameters.
    A search's trials get objective.maxParameters here: one over the limit costs seconds, not
    its epochs."""


DEFAULT_EPOCHS = 5


class HyperParameters(LeptonModel):
    """Optimisation settings passed to the training loop."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.scheduleEpochs) || self.scheduleEpochs >= self.epochs",
                    "message": "hyperparameters.scheduleEpochs is the length of the "
                    "learning-rate schedule and must be at least hyperparameters.epochs",
                }
            ]
        }
    )

    epochs: int = Field(default=DEFAULT_EPOCHS, ge=1, le=10000)
    """Passes over the training set."""
    schedule_epochs: int | None = Field(default=None, ge=1, le=10000)
    """Length of the learning-rate schedule in epochs (default: epochs). A job that trains the
    first epochs of a longer run, to be continued from its checkpoint by a job with more
    epochs (a search's successive-halving rungs), sets the longer run's length here."""
    batch_size: int = Field(default=128, ge=1, le=65536)
    """Batch size per process (the global batch is this times the world size)."""
    learning_rate: float = Field(default=0.001, gt=0, le=10)
    """Initial learning rate (cosine-decayed over the run)."""
    optimizer: Optimizer = "adamw"
    """sgd (with momentum 0.9), adam or adamw."""
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    """L2 penalty (decoupled for adamw)."""
    seed: int = Field(default=42, ge=0, le=2**31 - 1)
    """Seed for weights, shuffling and augmentation: the same seed gives the same run."""


class ElasticSpec(LeptonModel):
    """Elastic training: torchrun rendezvous lets the job run with between min and max workers."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.minWorkers <= self.maxWorkers",
                    "message": "elastic.minWorkers must be less than or equal to "
                    "elastic.maxWorkers",
                }
            ]
        }
    )

    min_workers: int = Field(ge=1, le=1024)
    """Fewest workers the job runs with."""
    max_workers: int = Field(ge=1, le=1024)
    """Most workers the job scales to."""
    max_restarts: int = Field(default=3, ge=0, le=100)
    """Rendezvous restarts (after a worker is lost) before the job fails."""


class CheckpointSpec(LeptonModel):
    """Periodic checkpoints so a restarted worker loses at most `everySteps` steps."""

    every_steps: int = Field(default=200, ge=1, le=10_000_000)
    """Write a checkpoint every this many optimizer steps (and at the end of each epoch)."""
    resume: bool = True
    """Resume from the newest checkpoint in the output location when the job restarts."""


class TrainingJobSpec(LeptonModel):
    """Desired state of a LeptonTrainingJob."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.elastic) || "
                    "(self.elastic.minWorkers <= self.resources.workers && "
                    "self.resources.workers <= self.elastic.maxWorkers)",
                    "message": "resources.workers must lie between elastic.minWorkers and "
                    "elastic.maxWorkers",
                },
                {
                    "rule": "!has(self.resources.gpuType) || self.resources.gpusPerWorker > 0",
                    "message": "resources.gpuType is set but resources.gpusPerWorker is 0: "
                    "ask for at least one GPU or remove gpuType",
                },
            ]
        }
    )

    model: ModelSpec
    """What to train."""
    dataset: DatasetSpec
    """Training data (the held-out test split is read from the same location)."""
    output: OutputSpec
    """Where weights, the TorchScript export and checkpoints are written."""
    hyperparameters: HyperParameters = Field(
        default_factory=HyperParameters, json_schema_extra={"default": {}}
    )
    """Optimisation settings."""
    resources: WorkerResources = Field(
        default_factory=WorkerResources, json_schema_extra={"default": {}}
    )
    """Workers and what each of them gets."""
    elastic: ElasticSpec | None = None
    """Let the job run with a varying number of workers."""
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec, json_schema_extra={"default": {}}
    )
    """Node pool choice, placement policy, priority and queue."""
    checkpoint: CheckpointSpec = Field(
        default_factory=CheckpointSpec, json_schema_extra={"default": {}}
    )
    """Checkpoint frequency and resume behaviour."""
    run_policy: RunPolicySpec = Field(
        default_factory=RunPolicySpec, json_schema_extra={"default": {}}
    )
    """Restarts, deadlines and clean-up of the underlying PyTorchJob."""
    pod_metadata: PodMetadata = Field(
        default_factory=PodMetadata, json_schema_extra={"default": {}}
    )
    """Labels and annotations added to every pod."""


class TrainingResults(LeptonModel):
    """What the training run produced, copied from the runtime's final summary."""

    accuracy: float | None = Field(default=None, ge=0, le=1)
    """Accuracy on the held-out test split."""
    loss: float | None = None
    """Final training loss."""
    epochs: int | None = Field(default=None, ge=0)
    """Epochs completed."""
    samples_per_second: float | None = Field(default=None, ge=0)
    """Training throughput over all workers."""
    parameters: int | None = Field(default=None, ge=0)
    """Trainable parameters of the model."""
    latency_ms: float | None = Field(default=None, ge=0)
    """Median batch-1 inference latency on the evaluation data, in milliseconds."""
    size_bytes: int | None = Field(default=None, ge=0)
    """Size of the exported weights, in bytes."""
    model_uri: str | None = Field(default=None, alias="modelURI", max_length=URI_MAX)
    """Where the trained model was written; compression and endpoints read it from here."""
    last_checkpoint: str | None = Field(default=None, max_length=URI_MAX)
    """The newest checkpoint."""
    resumed_from_step: int | None = Field(default=None, ge=0)
    """The step of the checkpoint the final run started from (a restarted worker, a resumed
    rung or a job queued again after preemption); absent when it started from scratch."""


class TrainingJobStatus(LeptonModel):
    """Observed state of a LeptonTrainingJob, written by the operator only."""

    phase: JobPhase = "Pending"
    """Pending, Queued, Running, Succeeded, Failed or Suspended."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=LIST_MAX,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Latest observations: Ready, Admitted, Running, Succeeded, Failed."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation this status describes."""
    message: str | None = Field(default=None, max_length=TEXT_MAX)
    """One line on the current state, for humans."""
    pool: str | None = Field(default=None, max_length=NAME_MAX)
    """The node pool the job was placed on."""
    gpus: int | None = Field(default=None, ge=0)
    """GPUs the job holds over all workers."""
    queue_position: int | None = Field(default=None, ge=1)
    """Position in the admission queue while Queued."""
    queue_admission: QueueAdmission | None = None
    """Which Kueue queues admitted the job and how long it waited (`scheduling.queueName`)."""
    workers_ready: int | None = Field(default=None, ge=0)
    """Workers whose pods are running."""
    start_time: datetime | None = None
    """When the job started running."""
    completion_time: datetime | None = None
    """When the job succeeded or failed."""
    results: TrainingResults | None = None
    """Outcome of a successful run."""


class LeptonTrainingJob(LeptonModel):
    """A distributed PyTorch training job on a GPU node pool."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = "lepton.ai/v1alpha1"
    kind: Literal["LeptonTrainingJob"] = "LeptonTrainingJob"
    metadata: ObjectMeta
    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None
