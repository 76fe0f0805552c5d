"""Status of the two job kinds (training, compression) from their PyTorchJob."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import kopf

from lepton_operator import k8s
from lepton_operator.api.common import QueueAdmission
from lepton_operator.api.compression import (
    CompressionResults,
    CompressionStatus,
    LeptonCompression,
)
from lepton_operator.api.training import LeptonTrainingJob, TrainingJobStatus, TrainingResults
from lepton_operator.builders.jobs import compression_job_name, training_job_name
from lepton_operator.builders.pytorchjob import CONTAINER_NAME, PYTORCHJOB_API_VERSION
from lepton_operator.builders.runtime_config import StorageLayout, checkpoint_directory
from lepton_operator.handlers.context import (
    fetch,
    now,
    publish_status,
    secret_fields,
    settings,
    stuck_pod,
)
from lepton_operator.observe import (
    first_replica_message,
    observe_pytorchjob,
    pytorchjob_finished,
)
from lepton_operator.scheduling.kueue import kueue_decision
from lepton_operator.scheduling.queue import QueuedGang
from lepton_operator.services.kueue_workloads import KUEUE_WORKLOADS
from lepton_operator.status import (
    Blocker,
    JobCore,
    JobObservation,
    clipped,
    compression_results,
    derive_job_core,
    parse_summary,
    preempted_conditions,
    preemption_message,
    training_results,
)
from lepton_runtime.contract import CompressSummary, TrainSummary


def _master_message(namespace: str, job_name: str) -> str | None:
    selector = f"training.kubeflow.org/job-name={job_name}"
    pods = k8s.list_objects("v1", "Pod", namespace, selector)
    return first_replica_message(pods, CONTAINER_NAME)


@dataclass(frozen=True)
class _KueueView:
    blocker: Blocker | None
    child: dict[str, Any] | None
    admission: QueueAdmission | None


def _kueue_view(
    queue_name: str | None,
    namespace: str,
    job_name: str,
    blocker: Blocker | None,
    *,
    child: dict[str, Any] | None,
    previous: QueueAdmission | None,
) -> _KueueView:
    """Kueue's word on a job that names a LocalQueue (scheduling/kueue.py decides), with the
    PyTorchJob it read for that handed on, so that the status is computed from one read."""
    if queue_name is None or blocker is not None:
        return _KueueView(blocker, child, previous)
    pytorchjob = child or k8s.get(PYTORCHJOB_API_VERSION, "PyTorchJob", namespace, job_name)
    state = KUEUE_WORKLOADS.get((namespace, job_name))
    decision = kueue_decision(queue_name, pytorchjob, state, previous)
    return _KueueView(decision.blocker, pytorchjob, decision.admission)


def _core(
    previous_conditions: list[Any],
    generation: int,
    namespace: str,
    job_name: str,
    blocker: Blocker | None,
    *,
    stuck: Blocker | None,
    child: dict[str, Any] | None,
) -> tuple[JobCore, JobObservation, str | None]:
    pytorchjob = None
    if blocker is None:
        # The caller's copy when it has one (the apply's answer, a watch event's object):
        # reading it again cost a GET per status refresh, the most frequent request of all.
        pytorchjob = child or k8s.get(PYTORCHJOB_API_VERSION, "PyTorchJob", namespace, job_name)
    message = _master_message(namespace, job_name) if pytorchjob_finished(pytorchjob) else None
    observation = observe_pytorchjob(pytorchjob, message, blocker, stuck)
    core = derive_job_core(previous_conditions, generation, observation, now())
    return core, observation, message


def refresh_training_status(
    body: dict[str, Any], blocker: Blocker | None = None, *, child: dict[str, Any] | None = None
) -> None:
    """Recompute the job's status from its PyTorchJob (`child`, or read here) and its pods."""
    job = LeptonTrainingJob.model_validate(body)
    previous = job.status
    meta, spec = job.metadata, job.spec
    fields = secret_fields(dataset=spec.dataset.secret_ref, output=spec.output.secret_ref)
    kueue = _kueue_view(
        spec.scheduling.queue_name,
        meta.namespace,
        training_job_name(job),
        blocker,
        child=child,
        previous=previous.queue_admission if previous else None,
    )
    core, observation, message = _core(
        previous.conditions if previous else [],
        meta.generation,
        meta.namespace,
        training_job_name(job),
        kueue.blocker,
        stuck=stuck_pod(
            "LeptonTrainingJob",
            meta.namespace,
            meta.name,
            child=("PyTorchJob", meta.namespace, training_job_name(job)),
            fields=fields,
        ),
        child=kueue.child,
    )
    generation = meta.generation
    results = previous.results if previous else None
    if core.phase == "Succeeded":
        # User code may write no summary; its artifacts are still where the spec said.
        summary = parse_summary(message, TrainSummary)
        layout = StorageLayout(settings().pvc_mount_root)
        if isinstance(summary, TrainSummary):
            results = training_results(summary, job.spec.output.uri, layout)
        elif results is None:  # keep what we read before the pods were cleaned up
            results = TrainingResults(model_uri=job.spec.output.uri)
    resources = job.spec.resources
    holding = observation.pytorchjob_exists and core.phase in ("Pending", "Running")
    status = TrainingJobStatus(
        phase=core.phase,
        conditions=core.conditions,
        observed_generation=generation,
        message=clipped(core.message),
        pool=observation.pool or (previous.pool if previous else None),
        gpus=resources.workers * resources.gpus_per_worker if holding else 0,
        queue_position=blocker.queue_position if blocker is not None else None,
        queue_admission=kueue.admission,
        workers_ready=observation.active_workers,
        start_time=core.start_time,
        completion_time=core.completion_time,
        results=results,
    )
    publish_status(body, previous, status, core.phase)


def refresh_compression_status(
    body: dict[str, Any],
    blocker: Blocker | None = None,
    source_model_uri: str | None = None,
    *,
    child: dict[str, Any] | None = None,
) -> None:
    compression = LeptonCompression.model_validate(body)
    previous = compression.status
    meta = compression.metadata
    generation = meta.generation
    fields = secret_fields(output=compression.spec.output.secret_ref)
    from_source = "the source's spec.dataset.secretRef"
    child_key = ("PyTorchJob", meta.namespace, compression_job_name(compression))
    stuck = stuck_pod(
        "LeptonCompression",
        meta.namespace,
        meta.name,
        child=child_key,
        fields=fields,
        other_secrets=from_source,
    )
    kueue = _kueue_view(
        compression.spec.scheduling.queue_name,
        meta.namespace,
        compression_job_name(compression),
        blocker,
        child=child,
        previous=previous.queue_admission if previous else None,
    )
    core, observation, message = _core(
        previous.conditions if previous else [],
        generation,
        meta.namespace,
        compression_job_name(compression),
        kueue.blocker,
        stuck=stuck,
        child=kueue.child,
    )
    results = previous.results if previous else None
    if core.phase == "Succeeded":
        summary = parse_summary(message, CompressSummary)
        output = compression.spec.output.uri
        if isinstance(summary, CompressSummary):
            results = compression_results(summary, output)
        elif results is None:
            results = CompressionResults(model_uri=output)
    status = CompressionStatus(
        phase=core.phase,
        conditions=core.conditions,
        observed_generation=generation,
        message=clipped(core.message),
        source_model_uri=source_model_uri or (previous.source_model_uri if previous else None),
        pool=observation.pool or (previous.pool if previous else None),
        queue_position=blocker.queue_position if blocker is not None else None,
        queue_admission=kueue.admission,
        start_time=core.start_time,
        completion_time=core.completion_time,
        results=results,
    )
    publish_status(body, previous, status, core.phase)


def mark_preempted(kind: str, namespace: str, name: str, by: QueuedGang) -> None:
    """Say in the job's status (and an Event) that preemption evicts it, and what happens next."""
    body = fetch(kind, namespace, name)
    if body is None:
        return
    job = (LeptonTrainingJob if kind == "LeptonTrainingJob" else LeptonCompression).model_validate(
        body
    )
    previous = job.status
    if previous is None:
        return
    resumes: bool | str = False
    update: dict[str, Any] = {}
    if isinstance(job, LeptonTrainingJob):
        layout = StorageLayout(settings().pvc_mount_root)
        if not job.spec.checkpoint.resume:
            resumes = "spec.checkpoint.resume is false"
        elif checkpoint_directory(job.spec, layout) is None:
            resumes = "checkpoints need a pvc:// output"
        else:
            resumes = True
        update["gpus"] = 0
    preemptor = by.job
    why = preemption_message(
        f"{preemptor.kind} {preemptor.namespace}/{preemptor.name}", by.priority, resumes
    )
    update["conditions"] = preempted_conditions(
        previous.conditions, job.metadata.generation, why, now()
    )
    publish_status(body, previous, previous.model_copy(update=update), previous.phase)
    kopf.event(cast(kopf.Body, body), type="Warning", reason="Preempted", message=why)


def report_to(
    kind: str, namespace: str, name: str, source_model_uri: str | None = None
) -> Callable[[Blocker | None], None]:
    """How the admission queue publishes a job's status: why it waits, or (None) what its
    children say once it was admitted."""

    def report(blocker: Blocker | None) -> None:
        body = fetch(kind, namespace, name)
        if body is None:
            return  # deleted meanwhile
        if kind == "LeptonTrainingJob":
            refresh_training_status(body, blocker)
        else:
            refresh_compression_status(body, blocker, source_model_uri)

    return report
