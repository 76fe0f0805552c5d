"""Render the runtime contract (the JSON the pods read) from a validated Lepton spec.

The same functions serve the cluster (pvc:// claims mounted under a fixed root in the pod)
and `lepton run` on a laptop (pvc:// claims are folders under a local root), so what runs
locally is exactly what would run in the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from lepton_operator.api.common import DatasetSpec
from lepton_operator.api.compression import CompressionSpec
from lepton_operator.api.endpoint import EndpointSpec, TuningSpec
from lepton_operator.api.training import ModelSpec, TrainingJobSpec
from lepton_runtime.contract import (
    AccuracyGuard,
    CodebookSpec,
    CompressConfig,
    DynamicBatching,
    InstanceGroup,
    LeptonNetSpec,
    MLPSpec,
    PackageConfig,
    PruningSpec,
    RuntimeOptions,
    TrainConfig,
    TritonSettings,
    TuningRequest,
    TuningSpace,
    UserModelSpec,
)
from lepton_runtime.contract import CheckpointSpec as RuntimeCheckpoint
from lepton_runtime.contract import DatasetSpec as RuntimeDataset
from lepton_runtime.contract import Hyperparameters as RuntimeHyperparameters

PVC_SCHEME = "pvc://"
CHECKPOINT_SUBDIR = "checkpoints"


@dataclass(frozen=True)
class StorageLayout:
    """Where pvc://<claim>/<path> URIs live for the process that reads the contract."""

    pvc_root: str
    """Directory under which each claim is a folder: a mount root in a pod, a folder locally."""

    def to_runtime_uri(self, uri: str) -> str:
        """pvc://claim/path -> file://<root>/claim/path; every other scheme passes through."""
        if not uri.startswith(PVC_SCHEME):
            return uri
        return f"file://{self.pvc_root.rstrip('/')}/{uri.removeprefix(PVC_SCHEME)}"

    def to_user_uri(self, runtime_uri: str) -> str:
        """The inverse of to_runtime_uri: a path under the root becomes pvc://claim/path again,
        so status speaks the user's URIs, not the pod's mount paths."""
        root = self.pvc_root.rstrip("/") + "/"
        path = runtime_uri.removeprefix("file://")
        return f"{PVC_SCHEME}{path.removeprefix(root)}" if path.startswith(root) else runtime_uri

    def to_local_path(self, uri: str) -> str | None:
        """The filesystem path of a pvc:// or file:// URI, or None for remote storage."""
        runtime_uri = self.to_runtime_uri(uri)
        return runtime_uri.removeprefix("file://") if runtime_uri.startswith("file://") else None


def pvc_claims(*uris: str) -> list[str]:
    """The PersistentVolumeClaims that URIs refer to, each once, in order of appearance."""
    claims = [u.removeprefix(PVC_SCHEME).split("/", 1)[0] for u in uris if u.startswith(PVC_SCHEME)]
    return list(dict.fromkeys(claims))


def render_model(model: ModelSpec) -> LeptonNetSpec | MLPSpec | UserModelSpec:
    """The runtime's model spec for a built-in model or a factory."""
    parameters = model.parameters
    if model.name == "leptonnet":
        return LeptonNetSpec(
            width_multiplier=parameters.width_multiplier,
            depth_multiplier=parameters.depth_multiplier,
            stages=parameters.stages,
            blocks_per_stage=parameters.blocks_per_stage,
            kernel_size=parameters.kernel_size,
            activation=parameters.activation,
            normalization=parameters.normalization,
            convolution=parameters.convolution,
            dropout=parameters.dropout,
            num_classes=parameters.num_classes,
            in_channels=parameters.in_channels,
        )
    if model.name == "mlp":
        return MLPSpec(
            hidden_sizes=parameters.hidden_sizes,
            num_classes=parameters.num_classes,
            input_size=parameters.in_channels * parameters.image_size**2,
        )
    if model.factory is not None:
        return UserModelSpec(factory=model.factory)
    raise ValueError("model.command runs user code: it has no runtime contract")


def render_dataset(dataset: DatasetSpec, layout: StorageLayout) -> RuntimeDataset:
    return RuntimeDataset(uri=layout.to_runtime_uri(dataset.uri))


def checkpoint_directory(spec: TrainingJobSpec, layout: StorageLayout) -> str | None:
    """Where a job's checkpoints go, in the pods: under its output. Checkpoints need a
    filesystem shared by restarts, so remote outputs get none."""
    root = layout.to_local_path(spec.output.uri)
    return f"{root}/{CHECKPOINT_SUBDIR}" if root else None


def render_train_config(
    spec: TrainingJobSpec, layout: StorageLayout, runtime: RuntimeOptions
) -> TrainConfig:
    """The `train` contract of a LeptonTrainingJob."""
    output = layout.to_runtime_uri(spec.output.uri)
    hyper = spec.hyperparameters
    return TrainConfig(
        model=render_model(spec.model),
        dataset=render_dataset(spec.dataset, layout),
        hyperparameters=RuntimeHyperparameters(
            epochs=hyper.epochs,
            schedule_epochs=hyper.schedule_epochs,
            batch_size=hyper.batch_size,
            learning_rate=hyper.learning_rate,
            optimizer=hyper.optimizer,
            weight_decay=hyper.weight_decay,
            seed=hyper.seed,
        ),
        checkpoint=RuntimeCheckpoint(
            dir=checkpoint_directory(spec, layout),
            every_steps=spec.checkpoint.every_steps,
            resume=spec.checkpoint.resume,
        ),
        output_uri=output,
        max_parameters=spec.model.max_parameters,
        runtime=runtime,
    )


def render_compress_config(
    spec: CompressionSpec,
    *,
    source_model_uri: str,
    dataset: DatasetSpec,
    layout: StorageLayout,
    runtime: RuntimeOptions,
    seed: int = 0,
) -> CompressConfig:
    """The `compress` contract of a LeptonCompression whose source is resolved.

    The CRD speaks of accuracy in percentage points (what people read in a report); the
    runtime in fractions.
    """
    guard = spec.accuracy_guard
    return CompressConfig(
        source_model_uri=layout.to_runtime_uri(source_model_uri),
        dataset=render_dataset(dataset, layout),
        pruning=PruningSpec(
            method=spec.pruning.method,
            target_sparsity=spec.pruning.target_sparsity,
            steps=spec.pruning.steps,
            fine_tune_epochs=spec.pruning.fine_tune_epochs,
        ),
        quantization=spec.quantization,
        codebook=CodebookSpec(
            bits=spec.codebook.bits, fine_tune_steps=spec.codebook.fine_tune_steps
        )
        if spec.codebook
        else CodebookSpec(),
        accuracy_guard=AccuracyGuard(
            max_accuracy_drop=guard.max_accuracy_drop / 100,
            mode=guard.mode,
            max_trials=guard.max_trials,
        ),
        export_formats=list(spec.export.formats),
        seed=seed,
        output_uri=layout.to_runtime_uri(spec.output.uri),
        runtime=runtime,
    )


def tuning_request(tuning: TuningSpec) -> TuningRequest:
    """The runtime's tuning contract for spec.tuning."""
    space = tuning.space
    return TuningRequest(
        latency_budget_ms=tuning.latency_budget_ms,
        concurrency=tuning.concurrency,
        space=TuningSpace(
            max_batch_sizes=space.max_batch_sizes,
            max_queue_delays_microseconds=space.max_queue_delays_microseconds,
            preferred_batch_sizes=space.preferred_batch_sizes,
            instance_counts=space.instance_counts,
            model_formats=space.model_formats,
        ),
        seconds_per_candidate=tuning.seconds_per_candidate,
        strategy=tuning.strategy,
    )


def render_package_config(
    spec: EndpointSpec,
    *,
    model_uri: str,
    model_name: str,
    repository: str,
    layout: StorageLayout,
    runtime: RuntimeOptions,
    tuned: TritonSettings | None = None,
) -> PackageConfig:
    """The `package` contract: lay out the Triton model repository for an endpoint.

    With spec.tuning, the package step measures the tuning space and serves its choice; once
    a choice is known for this model and space (`tuned`), it is written as the settings and
    nothing is measured again (a replica added later serves the same config at once).
    """
    triton = spec.triton
    batching = triton.dynamic_batching
    instance_kind = triton.instance_group.kind
    if instance_kind == "auto":
        instance_kind = "gpu" if spec.resources.gpus > 0 else "cpu"
    max_batch_size = triton.max_batch_size
    dynamic_batching = DynamicBatching(
        enabled=batching.enabled and triton.max_batch_size > 0,
        preferred_batch_sizes=batching.preferred_batch_sizes,
        max_queue_delay_microseconds=batching.max_queue_delay_microseconds,
    )
    instances = triton.instance_group.count
    model_format = None
    if spec.tuning is not None and tuned is not None:
        max_batch_size, instances = tuned.max_batch_size, tuned.instances
        model_format = tuned.model_format
        preferred = tuned.preferred_batch_size
        dynamic_batching = DynamicBatching(
            enabled=True,
            preferred_batch_sizes=[preferred] if preferred else [],
            max_queue_delay_microseconds=tuned.max_queue_delay_microseconds,
        )
    return PackageConfig(
        model_uri=layout.to_runtime_uri(model_uri),
        model_name=model_name,
        backend=triton.backend,
        max_batch_size=max_batch_size,
        dynamic_batching=dynamic_batching,
        instance_group=InstanceGroup(count=instances, kind=instance_kind),
        model_format=model_format,
        tuning=tuning_request(spec.tuning) if spec.tuning and tuned is None else None,
        repository=repository,
        runtime=runtime,
    )
