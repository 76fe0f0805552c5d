"""The next trial's parameters and the Pareto front, from Optuna through ask-and-tell.

The trial table in the search's status is the record; Optuna's in-memory study is rebuilt
from it whenever it is needed. Each trial is replayed in creation order (enqueued with its
own parameters, asked, told its outcome), so Optuna holds exactly what the table holds, after
an operator restart too, and nothing else is stored. Trial n is then asked of a sampler
seeded with (spec seed, n): the same table gives the same proposal however often the
reconcile runs, and a proposal that was made but not recorded is made again.

Grid is not a sampler: trial n is the n-th combination (search/space.py).
"""

from __future__ import annotations

import hashlib
import logging
import math
import warnings
from collections.abc import Sequence

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from lepton_operator.api.search import SearchParameter, SearchSpec, SearchTrial, TrialMetrics
from lepton_operator.search.space import Params, grid_point, grid_size, int_step, parse_params

# Optuna announces every study it creates at INFO; a reconcile creates one each time.
optuna.logging.set_verbosity(logging.WARNING)
# Optuna marks TPE's multivariate density, constant liar and constraints experimental, and
# would say so on every reconcile.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
CONSTRAINTS_ATTR = "lepton.constraints"


def distribution(parameter: SearchParameter) -> BaseDistribution:
    if parameter.type == "categorical":
        return CategoricalDistribution(list(parameter.values or []))
    assert parameter.min is not None and parameter.max is not None  # the CRD requires both
    if parameter.type == "int":
        step = None if parameter.log else int_step(parameter)
        return IntDistribution(
            int(parameter.min), int(parameter.max), log=parameter.log, step=step or 1
        )
    return FloatDistribution(parameter.min, parameter.max, log=parameter.log, step=parameter.step)


def objective_values(spec: SearchSpec, metrics: TrialMetrics | None) -> list[float] | None:
    """Accuracy, then every metric to minimise; None when the trial did not measure them."""
    if metrics is None or metrics.accuracy is None:
        return None
    values = [metrics.accuracy]
    for name in spec.objective.minimize:
        value = metrics.of(name)
        if value is None:
            return None
        values.append(value)
    return values


def constraint_values(spec: SearchSpec, metrics: TrialMetrics | None) -> list[float]:
    """How far a trial is over each of the objective's limits (<= 0: within it); a limit on a
    metric that the trial did not measure counts as exceeded."""
    return [
        (measured - limit) if measured is not None else 1.0
        for _, limit, measured in spec.objective.limits(metrics)
    ]


def _constraints(trial: FrozenTrial) -> Sequence[float]:
    values: list[float] = trial.user_attrs.get(CONSTRAINTS_ATTR, [])
    return values


def model_based(spec: SearchSpec) -> bool:
    """Whether trial n depends on the trials before it: tpe, and hyperband with its tpe
    sampler (random sampling learns nothing from them)."""
    algorithm = spec.algorithm
    return algorithm.name == "tpe" or (algorithm.name == "hyperband" and algorithm.sampler == "tpe")


def _sampler(spec: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    constrained = bool(constraint_values(spec, None))
    if model_based(spec):
        # Trials run in parallel: the constant liar keeps TPE from proposing again what a
        # running trial is already trying. Multivariate: an architecture's parameters work
        # together (width with blocks, batch size with learning rate), and one density over
        # all of them, as BOHB's, proposes the combinations the best trials had, not each
        # value on its own (tests/test_search.py; bench.search, docs/design-notes.md).
        return optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            constant_liar=True,
            constraints_func=_constraints if constrained else None,
        )
    return optuna.samplers.RandomSampler(seed=seed)


def _distributions(spec: SearchSpec) -> dict[str, BaseDistribution]:
    return {parameter.name: distribution(parameter) for parameter in spec.space}


def replay(spec: SearchSpec, trials: Sequence[SearchTrial], seed: int = 0) -> optuna.Study:
    """A study that holds the table's trials, in order, with their outcomes."""
    directions = ["maximize"] + ["minimize"] * len(spec.objective.minimize)
    study = optuna.create_study(directions=directions, sampler=_sampler(spec, seed))
    distributions = _distributions(spec)
    for row in sorted(trials, key=lambda row: row.number):
        study.enqueue_trial(parse_params(spec.space, row.params), skip_if_exists=False)
        asked = study.ask(distributions)
        values = objective_values(spec, row.metrics) if row.state == "Completed" else None
        if row.state == "Failed" or (row.state == "Completed" and values is None):
            _tell_worst(spec, study, asked)
            continue
        if len(directions) == 1:  # Optuna keeps intermediate values for one objective only
            _report_rungs(asked, row)
        if values is not None:
            asked.set_user_attr(CONSTRAINTS_ATTR, constraint_values(spec, row.metrics))
            study.tell(asked, values)
        elif row.state in ("Pruned", "Paused"):
            # TPE ranks a pruned trial by its last rung: constraints are needed for it too. A
            # trial waiting at a rung is, for now, one stopped there.
            asked.set_user_attr(CONSTRAINTS_ATTR, constraint_values(spec, row.metrics))
            study.tell(asked, state=TrialState.PRUNED)
        # Pending and Running trials stay RUNNING: TPE's constant liar counts them.
    return study


def _tell_worst(spec: SearchSpec, study: optuna.Study, trial: optuna.Trial) -> None:
    """A trial that failed, or measured nothing, as the worst outcome: pruned before any rung
    and over every limit by more than any measured trial.

    Told FAIL instead, TPE leaves it out of its model and goes on proposing the region it
    failed in: a hyperband search proposed networks over maxParameters for more than 90
    trials in a row, each failing before training.
    """
    trial.set_user_attr(CONSTRAINTS_ATTR, [math.inf] * len(constraint_values(spec, None)))
    study.tell(trial, state=TrialState.PRUNED)


def _report_rungs(trial: optuna.Trial, row: SearchTrial) -> None:
    """A hyperband trial's finished rungs as intermediate values, step = epochs trained, the
    way a pruner's trial reports them: TPE ranks the trials pruned at the same rung by them."""
    for rung in row.rungs:
        if rung.accuracy is not None:
            trial.report(rung.accuracy, step=rung.epochs)


def trial_seed(spec: SearchSpec, number: int) -> int:
    """A reproducible seed of its own for each trial number. Hashed: NumPy's Mersenne Twister,
    behind Optuna's samplers, starts nearly the same streams for nearby seeds (seed + n gave
    every other trial almost the same parameters)."""
    digest = hashlib.blake2b(f"{spec.algorithm.seed}/{number}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def propose(spec: SearchSpec, trials: Sequence[SearchTrial], number: int) -> Params | None:
    """Trial `number`'s parameters; None when the space has no combination left (grid)."""
    if spec.algorithm.name == "grid":
        return grid_point(spec.space, number) if number < grid_size(spec.space) else None
    # Random sampling learns nothing from earlier trials, so random and hyperband with its
    # random sampler ask an empty study: trial n is the same in both, whatever the table holds.
    study = replay(spec, trials if model_based(spec) else [], trial_seed(spec, number))
    asked = study.ask(_distributions(spec))
    return dict(asked.params)


def pareto_front(spec: SearchSpec, trials: Sequence[SearchTrial]) -> list[str]:
    """Names of the feasible completed trials that no other feasible one beats on every
    objective (an infeasible trial beats nobody)."""
    if not spec.objective.minimize:
        return []
    feasible = sorted(
        (row for row in trials if row.state == "Completed" and row.feasible),
        key=lambda row: row.number,
    )
    study = replay(spec, feasible)
    # The replayed study numbers its trials in the order they were given.
    return sorted(feasible[trial.number].name for trial in study.best_trials)
