"""Hyperband's rungs: how long each trial trains, and which trials go on.

Asynchronous successive halving (ASHA; Li et al., 2020), decided from the trial table alone.
Rung k trains minEpochs * eta**k epochs, the last rung the trial's full epochs. When a trial
finishes a rung it goes on at once if it is among the best 1/eta of the trials (of its
bracket) that have finished that rung so far, and is pruned otherwise; the first trials at a
rung go on when they are the best so far. This is the rule of Optuna's SuccessiveHalvingPruner.
Optuna's pruner keeps its rungs in the attributes of trials that report to it while they
run; a Lepton trial is a training job per rung, and its table row is the record, so the rule
is applied to the rows.

A trial that goes on continues from its checkpoints (the same output, more epochs, one
learning-rate schedule of the full epochs), so the epochs it spent are not spent again.
"""

from __future__ import annotations

from collections.abc import Sequence

from lepton_operator.api.base import NAME_MAX
from lepton_operator.api.search import SearchSpec, SearchTrial
from lepton_operator.builders.names import dns_label
from lepton_operator.search.space import capped_epochs

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


def goes_on(spec: SearchSpec, row: SearchTrial, rows: Sequence[SearchTrial]) -> bool:
    """Whether the row, which has just finished the rung it is at (recorded last in
    row.rungs), is among the best 1/eta of its bracket there."""
    epochs = row.rungs[-1].epochs
    own = row.rungs[-1].accuracy
    if own is None:
        return False
    bracket = start_rung(spec, row.number)
    others = [other for other in rows if other.name != row.name]
    competing = sorted(
        (
            accuracy
            for other in [*others, row]
            if start_rung(spec, other.number) == bracket
            and other.feasible is not False
            and (accuracy := _accuracy_at(other, epochs)) is not None
        ),
        reverse=True,
    )
    keep = max(len(competing) // spec.algorithm.eta, 1)
    return own >= competing[keep - 1]
