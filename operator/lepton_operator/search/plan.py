"""A search's next step, from its trial table and what its trials' training jobs say.

Pure: the caller observes the trials (a watch) and gives the sampler as functions; this module
decides which trials exist, which to create, and the search's status. The table it returns is
written to status *before* any trial it adds is created, so a restart finds every trial it
may have to create again (under the same name, with the same parameters) and never one twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from lepton_operator.api.search import (
    LeptonSearch,
    SearchResults,
    SearchSpec,
    SearchStatus,
    SearchTrial,
    TrialMetrics,
    TrialRung,
)
from lepton_operator.api.training import TrainingResults
from lepton_operator.builders.search import trial_name, trial_output_uri
from lepton_operator.search.halving import (
    WAITING,
    job_name,
    promotable,
    rung_epochs,
    start_rung,
    trial_epochs,
)
from lepton_operator.search.space import Params, format_value
from lepton_operator.status import ConditionBook, clipped

Propose = Callable[[Sequence[SearchTrial], int], Params | None]
Front = Callable[[Sequence[SearchTrial]], list[str]]
ACTIVE = ("Pending", "Running")
FINISHED = ("Completed", "Pruned", "Failed")
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class TrialObservation:
    """What a trial's LeptonTrainingJob says about it (its status)."""

    phase: str
    message: str | None = None
    results: TrainingResults | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None


@dataclass(frozen=True)
class SearchPlan:
    status: SearchStatus
    create: list[SearchTrial]  # trials whose training job is to be created, in this order


def _state(phase: str) -> str:
    if phase == "Succeeded":
        return "Completed"
    if phase == "Failed":
        return "Failed"
    return "Running" if phase == "Running" else "Pending"


def _violations(spec: SearchSpec, metrics: TrialMetrics) -> list[str]:
    """Which of the objective's limits the trial is over (or did not measure)."""
    found = []
    for name, limit, measured in spec.objective.limits(metrics):
        if measured is None:
            found.append(f"objective.{name}: the trial did not measure it")
        elif measured > limit:
            found.append(f"objective.{name} is {limit:g}, the trial measured {measured:g}")
    return found


def _gpu_hours(spec: SearchSpec, seen: TrialObservation, now: datetime) -> float | None:
    if seen.start_time is None:
        return None
    resources = spec.template.resources
    end = seen.completion_time or now
    held = max((end - seen.start_time).total_seconds(), 0.0) / SECONDS_PER_HOUR
    return round(resources.workers * resources.gpus_per_worker * held, 6)


def _rungs_gpu_hours(row: SearchTrial) -> float:
    return sum(rung.gpu_hours or 0.0 for rung in row.rungs)


def observe_trial(
    spec: SearchSpec, row: SearchTrial, seen: TrialObservation, now: datetime
) -> SearchTrial:
    """The row as its (current rung's) training job now says; a finished row does not change
    again."""
    if row.state in FINISHED:
        return row
    state = _state(seen.phase)
    held = _gpu_hours(spec, seen, now)
    gpu_hours = None if held is None and not row.rungs else _rungs_gpu_hours(row) + (held or 0)
    update: dict[str, object] = {
        "state": state,
        "gpu_hours": None if gpu_hours is None else round(gpu_hours, 6),
    }
    if state == "Completed":
        results = seen.results or TrainingResults()
        metrics = TrialMetrics(
            accuracy=results.accuracy,
            parameters=results.parameters,
            latency_ms=results.latency_ms,
            size_bytes=results.size_bytes,
        )
        violations = _violations(spec, metrics)
        if metrics.accuracy is None:
            violations.insert(0, "the trial reported no accuracy")
        update |= {
            "metrics": metrics,
            "feasible": not violations,
            "message": clipped("; ".join(violations)) if violations else None,
        }
    elif state == "Failed":
        update["message"] = clipped(seen.message or "the training job failed")
    return row.model_copy(update=update)


def _just_finished_rung(row: SearchTrial) -> bool:
    """Completed the rung it was at, and not yet recorded as having done so."""
    finished = row.rungs[-1].epochs if row.rungs else None
    return row.state == "Completed" and row.epochs is not None and finished != row.epochs


def _record_rung(spec: SearchSpec, row: SearchTrial) -> SearchTrial:
    """The row with its finished rung recorded: waiting to go on (Paused), or (last rung, or
    infeasible) completed."""
    held = (row.gpu_hours or 0.0) - _rungs_gpu_hours(row)
    accuracy = row.metrics.accuracy if row.metrics else None
    epochs = row.epochs
    assert epochs is not None  # _just_finished_rung
    rung = TrialRung(epochs=epochs, accuracy=accuracy, gpu_hours=round(max(held, 0), 6))
    row = row.model_copy(update={"rungs": [*row.rungs, rung]})
    if not row.feasible or row.rung + 1 >= len(rung_epochs(spec)):
        return row
    message = (
        f"waiting after {epochs} epochs: goes on once among the best 1/{spec.algorithm.eta} "
        "of the trials there"
    )
    return row.model_copy(update={"state": WAITING, "message": message})


def _promote(spec: SearchSpec, rows: list[SearchTrial], *, closing: bool) -> SearchTrial | None:
    """Hyperband: the first waiting row that may go on and whose next rung fits
    budget.maxEpochs, gone on to that rung (Pending; its job is to be created)."""
    ladder, left = rung_epochs(spec), _epochs_left(spec, rows)
    for row in promotable(spec, rows, closing=closing):
        assert row.epochs is not None  # a Paused row finished a rung of these epochs
        following = ladder[row.rung + 1]
        if left is not None and following - row.epochs > left:
            continue
        promoted = row.model_copy(
            update={"state": "Pending", "rung": row.rung + 1, "epochs": following, "message": None}
        )
        rows[rows.index(row)] = promoted
        return promoted
    return None


def _prune_waiting(spec: SearchSpec, rows: list[SearchTrial], spent: str | None) -> None:
    """The search has ended: every waiting row is pruned, with why it did not go on."""
    stopped = {row.name for row in promotable(spec, rows, closing=True)}
    for index, row in enumerate(rows):
        if row.state != WAITING:
            continue
        if row.name in stopped:  # it could go on, but its next rung did not fit
            why = spent or "budget.maxEpochs is spent"
            message = f"stopped after {row.epochs} epochs: {why}"
        else:
            message = (
                f"pruned after {row.epochs} epochs: not among the best "
                f"1/{spec.algorithm.eta} of the trials there"
            )
        rows[index] = row.model_copy(update={"state": "Pruned", "message": message})


def _committed_epochs(row: SearchTrial) -> int:
    """Epochs the row has trained or is training toward (a failed job's own are unknown)."""
    if row.state == "Failed":
        return row.rungs[-1].epochs if row.rungs else 0
    return row.epochs or 0


def _epochs_left(spec: SearchSpec, rows: Sequence[SearchTrial]) -> int | None:
    """What budget.maxEpochs leaves for new trials and rungs; None without that budget."""
    if spec.budget.max_epochs is None:
        return None
    return spec.budget.max_epochs - sum(_committed_epochs(row) for row in rows)


def epochs_trained(trials: Sequence[SearchTrial]) -> int:
    """Epochs of every finished rung or trial: a later rung resumes, so each trial counts
    the epochs it had at the end of its last finished rung."""
    return sum(
        row.rungs[-1].epochs if row.rungs else (row.epochs or 0)
        for row in trials
        if row.rungs or row.state in ("Completed", "Pruned")
    )


def best_trial(trials: Sequence[SearchTrial]) -> SearchTrial | None:
    """The feasible completed trial with the highest accuracy; the earlier one on a tie."""
    scored = [
        (row.metrics.accuracy, -row.number, row)
        for row in trials
        if row.state == "Completed"
        and row.feasible
        and row.metrics is not None
        and row.metrics.accuracy is not None
    ]
    return max(scored, key=lambda entry: entry[:2], default=(0.0, 0, None))[2]


def plan_search(
    search: LeptonSearch,
    observed: Mapping[str, TrialObservation],
    *,
    propose: Propose,
    front: Front,
    now: datetime,
) -> SearchPlan:
    spec, meta = search.spec, search.metadata
    previous = search.status or SearchStatus()
    rows: list[SearchTrial] = []
    create: list[SearchTrial] = []
    for row in previous.trials:
        seen = observed.get(job_name(row))
        if seen is not None:
            rows.append(observe_trial(spec, row, seen, now))
        else:
            rows.append(row)
            if row.state in ACTIVE:
                create.append(row)  # recorded, but its training job is not (or no longer) there
    hyperband = spec.algorithm.name == "hyperband"
    if hyperband:
        rows = [_record_rung(spec, row) if _just_finished_rung(row) else row for row in rows]
    budget = spec.budget
    gpu_hours = round(sum(row.gpu_hours or 0.0 for row in rows), 6)
    out_of_hours = budget.max_gpu_hours is not None and gpu_hours >= budget.max_gpu_hours
    exhausted = out_of_epochs = False
    while sum(row.state in ACTIVE for row in rows) < budget.parallel_trials and not out_of_hours:
        if hyperband and (promoted := _promote(spec, rows, closing=False)) is not None:
            create.append(promoted)
            continue
        if len(rows) >= budget.max_trials:
            break
        number = len(rows)
        rung = start_rung(spec, number) if hyperband else 0
        epochs = rung_epochs(spec)[rung] if hyperband else trial_epochs(spec)
        left = _epochs_left(spec, rows)
        if left is not None and epochs > left:
            out_of_epochs = True
            break
        params = propose(rows, number)
        if params is None:
            exhausted = True
            break
        row = SearchTrial(
            name=trial_name(meta.name, number),
            number=number,
            params={name: format_value(value) for name, value in params.items()},
            rung=rung,
            epochs=epochs,
        )
        rows.append(row)
        create.append(row)
    closing = hyperband and not out_of_hours and not any(row.state in ACTIVE for row in rows)
    while closing and sum(row.state in ACTIVE for row in rows) < budget.parallel_trials:
        # No trial will start or finish: the best waiting trial of each rung may go on.
        if (promoted := _promote(spec, rows, closing=True)) is None:
            break
        create.append(promoted)
    best = best_trial(rows)
    active = sum(row.state in ACTIVE for row in rows)
    spent = "the GPU-hour budget is spent" if out_of_hours else None
    if out_of_epochs:
        spent = "budget.maxEpochs is spent"
    finished = active == 0 and (len(rows) >= budget.max_trials or exhausted or spent is not None)
    if finished and hyperband:
        _prune_waiting(spec, rows, spent)
        best = best_trial(rows)
    phase, reason, message = _phase(rows, best, finished, spent)
    book = ConditionBook(list(previous.conditions), meta.generation, now)
    book.put("Succeeded", "True" if phase == "Succeeded" else "False", reason, message)
    if phase == "Failed":
        book.put("Failed", "True", reason, message)
    status = SearchStatus(
        phase=phase,
        conditions=book.conditions,
        observed_generation=meta.generation,
        message=clipped(message),
        trials=rows,
        completed_trials=sum(row.state == "Completed" for row in rows),
        best_trial=best.name if best else None,
        pareto_front=front(rows),
        gpu_hours=gpu_hours,
        epochs_trained=epochs_trained(rows),
        results=_results(best, spec),
        start_time=previous.start_time or (now if rows else None),
        completion_time=(previous.completion_time or now) if finished else None,
    )
    return SearchPlan(status, create)


def _results(best: SearchTrial | None, spec: SearchSpec) -> SearchResults | None:
    if best is None or best.metrics is None:
        return None
    return SearchResults(
        trial=best.name,
        accuracy=best.metrics.accuracy,
        model_uri=trial_output_uri(spec.template.output.uri, best.name),
        params=best.params,
    )


def _phase(
    rows: Sequence[SearchTrial],
    best: SearchTrial | None,
    finished: bool,
    spent: str | None,
) -> tuple[str, str, str]:
    completed = sum(row.state == "Completed" for row in rows)
    active = sum(row.state in ACTIVE for row in rows)
    if not finished:
        lead = f"; best so far {best.name}" if best else ""
        waiting = sum(row.state == WAITING for row in rows)
        paused = f", {waiting} waiting for their rung" if waiting else ""
        progress = f"{completed} of {len(rows)} trials completed, {active} running{paused}{lead}"
        return "Running", "Searching", progress
    why = spent or "every trial has finished"
    if best is not None:
        accuracy = best.metrics.accuracy if best.metrics else None
        return (
            "Succeeded",
            "BestTrialFound",
            f"{why}: best trial {best.name} (accuracy {accuracy})",
        )
    failed = [row for row in rows if row.state == "Failed"]
    if completed == 0 and failed:
        return (
            "Failed",
            "AllTrialsFailed",
            f"{why} and none completed; {failed[0].name}: {failed[0].message}",
        )
    pruned = [row for row in rows if row.state == "Pruned"]
    if completed == 0 and pruned:
        # The one the budget stopped says more than one ranked out.
        shown = next(
            (row for row in pruned if (row.message or "").startswith("stopped")), pruned[0]
        )
        return (
            "Failed",
            "NoTrialTrainedInFull",
            f"{why} and no trial trained its full epochs ({len(pruned)} pruned; "
            f"{shown.name}: {shown.message}): raise budget.maxEpochs or maxTrials",
        )
    infeasible = next((row for row in rows if row.state == "Completed" and not row.feasible), None)
    detail = f"; {infeasible.name}: {infeasible.message}" if infeasible else ""
    return (
        "Failed",
        "NoFeasibleTrial",
        f"{why} and no trial met the objective's limits{detail}: relax them or change the space",
    )
