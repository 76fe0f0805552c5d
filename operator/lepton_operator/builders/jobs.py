"""The children of LeptonTrainingJob and LeptonCompression: a ConfigMap and a PyTorchJob."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lepton_operator.api.common import DatasetSpec
from lepton_operator.api.compression import LeptonCompression
from lepton_operator.api.training import LeptonTrainingJob
from lepton_operator.builders.names import pytorchjob_name
from lepton_operator.builders.pod import TERMINATION_MESSAGE_PATH, storage_for
from lepton_operator.builders.pytorchjob import (
    JobWorkload,
    render_config_map,
    render_pytorchjob,
    runtime_command,
)
from lepton_operator.builders.runtime_config import (
    StorageLayout,
    render_compress_config,
    render_train_config,
)
from lepton_operator.scheduling.placement import Placement
from lepton_operator.settings import OperatorSettings
from lepton_runtime.contract import RuntimeOptions

TRAINING_COMPONENT = "training"
COMPRESSION_COMPONENT = "compression"


def training_job_name(job: LeptonTrainingJob) -> str:
    """The PyTorchJob's name: the job's own when it fits (builders/names.py)."""
    return pytorchjob_name(job.metadata.name)


def compression_job_name(compression: LeptonCompression) -> str:
    return pytorchjob_name(compression.metadata.name, "-compress")


def _runtime_options(settings: OperatorSettings) -> RuntimeOptions:
    return RuntimeOptions(
        termination_message_path=TERMINATION_MESSAGE_PATH,
        metrics_port=settings.runtime_metrics_port,
    )


def _manifests(workload: JobWorkload) -> list[dict[str, Any]]:
    config_map = render_config_map(workload)
    job = render_pytorchjob(workload)
    return [config_map, job] if config_map is not None else [job]


def render_training_children(
    job: LeptonTrainingJob, placement: Placement, settings: OperatorSettings
) -> list[dict[str, Any]]:
    """ConfigMap (the train contract) + PyTorchJob, or only the PyTorchJob for user code."""
    spec = job.spec
    layout = StorageLayout(settings.pvc_mount_root)
    user_code = spec.model.command is not None
    config = None if user_code else render_train_config(spec, layout, _runtime_options(settings))
    workload = JobWorkload(
        owner_kind="LeptonTrainingJob",
        owner=job.metadata,
        name=training_job_name(job),
        component=TRAINING_COMPONENT,
        command=list(spec.model.command or []) if user_code else runtime_command("train"),
        config=config,
        resources=spec.resources,
        run_policy=spec.run_policy,
        placement=placement,
        storage=storage_for(
            [spec.dataset.uri, spec.output.uri],
            [spec.dataset.secret_ref, spec.output.secret_ref],
            settings.pvc_mount_root,
        ),
        image=spec.model.image or settings.runtime_image,
        image_pull_policy=settings.image_pull_policy,
        pull_secrets=settings.image_pull_secrets,
        gpu_resource=settings.gpu_resource,
        metrics_port=settings.runtime_metrics_port,
        priority_class_name=spec.scheduling.priority_class_name,
        elastic=spec.elastic,
        queue_name=spec.scheduling.queue_name,
        pod_metadata=spec.pod_metadata,
    )
    return _manifests(workload)


@dataclass(frozen=True)
class ResolvedModelSource:
    """A compression's source after the operator looked it up: the model and its data."""

    model_uri: str
    dataset: DatasetSpec
    seed: int = 0


def render_compression_children(
    compression: LeptonCompression,
    source: ResolvedModelSource,
    placement: Placement,
    settings: OperatorSettings,
) -> list[dict[str, Any]]:
    """ConfigMap (the compress contract) + PyTorchJob."""
    spec = compression.spec
    layout = StorageLayout(settings.pvc_mount_root)
    config = render_compress_config(
        spec,
        source_model_uri=source.model_uri,
        dataset=source.dataset,
        layout=layout,
        runtime=_runtime_options(settings),
        seed=source.seed,
    )
    workload = JobWorkload(
        owner_kind="LeptonCompression",
        owner=compression.metadata,
        name=compression_job_name(compression),
        component=COMPRESSION_COMPONENT,
        command=runtime_command("compress"),
        config=config,
        resources=spec.resources,
        run_policy=spec.run_policy,
        placement=placement,
        storage=storage_for(
            [source.model_uri, source.dataset.uri, spec.output.uri],
            [source.dataset.secret_ref, spec.output.secret_ref],
            settings.pvc_mount_root,
        ),
        image=settings.runtime_image,
        image_pull_policy=settings.image_pull_policy,
        pull_secrets=settings.image_pull_secrets,
        gpu_resource=settings.gpu_resource,
        metrics_port=settings.runtime_metrics_port,
        priority_class_name=spec.scheduling.priority_class_name,
        queue_name=spec.scheduling.queue_name,
        pod_metadata=spec.pod_metadata,
    )
    return _manifests(workload)
