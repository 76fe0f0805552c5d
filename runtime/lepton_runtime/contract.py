"""The contract between the operator and the runtime.

The operator renders these models as JSON into a ConfigMap and copies the summaries the runtime
writes to the termination message back into CR status, so this module must stay importable
without torch: pydantic and the standard library only. On the wire every field is camelCase
(the Kubernetes convention); Python code may use either spelling.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

DEFAULT_TERMINATION_PATH = "/dev/termination-log"


class ContractModel(BaseModel):
    """Base of every contract model: camelCase aliases, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    def to_wire(self) -> str:
        """JSON with camelCase keys, as the operator writes it into the ConfigMap."""
        return self.model_dump_json(by_alias=True, indent=2)


# --------------------------------------------------------------------------- models


class LeptonNetSpec(ContractModel):
    """The built-in CNN family: stages of conv-bn-relu blocks, scaled by two multipliers."""

    name: Literal["leptonnet"] = "leptonnet"
    """Model family discriminator."""
    width_multiplier: float = Field(1.0, gt=0, le=8)
    """Scales the channel count of every stage (1.0 = 32/64/128 channels)."""
    depth_multiplier: float = Field(1.0, gt=0, le=8)
    """Scales the number of conv blocks per stage (1.0 = 1/2/2 blocks)."""
    stages: int = Field(3, ge=1, le=4)
    """Stages, max-pooled between them; stage i has 32 * 2**i channels before the width
    multiplier (a fourth stage: 256)."""
    blocks_per_stage: int | None = Field(None, ge=1, le=8)
    """Conv blocks in every stage; unset, the depth multiplier scales 1/2/2(/2)."""
    kernel_size: Literal[3, 5, 7] = 3
    """Side of every convolution kernel."""
    activation: Literal["relu", "gelu", "silu"] = "relu"
    """Non-linearity after every normalisation."""
    normalization: Literal["batch", "group", "none"] = "batch"
    """Normalisation after every convolution: batch norm, group norm (groups of 4 channels at
    most 8 groups), or none."""
    convolution: Literal["standard", "separable"] = "standard"
    """Standard k x k convolutions, or depthwise-separable ones (a depthwise k x k and a
    pointwise 1 x 1 block: far fewer weights, as in MobileNet) in every block but the first."""
    num_classes: int = Field(10, ge=2, le=100_000)
    """Number of output classes."""
    in_channels: int = Field(1, ge=1, le=16)
    """Channels of the input images (1 for MNIST)."""
    dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout before the classifier head."""


class MLPSpec(ContractModel):
    """A plain multi-layer perceptron over flattened images."""

    name: Literal["mlp"] = "mlp"
    """Model family discriminator."""
    hidden_sizes: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(
        default_factory=lambda: [256, 128], max_length=16
    )
    """Width of each hidden layer, in order."""
    num_classes: int = Field(10, ge=2, le=100_000)
    """Number of output classes."""
    input_size: int = Field(784, ge=1)
    """Number of input features (flattened image size)."""


_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class UserModelSpec(ContractModel):
    """A model the user brings: `package.module:factory`, called with `kwargs`."""

    name: Literal["custom"] = "custom"
    """Model family discriminator."""
    factory: str
    """Import path `package.module:callable` returning a `torch.nn.Module`."""
    kwargs: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Keyword arguments passed to the factory."""

    @field_validator("factory")
    @classmethod
    def _factory_is_import_path(cls, value: str) -> str:
        if not _IMPORT_PATH.match(value):
            raise ValueError(f"factory must look like 'package.module:callable', got {value!r}")
        return value


ModelSpec = Annotated[LeptonNetSpec | MLPSpec | UserModelSpec, Field(discriminator="name")]


# --------------------------------------------------------------------------- shared pieces

_URI = re.compile(r"^(file|s3|https?|synthetic|gs|pvc)://.+|^/.+")


def _check_uri(value: str) -> str:
    if not _URI.match(value):
        raise ValueError(
            "expected a URI such as file:///data, s3://bucket/key, https://host/path or "
            f"synthetic://mnist?n=512, got {value!r}"
        )
    return value


Uri = Annotated[str, AfterValidator(_check_uri)]
"""A string that looks like a URI the runtime can read or write."""


class DatasetSpec(ContractModel):
    """Where the data lives. MNIST-style IDX files (optionally gzipped) or a synthetic set."""

    uri: Uri
    """`file:///dir`, `http(s)://host/dir`, `s3://bucket/prefix` (credentials from the usual
    AWS_* environment variables) or `synthetic://mnist?n=512&seed=0`."""
    train_limit: int | None = Field(None, ge=1)
    """Use only the first N training samples (smoke tests, quick trials)."""
    test_limit: int | None = Field(None, ge=1)
    """Use only the first N test samples."""
    augment: bool = False
    """Random small shifts of the training images (better accuracy, same cost)."""


class RuntimeOptions(ContractModel):
    """Where results and progress go; the same for every command."""

    termination_message_path: str = DEFAULT_TERMINATION_PATH
    """File the final JSON summary (or the one-line failure reason) is written to."""
    metrics_port: int | None = Field(None, ge=0, le=65_535)
    """Prometheus port for live progress; null or 0 disables it."""
    num_threads: int | None = Field(None, ge=1, le=1024)
    """torch intra-op threads per process (default: torch's choice)."""


# --------------------------------------------------------------------------- train


class Hyperparameters(ContractModel):
    """Optimisation settings."""

    epochs: int = Field(1, ge=1, le=10_000)
    """Passes over the training set."""
    schedule_epochs: int | None = Field(None, ge=1, le=10_000)
    """Length of the learning-rate schedule in epochs (default: epochs): a run continued later
    from its checkpoint with more epochs keeps one schedule."""
    batch_size: int = Field(64, ge=1, le=65_536)
    """Samples per step per worker."""
    learning_rate: float = Field(1e-3, gt=0, le=10)
    """Peak learning rate (cosine-decayed over the run)."""
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    """Optimiser; sgd uses momentum 0.9."""
    weight_decay: float = Field(0.0, ge=0, le=1)
    """Decoupled (adamw) or L2 (sgd, adam) weight decay."""
    seed: int = Field(0, ge=0)
    """Seeds model init, shuffling and augmentation; equal seeds give equal runs."""
    mixed_precision: bool = True
    """Use autocast (bf16/fp16) on GPU; ignored on CPU."""


class CheckpointSpec(ContractModel):
    """Periodic checkpoints so a restarted worker loses at most `everySteps` steps."""

    dir: str | None = None
    """Local directory for checkpoints (a shared volume in a cluster); null disables them."""
    every_steps: int = Field(100, ge=1)
    """Write a checkpoint every N optimiser steps (and at the end of every epoch)."""
    resume: bool = True
    """Resume from the latest checkpoint in `dir` when one exists."""


class TrainConfig(ContractModel):
    """Config of `python -m lepton_runtime train`."""

    kind: Literal["train"] = "train"
    """Job kind; optional in files (the CLI command decides)."""
    model: ModelSpec = Field(default_factory=LeptonNetSpec)
    """Which network to train."""
    dataset: DatasetSpec
    """Training and held-out test data."""
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    """Optimisation settings."""
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    """Checkpointing and resume."""
    output_uri: Uri
    """Where the trained artifacts go: model.pt (state dict), model.ts (TorchScript), model.json."""
    max_parameters: int | None = Field(None, ge=1)
    """Fail before training when the model has more trainable parameters."""
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)
    """Termination message, metrics port, threads."""


class TrainSummary(ContractModel):
    """What a finished training run reports (copied into LeptonTrainingJob status.results)."""

    accuracy: float
    """Top-1 accuracy on the held-out test split."""
    loss: float
    """Mean training loss of the last epoch."""
    epochs: int
    """Epochs completed."""
    steps: int
    """Optimiser steps completed."""
    samples_per_second: float
    """Training throughput over all workers."""
    world_size: int
    """Number of DDP processes."""
    model_uri: str
    """URI of the artifact directory."""
    last_checkpoint: str | None = None
    """Path of the last checkpoint written, if any."""
    resumed_from_step: int | None = None
    """Step the run resumed from, if it resumed."""
    loss_history: list[float] = Field(default_factory=list)
    """Mean training loss per epoch."""
    accuracy_history: list[float] = Field(default_factory=list)
    """Test accuracy per epoch."""
    epoch_seconds: list[float] = Field(default_factory=list)
    """Wall-clock seconds of each epoch."""
    parameters: int | None = Field(None, ge=0)
    """Trainable parameters of the model."""
    latency_ms: float | None = Field(None, ge=0)
    """Median batch-1 inference latency on the evaluation data, in milliseconds, on the
    device the run trained on."""
    size_bytes: int | None = Field(None, ge=0)
    """Size of the exported weights (model.pt), in bytes."""


# --------------------------------------------------------------------------- compress


class PruningSpec(ContractModel):
    """Magnitude pruning on an iterative schedule with fine-tuning between steps."""

    method: Literal["l1-unstructured", "l1-structured", "none"] = "l1-unstructured"
    """Global L1 over all weights, or L1 over whole conv output channels; `none` skips pruning."""
    target_sparsity: float = Field(0.8, ge=0, lt=1)
    """Fraction of prunable weights set to zero at the end of the schedule."""
    steps: int = Field(3, ge=1, le=50)
    """Pruning rounds; sparsity follows a cubic schedule to the target (Zhu & Gupta, 2017)."""
    fine_tune_epochs: float = Field(1.0, ge=0, le=100)
    """Epochs of fine-tuning after each round (fractions allowed)."""
    learning_rate: float = Field(5e-4, gt=0, le=10)
    """Learning rate of the fine-tuning."""
    batch_size: int = Field(64, ge=1, le=65_536)
    """Fine-tuning batch size."""


class AccuracyGuard(ContractModel):
    """How much accuracy the compressed model may lose, and how hard to try."""

    max_accuracy_drop: float = Field(0.005, ge=0, le=1)
    """Largest acceptable drop: a fraction (0.005 = half a point) of accuracy (absolute) or of
    the baseline accuracy (relative)."""
    mode: Literal["absolute", "relative"] = "absolute"
    """Interpretation of `maxAccuracyDrop`."""
    max_trials: int = Field(4, ge=1, le=20)
    """Trials before giving up: each backs off (less sparsity, a wider codebook, then no
    quantization)."""


CODEBOOK_BITS_MIN, CODEBOOK_BITS_MAX = 2, 8
Quantization = Literal["none", "dynamic-int8", "static-int8", "fp16", "codebook"]


class CodebookSpec(ContractModel):
    """Weight sharing (`quantization: codebook`): per-layer k-means codebooks (Deep Compression)."""

    bits: int = Field(5, ge=CODEBOOK_BITS_MIN, le=CODEBOOK_BITS_MAX)
    """Index width: each conv/linear layer shares at most 2**bits distinct weight values."""
    fine_tune_steps: int = Field(300, ge=0, le=100_000)
    """Adam steps that train the shared values (the indices stay fixed)."""
    learning_rate: float = Field(1e-4, gt=0, le=1)
    """Learning rate of the shared values' fine-tuning."""
    batch_size: int = Field(64, ge=1, le=65_536)
    """Batch size of the shared values' fine-tuning."""


ExportFormat = Literal["torchscript", "onnx"]
ONNX_QUANTIZATIONS = ("none", "codebook", "static-int8")
"""Quantizations with an ONNX export: float32 kernels (a codebook's weights decode to
float32), and static int8, which ONNX Runtime quantizes apart from PyTorch."""


def _torchscript_only() -> list[ExportFormat]:
    return ["torchscript"]


def _onnx_then_torchscript() -> list[ExportFormat]:
    return ["onnx", "torchscript"]


class CompressConfig(ContractModel):
    """Config of `python -m lepton_runtime compress`."""

    kind: Literal["compress"] = "compress"
    """Job kind; optional in files (the CLI command decides)."""
    source_model_uri: Uri
    """Artifact directory written by `train` (it holds model.json with the model spec)."""
    dataset: DatasetSpec
    """Fine-tuning data (train split) and evaluation data (test split)."""
    pruning: PruningSpec = Field(default_factory=PruningSpec)
    """Pruning method and schedule."""
    quantization: Quantization = "static-int8"
    """Post-training quantization applied after pruning; `codebook` is weight sharing, shipped
    as the compact model.lpc."""
    codebook: CodebookSpec = Field(default_factory=CodebookSpec)
    """Weight sharing settings (used with quantization codebook)."""
    accuracy_guard: AccuracyGuard = Field(default_factory=AccuracyGuard)
    """Maximum accuracy loss and number of trials."""
    export_formats: list[ExportFormat] = Field(default_factory=_torchscript_only)
    """Formats written to the output (onnx with quantization none, codebook or static-int8)."""
    calibration_batches: int = Field(8, ge=1, le=1000)
    """Batches of training data used to calibrate static int8."""
    seed: int = Field(0, ge=0)
    """Seeds fine-tuning."""
    output_uri: Uri
    """Where the compressed artifacts go."""
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)
    """Termination message, metrics port, threads."""

    @model_validator(mode="after")
    def _onnx_needs_float_or_static(self) -> CompressConfig:
        if "onnx" in self.export_formats and self.quantization not in ONNX_QUANTIZATIONS:
            raise ValueError(
                f"exportFormats onnx needs quantization none, codebook or static-int8 (got "
                f"{self.quantization}): ONNX has no portable encoding of PyTorch's "
                f"{self.quantization} kernels"
            )
        return self


class Trial(ContractModel):
    """One compression attempt and the guard's verdict on it."""

    index: int
    """Trial number, from 0."""
    sparsity: float
    """Measured fraction of zero weights among the prunable ones."""
    quantization: str
    """Quantization applied in this trial."""
    codebook_bits: int | None = None
    """Index width of the shared weights (codebook trials only)."""
    size_bytes: int
    """Bytes of the file this trial would serve: model.lpc for codebook trials, the
    DEFLATE-packed TorchScript otherwise."""
    accuracy: float
    """Test accuracy of the artifact."""
    onnx_accuracy: float | None = None
    """Test accuracy of model.onnx when ONNX Runtime quantized it apart (static-int8 with the
    onnx export): the guard holds the lower of the two to its limit."""
    accuracy_drop: float
    """Baseline accuracy minus this accuracy."""
    latency_ms: float
    """Median batch-1 CPU latency."""
    kept: bool
    """True for the trial that was exported."""
    reason: str
    """Why the trial was kept or dropped."""


class CompressSummary(ContractModel):
    """What a finished compression reports (copied into LeptonCompression status.results)."""

    baseline_accuracy: float
    """Accuracy of the source model."""
    final_accuracy: float
    """Accuracy of the exported model."""
    size_bytes_before: int
    """Compressed serialized size of the source model."""
    size_bytes_after: int
    """Compressed serialized size of the exported model."""
    sparsity: float
    """Fraction of zero weights in the exported model."""
    latency_ms_before: float
    """Median batch-1 CPU latency of the source model."""
    latency_ms_after: float
    """Median batch-1 CPU latency of the exported model."""
    quantization: str
    """Quantization of the exported model."""
    codebook_bits: int | None = None
    """Index width of the shared weights (codebook only)."""
    parameters: int | None = None
    """Weights of the prunable (conv and linear) layers (None from older runtimes)."""
    nonzero_parameters: int | None = None
    """Of those, the ones that are not zero (what the papers' weight ratios count)."""
    file_sizes: dict[str, int] = Field(default_factory=dict)
    """Bytes of every exported file: model.lpc (compact, what the python backend serves) and
    model.ts (the dense TorchScript libtorch serves) can both be there."""
    trials: list[Trial]
    """Every trial in order, with its verdict."""
    model_uri: str
    """URI of the exported artifact directory."""
    formats: list[str]
    """Files exported (e.g. model.ts, model.onnx)."""


# --------------------------------------------------------------------------- package


class DynamicBatching(ContractModel):
    """Triton's dynamic batcher: requests are merged into batches server-side."""

    enabled: bool = True
    """Off means every request runs alone."""
    preferred_batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    """Batch sizes the scheduler aims for (must not exceed maxBatchSize)."""
    max_queue_delay_microseconds: int = Field(100, ge=0)
    """How long a request may wait for others to join its batch."""


class InstanceGroup(ContractModel):
    """How many copies of the model Triton runs, and where."""

    count: int = Field(1, ge=1, le=64)
    """Model instances."""
    kind: Literal["cpu", "gpu"] = "cpu"
    """KIND_CPU or KIND_GPU."""


Backend = Literal["pytorch_libtorch", "onnxruntime", "python"]


def _ascending_unique(values: list[int]) -> list[int]:
    return sorted(set(values))


AscendingInts = Annotated[list[Annotated[int, Field(ge=0)]], AfterValidator(_ascending_unique)]


class TuningSpace(ContractModel):
    """The Triton settings a tuning run may choose from (each list is one search dimension)."""

    max_batch_sizes: AscendingInts = Field(
        default_factory=lambda: [1, 4, 8, 16, 32, 64], min_length=1
    )
    """maxBatchSize values to try (each >= 1: tuning is about the dynamic batcher)."""
    max_queue_delays_microseconds: AscendingInts = Field(
        default_factory=lambda: [0, 100, 500, 2000], min_length=1
    )
    """maxQueueDelayMicroseconds values to try."""
    preferred_batch_sizes: AscendingInts = Field(default_factory=list)
    """Preferred batch sizes to try, one at a time, besides none (larger than a candidate's
    maxBatchSize: skipped for it)."""
    instance_counts: AscendingInts = Field(default_factory=lambda: [1, 2], min_length=1)
    """Model instances per server to try."""
    model_formats: list[ExportFormat] = Field(
        default_factory=_onnx_then_torchscript, min_length=1, max_length=2
    )
    """Files of the model the python backend may run, tried where the model has them (the
    first is where the walk starts): onnx (ONNX Runtime) and torchscript (torch)."""

    @model_validator(mode="after")
    def _consistent(self) -> TuningSpace:
        if self.max_batch_sizes[0] < 1:
            raise ValueError("maxBatchSizes must be >= 1: tuning searches the dynamic batcher")
        if self.instance_counts[0] < 1:
            raise ValueError("instanceCounts must be >= 1")
        if len(set(self.model_formats)) != len(self.model_formats):
            raise ValueError(f"modelFormats {self.model_formats} names a format twice")
        too_big = [p for p in self.preferred_batch_sizes if p > self.max_batch_sizes[-1]]
        if too_big or (self.preferred_batch_sizes and self.preferred_batch_sizes[0] < 1):
            raise ValueError(
                f"preferredBatchSizes {self.preferred_batch_sizes} must each be between 1 and "
                f"the largest maxBatchSizes entry ({self.max_batch_sizes[-1]})"
            )
        return self


class TuningRequest(ContractModel):
    """Measure candidate configs on the real Triton and serve the fastest within the budget."""

    latency_budget_ms: float = Field(gt=0, le=60_000)
    """p99 latency every concurrency level must stay within."""
    concurrency: AscendingInts = Field(default_factory=lambda: [8], min_length=1, max_length=4)
    """Closed-loop clients to measure at; throughput counts at the highest, the budget at all."""
    space: TuningSpace = Field(default_factory=TuningSpace)
    """What may change."""
    seconds_per_candidate: float = Field(1.5, gt=0, le=60)
    """Measured load per candidate and concurrency level (after a short warm-up)."""
    min_gain: float = Field(0.03, ge=0, le=1)
    """A step must raise throughput by this fraction to count as rising."""
    strategy: Literal["quick", "grid"] = "quick"
    """quick: hill-climb one dimension at a time; grid: every candidate (for comparison)."""

    @field_validator("concurrency")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if values[0] < 1:
            raise ValueError("concurrency values must be >= 1")
        return values


class TritonSettings(ContractModel):
    """One candidate's batching and instance settings."""

    max_batch_size: int
    """maxBatchSize."""
    preferred_batch_size: int | None = None
    """The one preferred batch size, if any."""
    max_queue_delay_microseconds: int
    """maxQueueDelayMicroseconds."""
    instances: int
    """Model instances."""
    model_format: ExportFormat | None = None
    """The file the python backend runs (None: model.onnx when the model has one)."""

    def describe(self) -> str:
        """One line for logs, the run table and plots."""
        preferred = self.preferred_batch_size or "none"
        described = (
            f"maxBatchSize {self.max_batch_size}, delay {self.max_queue_delay_microseconds} us, "
            f"preferred {preferred}, {self.instances} instance(s)"
        )
        return f"{described}, {self.model_format}" if self.model_format else described


class TuningMeasurement(ContractModel):
    """One candidate as measured."""

    settings: TritonSettings
    """The config served."""
    throughput: float
    """Requests per second at the highest concurrency level."""
    p50_ms: float
    """Median latency at the highest concurrency level."""
    p99_ms: float
    """Highest p99 latency over the concurrency levels."""
    within_budget: bool
    """p99_ms <= the latency budget (in every sample, when measured more than once)."""
    samples: int = Field(default=1, ge=1)
    """How many times it was measured: throughput and p50 are the means, p99 the highest."""


class TuningResult(ContractModel):
    """What a tuning run measured and chose."""

    chosen: TuningMeasurement
    """What is served: the fastest within the budget, else the fastest."""
    candidates: list[TuningMeasurement]
    """Every candidate measured, in the order tried."""
    latency_budget_ms: float
    """The p99 budget measured against."""
    budget_met: bool
    """False: no candidate kept p99 within the budget (the fastest is served anyway)."""
    best_p99_ms: float
    """Lowest p99 any candidate reached."""
    seconds: float
    """Wall time of the tuning run, server start included."""
    grid_size: int
    """Candidates in the whole space."""
    strategy: Literal["quick", "grid"]
    """How the space was searched."""


class PackageConfig(ContractModel):
    """Config of `python -m lepton_runtime package`: build a Triton model repository."""

    kind: Literal["package"] = "package"
    """Job kind; optional in files (the CLI command decides)."""
    model_uri: Uri
    """Artifact directory from `train` or `compress` (model.ts / model.onnx + model.json)."""
    model_name: str = Field("model", pattern=r"^[a-zA-Z0-9_.-]{1,128}$")
    """Name of the model in Triton."""
    version: int = Field(1, ge=1)
    """Version directory."""
    backend: Backend = "python"
    """Triton backend: pytorch_libtorch (model.pt), onnxruntime (model.onnx), python (model.py
    running the model.onnx with ONNX Runtime when the model has one, else the TorchScript)."""
    max_batch_size: int = Field(64, ge=0, le=65_536)
    """Largest batch Triton forms; 0 disables batching."""
    dynamic_batching: DynamicBatching = Field(default_factory=DynamicBatching)
    """Dynamic batcher settings."""
    instance_group: InstanceGroup = Field(default_factory=InstanceGroup)
    """Instances and device kind."""
    model_format: ExportFormat | None = None
    """python backend: which of the model's files it runs, onnx or torchscript (default:
    model.onnx when the model has one, else the TorchScript)."""
    warmup: bool = True
    """Add a warmup request so the first real request is not slow."""
    tuning: TuningRequest | None = None
    """Measure the tuning space on the real Triton and write the chosen settings instead of
    maxBatchSize, dynamicBatching and instanceGroup.count (python backend only: the server
    bundled with the runtime has no other)."""
    repository: str
    """Local directory of the model repository (created if missing)."""
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)
    """Termination message."""

    @model_validator(mode="after")
    def _batch_sizes_fit(self) -> PackageConfig:
        too_big = [
            b for b in self.dynamic_batching.preferred_batch_sizes if b > self.max_batch_size
        ]
        if too_big:
            raise ValueError(
                f"preferredBatchSizes {too_big} exceed maxBatchSize {self.max_batch_size}"
            )
        if self.model_format is not None and self.backend != "python":
            raise ValueError(
                f"modelFormat chooses the file the python backend runs; backend {self.backend} "
                "runs its own: drop modelFormat or set backend to python"
            )
        if self.tuning is not None and self.backend != "python":
            raise ValueError(
                f"tuning runs the python backend (the one the runtime's Triton has), not "
                f"{self.backend}: set backend to python or drop tuning"
            )
        return self


class PackageSummary(ContractModel):
    """What `package` reports."""

    repository: str
    """Model repository directory."""
    model_name: str
    """Name of the model in Triton."""
    version: int
    """Version directory written."""
    backend: str
    """Triton backend."""
    config_path: str
    """Path of the generated config.pbtxt."""
    tuning: TuningResult | None = None
    """What tuning measured and chose, when it was asked for."""


RuntimeConfig = Annotated[TrainConfig | CompressConfig | PackageConfig, Field(discriminator="kind")]


class _Envelope(BaseModel):
    config: RuntimeConfig


def load_config(path: str | Path, command: str) -> TrainConfig | CompressConfig | PackageConfig:
    """Read and validate a config file for `command`; the `kind` key may be omitted."""
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, dict):
        raise ValueError("config must be a JSON object")
    raw.setdefault("kind", command)
    if raw["kind"] != command:
        raise ValueError(f"config kind {raw['kind']!r} does not match command {command!r}")
    return _Envelope.model_validate({"config": raw}).config
