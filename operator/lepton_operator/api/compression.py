"""LeptonCompression: prune, fine-tune and quantize a trained model under an accuracy guard."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

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
    EXACTLY_ONE_SOURCE_RULE,
    DatasetSpec,
    ModelSourceRefs,
    OutputSpec,
    PodMetadata,
    QueueAdmission,
    RunPolicySpec,
    SchedulingSpec,
    WorkerResources,
)

PruningMethod = Literal["l1-unstructured", "l1-structured"]
Quantization = Literal["none", "dynamic-int8", "static-int8", "fp16", "codebook"]
ExportFormat = Literal["torchscript", "onnx"]


class CompressionSource(ModelSourceRefs):
    """The model to compress."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [EXACTLY_ONE_SOURCE_RULE]}
    )


class PruningSpec(LeptonModel):
    """Magnitude (L1) pruning on an iterative schedule, fine-tuning between steps."""

    method: PruningMethod = "l1-unstructured"
    """l1-unstructured: global magnitude pruning of individual weights;
    l1-structured: whole conv channels with the smallest L1 norm."""
    target_sparsity: float = Field(default=0.8, ge=0, le=0.99)
    """Fraction of prunable weights set to zero at the end of the schedule."""
    steps: int = Field(default=3, ge=1, le=50)
    """Pruning steps from 0 to targetSparsity (cubic schedule)."""
    fine_tune_epochs: float = Field(default=1, ge=0, le=100)
    """Fine-tuning after each step, in epochs (fractions allowed)."""


class CodebookSpec(LeptonModel):
    """Weight sharing: every conv/linear layer keeps at most 2**bits distinct values."""

    bits: int = Field(default=5, ge=2, le=8)
    """Index width per weight, 2-8 (4-5 keeps LeNet-class digit models within half a point);
    the accuracy guard adds a bit per trial when it backs off."""
    fine_tune_steps: int = Field(default=300, ge=0, le=100_000)
    """Training steps of the shared values after clustering (0: k-means only)."""


class AccuracyGuardSpec(LeptonModel):
    """How much accuracy compression may cost, and how hard to try."""

    max_accuracy_drop: float = Field(default=0.5, ge=0, le=100)
    """Largest allowed drop: percentage points (absolute) or percent of the baseline (relative)."""
    mode: Literal["absolute", "relative"] = "absolute"
    """How maxAccuracyDrop is measured."""
    max_trials: int = Field(default=4, ge=1, le=20)
    """Trials to run, backing off (less sparsity, a wider codebook, then no quantization)
    after each failure."""


class ExportSpec(LeptonModel):
    """Formats the compressed model is exported in."""

    formats: list[ExportFormat] = Field(
        default_factory=lambda: list[ExportFormat](["torchscript"]),
        min_length=1,
        max_length=2,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    """torchscript (Triton's pytorch_libtorch backend) and/or onnx (the onnxruntime backend;
    the python backend serves it through ONNX Runtime). A static-int8 model's ONNX file is
    quantized by ONNX Runtime from the same pruned model and calibration batches, and held to
    the accuracy guard as well."""


class EvaluationSpec(LeptonModel):
    """Data the accuracy guard measures on."""

    dataset: DatasetSpec
    """Held-out data; by default the source training job's dataset."""


class CompressionSpec(LeptonModel):
    """Desired state of a LeptonCompression."""

    source: CompressionSource
    """The trained model to compress."""
    pruning: PruningSpec = Field(default_factory=PruningSpec, json_schema_extra={"default": {}})
    """Pruning method and schedule."""
    quantization: Quantization = "dynamic-int8"
    """Post-training quantization: dynamic-int8 (Linear layers), static-int8 (convs too, with
    calibration), fp16, codebook (weight sharing, served as the compact model.lpc), or none."""
    codebook: CodebookSpec | None = None
    """Weight sharing settings; only with quantization codebook (defaults: 5 bits)."""
    accuracy_guard: AccuracyGuardSpec = Field(
        default_factory=AccuracyGuardSpec, json_schema_extra={"default": {}}
    )
    """The most accuracy compression may cost."""
    export: ExportSpec = Field(default_factory=ExportSpec, json_schema_extra={"default": {}})
    """Export formats for serving."""
    evaluation: EvaluationSpec | None = None
    """Evaluation data; required when the source is a modelURI."""
    resources: WorkerResources = Field(
        default_factory=WorkerResources, json_schema_extra={"default": {}}
    )
    """Workers for fine-tuning."""
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec, json_schema_extra={"default": {}}
    )
    """Node pool choice, placement policy, priority and queue."""
    output: OutputSpec
    """Where the compressed model and its exports are written."""
    run_policy: RunPolicySpec = Field(
        default_factory=RunPolicySpec, json_schema_extra={"default": {}}
    )
    """Restarts, deadlines and clean-up of the underlying PyTorchJob."""
    pod_metadata: PodMetadata = Field(
        default_factory=PodMetadata, json_schema_extra={"default": {}}
    )
    """Labels and annotations added to every pod."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.source.modelURI) || has(self.evaluation)",
                    "message": "source.modelURI has no dataset to measure accuracy on: "
                    "set evaluation.dataset",
                },
                {
                    # The runtime's own rule (CompressConfig): refused here, not by the
                    # operator's builder after the resource was accepted.
                    "rule": "!has(self.export) || !has(self.export.formats) || "
                    "!('onnx' in self.export.formats) || "
                    "(has(self.quantization) && "
                    "self.quantization in ['none', 'codebook', 'static-int8'])",
                    "message": "export.formats onnx needs quantization none, codebook or "
                    "static-int8: ONNX has no portable encoding of PyTorch's dynamic-int8 and "
                    "fp16 kernels (export torchscript, or choose one of those quantizations)",
                    "fieldPath": ".export.formats",
                },
                {
                    "rule": "!has(self.codebook) || "
                    "(has(self.quantization) && self.quantization == 'codebook')",
                    "message": "codebook is set but quantization is not codebook: set "
                    "quantization: codebook, or remove codebook",
                    "fieldPath": ".codebook",
                },
            ]
        }
    )


class CompressionTrial(LeptonModel):
    """One attempt of the accuracy-guarded search."""

    sparsity: float = Field(ge=0, le=1)
    """Fraction of prunable weights that were zero."""
    quantization: Quantization
    """Quantization applied in this trial."""
    codebook_bits: int | None = Field(default=None, ge=2, le=8)
    """Index width of the shared weights (codebook trials)."""
    size_bytes: int = Field(ge=0)
    """Size of the file this trial would serve (model.lpc for codebook trials)."""
    accuracy: float = Field(ge=0, le=1)
    """Accuracy on the evaluation data."""
    onnx_accuracy: float | None = Field(default=None, ge=0, le=1)
    """Accuracy of model.onnx when ONNX Runtime quantized it apart (static-int8 with the onnx
    export); the guard holds the lower of the two to its limit."""
    latency_ms: float | None = Field(default=None, ge=0)
    """Batch-1 latency on the CPU."""
    kept: bool
    """Whether this trial was chosen."""
    reason: str = Field(max_length=TEXT_MAX)
    """Why it was kept or dropped."""


class CompressionResults(LeptonModel):
    """Outcome of the compression, copied from the runtime's final summary."""

    baseline_accuracy: float | None = Field(default=None, ge=0, le=1)
    """Accuracy of the source model."""
    final_accuracy: float | None = Field(default=None, ge=0, le=1)
    """Accuracy of the kept trial."""
    accuracy_drop: float | None = None
    """Drop from baseline to final, in percentage points."""
    size_bytes_before: int | None = Field(default=None, ge=0)
    """Serialized size of the source model."""
    size_bytes_after: int | None = Field(default=None, ge=0)
    """Serialized size of the compressed model: model.lpc for codebook models (what the
    python backend serves), the packed TorchScript otherwise."""
    size_ratio: float | None = Field(default=None, ge=0)
    """sizeBytesBefore / sizeBytesAfter: how many times smaller."""
    sparsity: float | None = Field(default=None, ge=0, le=1)
    """Fraction of prunable weights that are zero."""
    codebook_bits: int | None = Field(default=None, ge=2, le=8)
    """Index width of the shared weights (codebook only)."""
    parameters: int | None = Field(default=None, ge=0)
    """Conv and linear weights of the model."""
    nonzero_parameters: int | None = Field(default=None, ge=0)
    """Of those, the ones left after pruning."""
    file_sizes: dict[str, int] | None = Field(default=None, max_length=8)
    """Bytes of each exported file: model.lpc is what the python backend serves, model.ts
    (the decoded dense weights) what pytorch_libtorch serves."""
    latency_ms_before: float | None = Field(default=None, ge=0)
    """Batch-1 CPU latency of the source model."""
    latency_ms_after: float | None = Field(default=None, ge=0)
    """Batch-1 CPU latency of the compressed model."""
    model_uri: str | None = Field(default=None, alias="modelURI", max_length=URI_MAX)
    """Where the compressed model was written; endpoints read it from here."""
    trials: list[CompressionTrial] = Field(default_factory=list, max_length=20)
    """Every trial, with why it was kept or dropped."""


class CompressionStatus(LeptonModel):
    """Observed state of a LeptonCompression, written by the operator only."""

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
    source_model_uri: str | None = Field(default=None, alias="sourceModelURI", max_length=URI_MAX)
    """The resolved source model."""
    pool: str | None = Field(default=None, max_length=NAME_MAX)
    """The node pool the job was placed on."""
    queue_position: int | None = Field(default=None, ge=1)
    """Position in the admission queue while Queued."""
    queue_admission: QueueAdmission | None = None
    """Which Kueue queues admitted the job and how long it waited (`scheduling.queueName`)."""
    start_time: datetime | None = None
    """When the job started running."""
    completion_time: datetime | None = None
    """When the job succeeded or failed."""
    results: CompressionResults | None = None
    """Outcome of a successful run."""


class LeptonCompression(LeptonModel):
    """Accuracy-guarded compression of a trained model, exported for Triton."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = "lepton.ai/v1alpha1"
    kind: Literal["LeptonCompression"] = "LeptonCompression"
    metadata: ObjectMeta
    spec: CompressionSpec
    status: CompressionStatus | None = None
