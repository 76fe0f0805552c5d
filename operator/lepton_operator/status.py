"""Pure functions from what the children report to the status of a Lepton resource.

Nothing here reads the cluster: handlers gather observations, these functions decide phase,
conditions and results, so every transition is a table-driven unit test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import ValidationError

from lepton_operator.api.base import TEXT_MAX, Condition, ConditionStatus, EndpointPhase, JobPhase
from lepton_operator.api.compression import CompressionResults, CompressionTrial
from lepton_operator.api.endpoint import EndpointTuningStatus
from lepton_operator.api.training import TrainingResults
from lepton_operator.builders.runtime_config import StorageLayout
from lepton_runtime.contract import CompressSummary, TrainSummary

# PyTorchJob condition types, most decisive first: a job that failed stays failed even if an
# older Running condition is still True.
_PYTORCHJOB_PRECEDENCE: tuple[tuple[str, JobPhase], ...] = (
    ("Failed", "Failed"),
    ("Succeeded", "Succeeded"),
    ("Suspended", "Suspended"),
    ("Restarting", "Running"),
    ("Running", "Running"),
    ("Created", "Pending"),
)


def clipped(message: str, limit: int = TEXT_MAX) -> str:
    """A message short enough for status.message (conditions keep the whole of it)."""
    return message if len(message) <= limit else message[: limit - 1] + "…"


@dataclass(frozen=True)
class ObservedCondition:
    """A condition as a child reports it (PyTorchJob, Deployment)."""

    type: str
    status: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Blocker:
    """Why the operator could not create or keep the children, in words for the user."""

    reason: str
    message: str
    phase: JobPhase = "Pending"
    queue_position: int | None = None  # while Queued: 1 is next in line


@dataclass(frozen=True)
class JobObservation:
    """What the operator saw of a job's children on one reconcile."""

    blocker: Blocker | None = None
    pytorchjob_exists: bool = False
    pool: str | None = None  # the pool admission placed the PyTorchJob on (its label)
    pytorchjob_conditions: tuple[ObservedCondition, ...] = ()
    active_workers: int = 0
    start_time: datetime | None = None
    completion_time: datetime | None = None
    failure_message: str | None = None
    # A pod of the job that cannot start (pod_problems.py): what the user must fix.
    stuck_pod: Blocker | None = None


@dataclass(frozen=True)
class JobCore:
    """The part of status that training and compression jobs share."""

    phase: JobPhase
    conditions: list[Condition]
    message: str
    start_time: datetime | None
    completion_time: datetime | None


def set_condition(
    conditions: list[Condition],
    type_: str,
    *,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """Conditions with one replaced; lastTransitionTime moves only when status flips."""
    previous = next((c for c in conditions if c.type == type_), None)
    changed_at = (
        now if previous is None or previous.status != status else previous.last_transition_time
    )
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=changed_at,
        observed_generation=generation,
    )
    return [updated if c.type == type_ else c for c in conditions] + (
        [] if previous is not None else [updated]
    )


@dataclass
class ConditionBook:
    """The conditions a derivation is writing, all stamped with one generation and time."""

    conditions: list[Condition]
    generation: int
    now: datetime

    def put(self, type_: str, status: ConditionStatus, reason: str, message: str) -> None:
        self.conditions = set_condition(
            self.conditions,
            type_,
            status=status,
            reason=reason,
            message=message,
            generation=self.generation,
            now=self.now,
        )


def pytorchjob_phase(
    conditions: tuple[ObservedCondition, ...],
) -> tuple[JobPhase, ObservedCondition | None]:
    """The Lepton phase a PyTorchJob's conditions amount to, and the condition that decided."""
    for type_, phase in _PYTORCHJOB_PRECEDENCE:
        for condition in conditions:
            if condition.type == type_ and condition.status == "True":
                return phase, condition
    return "Pending", None


def derive_job_core(
    previous: list[Condition], generation: int, observed: JobObservation, now: datetime
) -> JobCore:
    """Phase, conditions and message of a training or compression job."""
    book = ConditionBook(list(previous), generation, now)
    put = book.put

    if observed.blocker is not None:
        blocker = observed.blocker
        put("Ready", "False", blocker.reason, blocker.message)
        if blocker.phase == "Queued":
            put("Admitted", "False", blocker.reason, blocker.message)
        if blocker.phase == "Failed":
            put("Failed", "True", blocker.reason, blocker.message)
            put("Succeeded", "False", blocker.reason, blocker.message)
        return JobCore(blocker.phase, book.conditions, blocker.message, None, None)
    if not observed.pytorchjob_exists:
        message = "creating the PyTorchJob"
        put("Ready", "Unknown", "Creating", message)
        return JobCore("Pending", book.conditions, message, None, None)

    phase, deciding = pytorchjob_phase(observed.pytorchjob_conditions)
    reason = deciding.reason if deciding and deciding.reason else f"Job{phase}"
    message = deciding.message if deciding and deciding.message else f"job is {phase.lower()}"
    if phase == "Failed" and observed.failure_message:
        message = observed.failure_message
    stuck = observed.stuck_pod if phase in ("Pending", "Running") else None
    if stuck is not None:
        message = stuck.message
        put("Ready", "False", stuck.reason, stuck.message)
    else:
        put("Ready", "True", "ChildrenCreated", "the PyTorchJob exists")
    if observed.pool is not None:
        put("Admitted", "True", "Admitted", f"admitted to node pool {observed.pool!r}")
    preempted = next((c for c in previous if c.type == "Preempted"), None)
    if preempted is not None and preempted.status == "True":
        put("Preempted", "False", "Readmitted", f"admitted again after: {preempted.message}")
    put("Running", "True" if phase == "Running" else "False", reason, message)
    put("Succeeded", "True" if phase == "Succeeded" else "False", reason, message)
    put("Failed", "True" if phase == "Failed" else "False", reason, message)
    finished = phase in ("Succeeded", "Failed")
    return JobCore(
        phase=phase,
        conditions=book.conditions,
        message=message,
        start_time=observed.start_time,
        completion_time=observed.completion_time if finished else None,
    )


def preemption_message(preemptor: str, priority: int, resumes: bool | str) -> str:
    """What an evicted job's status says: who evicted it, and how it carries on (`resumes`:
    True, or why it starts over)."""
    after = (
        "it resumes from its newest checkpoint when admitted again"
        if resumes is True
        else f"it starts over when admitted again{f' ({resumes})' if resumes else ''}"
    )
    return f"preempted by {preemptor} (priority {priority}); queued again, {after}"


def preempted_conditions(
    previous: list[Condition], generation: int, message: str, now: datetime
) -> list[Condition]:
    """The conditions of a job just evicted by preemption (it is queued again)."""
    book = ConditionBook(list(previous), generation, now)
    book.put("Preempted", "True", "Preempted", message)
    book.put("Admitted", "False", "Preempted", message)
    return book.conditions


def parse_summary(
    message: str | None, model: type[TrainSummary] | type[CompressSummary]
) -> TrainSummary | CompressSummary | None:
    """The runtime's final JSON summary from a termination message, or None if it has none."""
    if not message:
        return None
    try:
        return model.model_validate_json(message)
    except ValidationError:
        return None


def training_results(
    summary: TrainSummary, output_uri: str, layout: StorageLayout
) -> TrainingResults:
    """Results for status, with URIs as the user wrote them (pvc://, s3://), not pod paths."""
    return TrainingResults(
        accuracy=summary.accuracy,
        loss=summary.loss,
        epochs=summary.epochs,
        samples_per_second=summary.samples_per_second,
        parameters=summary.parameters,
        latency_ms=summary.latency_ms,
        size_bytes=summary.size_bytes,
        model_uri=output_uri,
        last_checkpoint=layout.to_user_uri(summary.last_checkpoint)
        if summary.last_checkpoint
        else None,
        resumed_from_step=summary.resumed_from_step,
    )


def compression_results(summary: CompressSummary, output_uri: str) -> CompressionResults:
    drop_points = round((summary.baseline_accuracy - summary.final_accuracy) * 100, 3)
    ratio = (
        summary.size_bytes_before / summary.size_bytes_after if summary.size_bytes_after else None
    )
    return CompressionResults(
        baseline_accuracy=summary.baseline_accuracy,
        final_accuracy=summary.final_accuracy,
        accuracy_drop=drop_points,
        size_bytes_before=summary.size_bytes_before,
        size_bytes_after=summary.size_bytes_after,
        size_ratio=round(ratio, 3) if ratio is not None else None,
        sparsity=summary.sparsity,
        codebook_bits=summary.codebook_bits,
        parameters=summary.parameters,
        nonzero_parameters=summary.nonzero_parameters,
        file_sizes=dict(summary.file_sizes) or None,
        latency_ms_before=summary.latency_ms_before,
        latency_ms_after=summary.latency_ms_after,
        model_uri=output_uri,
        trials=[
            CompressionTrial(
                sparsity=t.sparsity,
                quantization=t.quantization,
                codebook_bits=t.codebook_bits,
                size_bytes=t.size_bytes,
                accuracy=t.accuracy,
                onnx_accuracy=t.onnx_accuracy,
                latency_ms=t.latency_ms,
                kept=t.kept,
                reason=t.reason,
            )
            for t in summary.trials
        ],
    )


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class DeploymentObservation:
    """What the operator saw of an endpoint's Deployment."""

    blocker: Blocker | None = None
    exists: bool = False
    pool: str | None = None  # the pool admission placed the Deployment on (its label)
    desired_replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    generation_observed: bool = True
    conditions: tuple[ObservedCondition, ...] = field(default=())
    stuck_pod: Blocker | None = None  # a replica that cannot start (pod_problems.py)


@dataclass(frozen=True)
class EndpointCore:
    phase: EndpointPhase
    conditions: list[Condition]
    message: str


def derive_endpoint_core(
    previous: list[Condition], generation: int, observed: DeploymentObservation, now: datetime
) -> EndpointCore:
    """Available when a replica serves; Progressing while a rollout runs; Degraded when the
    Deployment gave up progressing or runs short of replicas."""
    book = ConditionBook(list(previous), generation, now)
    put = book.put

    if observed.blocker is not None:
        blocker = observed.blocker
        put("Ready", "False", blocker.reason, blocker.message)
        put("Available", "False", blocker.reason, blocker.message)
        if blocker.phase == "Queued":
            put("Admitted", "False", blocker.reason, blocker.message)
        phase: EndpointPhase = blocker.phase if blocker.phase in ("Failed", "Queued") else "Pending"
        return EndpointCore(phase, book.conditions, blocker.message)
    if not observed.exists:
        put("Ready", "Unknown", "Creating", "creating the Triton Deployment")
        return EndpointCore("Pending", book.conditions, "creating the Triton Deployment")

    stuck = observed.stuck_pod if observed.ready_replicas < observed.desired_replicas else None
    if stuck is not None:
        put("Ready", "False", stuck.reason, stuck.message)
    else:
        put("Ready", "True", "ChildrenCreated", "the Triton Deployment exists")
    if observed.pool is not None:
        put("Admitted", "True", "Admitted", f"admitted to node pool {observed.pool!r}")
    by_type = {c.type: c for c in observed.conditions}
    stalled = by_type.get("Progressing")
    deadline_exceeded = stalled is not None and stalled.reason == "ProgressDeadlineExceeded"
    desired, ready = observed.desired_replicas, observed.ready_replicas
    rolling = (
        not observed.generation_observed or observed.updated_replicas < desired or ready < desired
    )
    replicas_text = f"{ready}/{desired} replicas ready"
    serving = ready > 0
    put(
        "Available",
        "True" if serving else "False",
        "MinimumReplicasAvailable" if serving else "NoReplicaReady",
        replicas_text,
    )
    progressing = rolling and not deadline_exceeded
    put(
        "Progressing",
        "True" if progressing else "False",
        "RollingOut"
        if progressing
        else ("ProgressDeadlineExceeded" if deadline_exceeded else "RolloutComplete"),
        stalled.message if deadline_exceeded and stalled else replicas_text,
    )
    degraded = deadline_exceeded or (serving and ready < desired and not progressing)
    put(
        "Degraded",
        "True" if degraded else "False",
        "ProgressDeadlineExceeded"
        if deadline_exceeded
        else ("ReplicasUnavailable" if degraded else "AsExpected"),
        stalled.message if deadline_exceeded and stalled else replicas_text,
    )
    state: EndpointPhase = "Degraded" if degraded else "Available" if serving else "Progressing"
    return EndpointCore(
        state, book.conditions, f"{replicas_text}; {stuck.message}" if stuck else replicas_text
    )


def with_tuning_outcome(
    core: EndpointCore,
    tuning: EndpointTuningStatus | None,
    budget_ms: float | None,
    generation: int,
    now: datetime,
) -> EndpointCore:
    """A serving endpoint whose tuning met no candidate within the latency budget is Degraded:
    it serves the fastest configuration, and says how far from the budget that is."""
    if core.phase != "Available" or tuning is None or tuning.budget_met or budget_ms is None:
        return core
    chosen = tuning.chosen
    message = (
        f"no tuned configuration kept p99 within the {budget_ms:g} ms budget (best p99 seen "
        f"{tuning.best_p99_ms:.2f} ms over {len(tuning.candidates)} candidates): serving the "
        f"fastest, {chosen.throughput:.0f} req/s at p99 {chosen.p99_ms:.2f} ms; raise "
        "spec.tuning.latencyBudgetMs, lower spec.tuning.concurrency, or add resources"
    )
    book = ConditionBook(list(core.conditions), generation, now)
    book.put("Degraded", "True", "LatencyBudgetNotMet", message)
    return EndpointCore("Degraded", book.conditions, message)


PhaseEvent = tuple[Literal["Normal", "Warning"], str, str]


def transition_event(old_phase: str | None, new_phase: str, message: str) -> PhaseEvent | None:
    """The Kubernetes Event to post when the phase changes (none when it stays)."""
    if old_phase == new_phase:
        return None
    warning = new_phase in ("Failed", "Degraded")
    return ("Warning" if warning else "Normal", new_phase, message)
