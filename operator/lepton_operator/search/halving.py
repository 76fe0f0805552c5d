"""Hyperband's rungs: how long each trial trains, and which trials go on.

Asynchronous successive halving (ASHA; Li et al., 2020, Algorithm 2), decided from the trial
table alone. Rung k trains minEpochs * eta**k epochs, the last rung the trial's full epochs.
A trial that finishes a rung below its last waits (Paused). Whenever a slot is free, a waiting
trial goes on if it is among the best floor(n/eta) of the n trials (of its bracket) that have
finished that rung so far, the highest rung first; only when none can does a new trial start.
So the first trials at a rung wait for eta of them to finish it, instead of going on because
they are the best so far (the rule of Optuna's SuccessiveHalvingPruner, which trained the
first trial of every search in full). When no new trial can start and none is running, the
best waiting trial of each rung may go on: otherwise a search with fewer than eta trials at
a rung would end with none trained in full.

A trial that goes on continues from its checkpoints (the same output, more epochs, one
learning-rate schedule of the full epochs), so the epochs it spent are not spent again.
"""

from __future__ import annotations

from collections.abc import Sequence

from lepton_operator.api.base import NAME_MAX
from lepton_operator.api.search import SearchSpec, SearchTrial
from lepton_operator.builders.names import dns_label
from lepton_operator.search.space import capped_epochs

WAITING = "Paused"  # the state of a trial that finished a rung and may go on
_SHORTENED_MAX = 63  # as trial names: a name past the object-name limit becomes a DNS label


def trial_epochs(spec: SearchSpec) -> int:
    """A trial's full epochs (what trial_spec renders)."""
    return capped_epochs(spec.template, spec.budget)


def rung_epochs(spec: SearchSpec) -> list[int]:
    """Epochs at the end of each rung: minEpochs * eta**k below the full epochs, then them."""
    algorithm, full = spec.algorithm, trial_epochs(spec)
    rungs, epochs = [], algorithm.min_epochs
    while epochs < full:
        rungs.append(epochs)
        epochs *= algorithm.eta
    return [*rungs, full]


def start_rung(spec: SearchSpec, number: int) -> int:
    """Trial `number`'s first rung: its bracket (trials take the brackets in turn)."""
    brackets = min(spec.algorithm.brackets, len(rung_epochs(spec)))
    return number % brackets


def job_name(row: SearchTrial) -> str:
    """The training job of the row's current rung: the trial's name, then <name>-r1, ..."""
    if not row.rungs:
        return row.name
    suffix = f"-r{len(row.rungs)}"
    whole = row.name + suffix
    return whole if len(whole) <= NAME_MAX else dns_label(row.name, suffix, _SHORTENED_MAX)


def last_run(row: SearchTrial) -> SearchTrial:
    """The row as it was while its last finished rung ran: that rung's job name and epochs
    (render_trial of it is the job that wrote the trial's model)."""
    if not row.rungs:
        return row
    return row.model_copy(update={"rungs": row.rungs[:-1], "epochs": row.rungs[-1].epochs})


def _accuracy_at(row: SearchTrial, epochs: int) -> float | None:
    return next((rung.accuracy for rung in row.rungs if rung.epochs == epochs), None)


def _ranked_at(
    spec: SearchSpec, rows: Sequence[SearchTrial], bracket: int, epochs: int
) -> list[tuple[float, SearchTrial]]:
    """The bracket's feasible rows that finished the rung of `epochs`, best first (the
    earlier trial on a tie)."""
    ranked = [
        (accuracy, row)
        for row in rows
        if start_rung(spec, row.number) == bracket
        and row.feasible is not False
        and (accuracy := _accuracy_at(row, epochs)) is not None
    ]
    return sorted(ranked, key=lambda entry: (-entry[0], entry[1].number))


def promotable(
    spec: SearchSpec, rows: Sequence[SearchTrial], *, closing: bool = False
) -> list[SearchTrial]:
    """The Paused rows that may go on, in the order they go: the highest rung first, then
    the most accurate. A row may when it is among the best floor(n/eta) of the n rows of its
    bracket that finished its rung (the best max(that, 1) when `closing`: no trial will
    start or finish again)."""
    ladder, eta = rung_epochs(spec), spec.algorithm.eta
    brackets = {start_rung(spec, row.number) for row in rows}
    found: list[tuple[int, float, int, SearchTrial]] = []
    for bracket in brackets:
        for rung, epochs in enumerate(ladder[:-1]):
            ranked = _ranked_at(spec, rows, bracket, epochs)
            keep = len(ranked) // eta
            if closing:
                keep = max(keep, 1)
            found.extend(
                (rung, accuracy, row.number, row)
                for accuracy, row in ranked[:keep]
                if row.state == WAITING and row.rung == rung
            )
    found.sort(key=lambda entry: (-entry[0], -entry[1], entry[2]))
    return [entry[3] for entry in found]
