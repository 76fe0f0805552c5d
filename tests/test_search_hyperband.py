"""LeptonSearch under hyperband: rungs, promotion (as tables and as properties), rung jobs."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lepton_operator.api.base import OBJECT_NAME_PATTERN
from lepton_operator.api.search import (
    LeptonSearch,
    SearchSpec,
    SearchStatus,
    SearchTrial,
    TrialMetrics,
    TrialRung,
)
from lepton_operator.api.training import TrainingResults
from lepton_operator.builders.search import RUNG_LABEL, render_trial
from lepton_operator.search import sampler
from lepton_operator.search.halving import job_name, promotable, rung_epochs, start_rung
from lepton_operator.search.plan import SearchPlan, TrialObservation, plan_search
from tests.factories import make_search

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
HYPERBAND = {
    "template": {"hyperparameters": {"epochs": 9}},
    "algorithm": {"name": "hyperband", "eta": 3, "minEpochs": 1, "seed": 5},
    "budget": {"maxTrials": 9, "parallelTrials": 1},
}


def _search(spec: dict[str, Any] | None = None, status: SearchStatus | None = None) -> LeptonSearch:
    search = LeptonSearch.model_validate(make_search(spec={**HYPERBAND, **(spec or {})}))
    return search.model_copy(update={"status": status})


def _plan(search: LeptonSearch, observed: dict[str, TrialObservation]) -> SearchPlan:
    return plan_search(
        search,
        observed,
        propose=lambda rows, number: {"model.parameters.widthMultiplier": 0.25 + number / 100},
        front=lambda rows: [],
        now=NOW,
    )


def _done(accuracy: float) -> TrialObservation:
    return TrialObservation("Succeeded", results=TrainingResults(accuracy=accuracy))


# --------------------------------------------------------------------------- rungs


@pytest.mark.parametrize(
    ("epochs", "eta", "min_epochs", "cap", "ladder"),
    [
        (9, 3, 1, None, [1, 3, 9]),
        (10, 3, 1, None, [1, 3, 9, 10]),
        (20, 2, 1, 4, [1, 2, 4]),  # the budget caps the full epochs
        (8, 2, 3, None, [3, 6, 8]),
    ],
)
def test_rungs_multiply_by_eta_up_to_the_trials_epochs(
    epochs: int, eta: int, min_epochs: int, cap: int | None, ladder: list[int]
) -> None:
    budget: dict[str, Any] = {"maxTrials": 4, "parallelTrials": 1}
    if cap is not None:
        budget["maxEpochsPerTrial"] = cap
    spec = SearchSpec.model_validate(
        make_search(
            spec={
                "template": {"hyperparameters": {"epochs": epochs}},
                "algorithm": {"name": "hyperband", "eta": eta, "minEpochs": min_epochs},
                "budget": budget,
            }
        )["spec"]
    )
    assert rung_epochs(spec) == ladder


def test_brackets_take_turns_and_never_start_past_the_last_rung() -> None:
    spec = _search({"algorithm": {"name": "hyperband", "brackets": 5}}).spec  # 3 rungs
    assert [start_rung(spec, n) for n in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_random_and_hyperband_propose_the_same_trials_for_the_same_seed() -> None:
    """What bench.search's comparison stands on; the table they hold does not matter."""
    hyperband = _search().spec
    random = hyperband.model_copy(
        update={"algorithm": hyperband.algorithm.model_copy(update={"name": "random"})}
    )
    table = [SearchTrial(name="x", number=0, params={}, state="Pruned")]
    for number in range(4):
        assert sampler.propose(hyperband, table, number) == sampler.propose(random, [], number)


def _finished(number: int, activation: str, accuracies: list[float], state: str) -> SearchTrial:
    """A trial that finished a rung per accuracy (1, 3, 9 epochs) and then stopped."""
    epochs = [1, 3, 9][: len(accuracies)]
    return SearchTrial(
        name=f"mnist-search-{number:03d}",
        number=number,
        params={
            "model.parameters.widthMultiplier": "0.5",
            "model.parameters.activation": activation,
            "hyperparameters.learningRate": "0.001",
        },
        state=state,
        rung=len(accuracies) - 1,
        epochs=epochs[-1],
        rungs=[TrialRung(epochs=e, accuracy=a) for e, a in zip(epochs, accuracies, strict=True)],
        metrics=TrialMetrics(accuracy=accuracies[-1], parameters=1000),
        feasible=True,
    )


def _with_sampler(name: str) -> SearchSpec:
    return _search({"algorithm": {"name": "hyperband", "seed": 5, "sampler": name}}).spec


def test_hyperband_with_tpe_replays_every_finished_rung() -> None:
    table = [
        _finished(0, "gelu", [0.90, 0.95, 0.99], "Completed"),
        _finished(1, "relu", [0.50], "Pruned"),
        _finished(2, "gelu", [0.91, 0.96], "Running"),  # gone on: its last rung is running
    ]
    study = sampler.replay(_with_sampler("tpe"), table)
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "PRUNED", "RUNNING"]
    assert [trial.intermediate_values for trial in study.trials] == [
        {1: 0.90, 3: 0.95, 9: 0.99},
        {1: 0.50},
        {1: 0.91, 3: 0.96},
    ]
    assert study.trials[0].value == 0.99


def test_hyperband_with_tpe_proposes_more_like_the_trials_that_went_furthest() -> None:
    """BOHB's point: the rungs teach the sampler. Every gelu trial went on to its last rung,
    every relu trial was pruned at the first; TPE then draws mostly gelu, the random sampler
    as it always does, the same trials as random search."""
    table = [
        _finished(number, "gelu", [0.90, 0.95, 0.99], "Completed")
        if number % 2
        else _finished(number, "relu", [0.50], "Pruned")
        for number in range(20)
    ]
    tpe, random = _with_sampler("tpe"), _with_sampler("random")
    drawn = [sampler.propose(tpe, table, number) for number in range(20, 40)]
    gelu = sum(proposal is not None and proposal["model.parameters.activation"] == "gelu"
               for proposal in drawn)  # fmt: skip
    assert gelu >= 16  # of 20
    plain = _search({"algorithm": {"name": "random", "seed": 5}}).spec
    assert sampler.propose(random, table, 20) == sampler.propose(plain, [], 20)


def test_nearby_trial_numbers_do_not_draw_nearby_parameters() -> None:
    """Seeds n and n + 2 once gave every other trial almost the same learning rate."""
    spec = _search().spec
    odd = []
    for number in range(1, 40, 2):
        proposal = sampler.propose(spec, [], number)
        assert proposal is not None
        odd.append(float(proposal["model.parameters.widthMultiplier"]))
    assert max(odd) - min(odd) > 0.5  # of the domain's 0.75


# --------------------------------------------------------------------------- the table


def test_a_new_trial_starts_at_the_first_rung() -> None:
    plan = _plan(_search(), {})
    (row,) = plan.create
    assert (row.name, row.rung, row.epochs, row.state) == ("mnist-search-000", 0, 1, "Pending")


def _table(*rows: SearchTrial) -> SearchStatus:
    return SearchStatus(phase="Running", trials=list(rows))


def _at_first_rung(number: int, accuracy: float, state: str = "Paused") -> SearchTrial:
    """Trial `number`, which finished the 1-epoch rung at `accuracy` and waits there."""
    return SearchTrial(
        name=f"mnist-search-{number:03d}",
        number=number,
        state=state,
        epochs=1,
        rungs=[TrialRung(epochs=1, accuracy=accuracy)],
        metrics=TrialMetrics(accuracy=accuracy),
        feasible=True,
    )


def test_the_first_trial_to_finish_a_rung_waits_and_a_new_trial_starts() -> None:
    first = SearchTrial(name="mnist-search-000", number=0, epochs=1, state="Running")
    plan = _plan(_search(status=_table(first)), {"mnist-search-000": _done(0.9)})
    row = plan.status.trials[0]
    assert (row.state, row.rung, row.epochs) == ("Paused", 0, 1)
    assert (
        row.message == "waiting after 1 epochs: goes on once among the best 1/3 of the trials there"
    )
    assert [(rung.epochs, rung.accuracy) for rung in row.rungs] == [(1, 0.9)]
    assert [job_name(created) for created in plan.create] == ["mnist-search-001"]
    assert "1 waiting for their rung" in (plan.status.message or "")


def test_the_third_trial_at_a_rung_lets_the_best_go_on_from_its_checkpoint() -> None:
    third = SearchTrial(name="mnist-search-002", number=2, epochs=1, state="Running")
    table = _table(_at_first_rung(0, 0.80), _at_first_rung(1, 0.95), third)
    plan = _plan(_search(status=table), {"mnist-search-002": _done(0.90)})
    states = [(row.state, row.rung, row.epochs) for row in plan.status.trials]
    assert states == [("Paused", 0, 1), ("Pending", 1, 3), ("Paused", 0, 1)]
    assert plan.status.trials[1].message is None
    assert [job_name(created) for created in plan.create] == ["mnist-search-001-r1"]
    # Recorded, but not created (an operator restart): made again, under the same name, and
    # no waiting trial's job is made.
    again = _plan(_search(status=plan.status), {"mnist-search-002": _done(0.90)})
    assert [job_name(created) for created in again.create] == ["mnist-search-001-r1"]
    assert again.status.trials == plan.status.trials


@pytest.mark.parametrize(
    ("accuracies", "closing", "goes_on"),
    [
        # rung-0 accuracies of waiting trials 0.. -> the trials that may go on, in order
        ([0.90], False, []),  # 1 of eta 3 trials there: none yet
        ([0.90, 0.80], False, []),
        ([0.90, 0.80, 0.95], False, [2]),
        ([0.90, 0.80, 0.95, 0.85, 0.70, 0.99], False, [5, 2]),  # 6 there: the best 2
        ([0.90, 0.90, 0.90], False, [0]),  # a tie: the earlier trial
        ([0.90], True, [0]),  # no trial will start or finish: the best goes on
        ([0.70, 0.90], True, [1]),
    ],
)
def test_a_waiting_trial_goes_on_only_among_the_best_third_of_its_rung(
    accuracies: list[float], closing: bool, goes_on: list[int]
) -> None:
    rows = [_at_first_rung(number, accuracy) for number, accuracy in enumerate(accuracies)]
    found = promotable(_search().spec, rows, closing=closing)
    assert [row.number for row in found] == goes_on


def test_the_highest_rung_goes_first_and_a_trial_gone_on_is_not_counted_twice() -> None:
    gone_on = _at_first_rung(0, 0.99, state="Running").model_copy(update={"rung": 1, "epochs": 3})
    higher = SearchTrial(
        name="mnist-search-004",
        number=4,
        state="Paused",
        rung=1,
        epochs=3,
        rungs=[TrialRung(epochs=1, accuracy=0.97), TrialRung(epochs=3, accuracy=0.98)],
        metrics=TrialMetrics(accuracy=0.98),
        feasible=True,
    )
    rows = [gone_on, _at_first_rung(1, 0.5), _at_first_rung(2, 0.6), _at_first_rung(3, 0.7),
            higher, _at_first_rung(5, 0.96)]  # fmt: skip
    # Rung 0: 6 there, the best 2 are trials 0 (gone on) and 4 (at rung 1): none waits.
    # Rung 1: 1 there; only closing lets trial 4 go on, and before any at rung 0.
    assert promotable(_search().spec, rows) == []
    assert [row.number for row in promotable(_search().spec, rows, closing=True)] == [4]


def test_a_search_that_ends_prunes_the_trials_still_waiting() -> None:
    """Two trials, both at the first rung: the better goes on (closing), the other is pruned
    once the better has finished in full."""
    search = _search({"budget": {"maxTrials": 2, "parallelTrials": 1}})
    last = SearchTrial(name="mnist-search-001", number=1, epochs=1, state="Running")
    plan = _plan(search.model_copy(update={"status": _table(_at_first_rung(0, 0.9), last)}),
                 {"mnist-search-001": _done(0.8)})  # fmt: skip
    assert [row.state for row in plan.status.trials] == ["Pending", "Paused"]
    assert [job_name(row) for row in plan.create] == ["mnist-search-000-r1"]
    observed = {"mnist-search-001": _done(0.8), "mnist-search-000-r1": _done(0.95)}
    plan = _plan(search.model_copy(update={"status": plan.status}), observed)
    observed["mnist-search-000-r2"] = _done(0.99)
    status = _plan(search.model_copy(update={"status": plan.status}), observed).status
    assert [row.state for row in status.trials] == ["Completed", "Pruned"]
    assert status.trials[1].message == (
        "pruned after 1 epochs: not among the best 1/3 of the trials there"
    )
    assert (status.phase, status.best_trial, status.epochs_trained) == (
        "Succeeded",
        "mnist-search-000",
        10,
    )


def _trial_zero_running(rung: int, epochs: int, finished: list[float]) -> SearchTrial:
    """Trial 0, running its rung `rung` (to `epochs`) after finishing the rungs of 1, 3, ...
    epochs at the accuracies `finished`."""
    rungs = [TrialRung(epochs=e, accuracy=a) for e, a in zip([1, 3], finished, strict=False)]
    return SearchTrial(
        name="mnist-search-000", number=0, rung=rung, epochs=epochs, state="Running", rungs=rungs
    )


def test_a_trial_that_finishes_its_last_rung_completes_and_can_be_best() -> None:
    row = _trial_zero_running(rung=2, epochs=9, finished=[0.9, 0.95])
    search = _search({"budget": {"maxTrials": 1, "parallelTrials": 1}}, _table(row))
    plan = _plan(search, {"mnist-search-000-r2": _done(0.98)})
    status = plan.status
    assert (status.trials[0].state, status.phase, status.best_trial) == (
        "Completed",
        "Succeeded",
        "mnist-search-000",
    )
    assert [rung.epochs for rung in status.trials[0].rungs] == [1, 3, 9]
    assert status.results is not None
    assert status.results.model_uri == "pvc://artifacts/mnist-search/mnist-search-000"


def test_a_pruned_trial_is_never_the_best() -> None:
    kept = SearchTrial.model_validate(
        {
            "name": "a",
            "number": 0,
            "state": "Completed",
            "feasible": True,
            "rung": 2,
            "epochs": 9,
            "rungs": [{"epochs": 1}, {"epochs": 3}, {"epochs": 9}],
            "metrics": {"accuracy": 0.9},
        }
    )
    # (A pruned trial's accuracy is after fewer epochs; here made higher on purpose.)
    pruned = SearchTrial.model_validate(
        {
            "name": "b",
            "number": 1,
            "state": "Pruned",
            "feasible": True,
            "epochs": 1,
            "rungs": [{"epochs": 1}],
            "metrics": {"accuracy": 0.99},
        }
    )
    search = _search({"budget": {"maxTrials": 2, "parallelTrials": 1}}, _table(kept, pruned))
    assert _plan(search, {}).status.best_trial == "a"


def test_a_rung_job_renders_with_more_epochs_on_the_full_schedule_and_the_same_output() -> None:
    search = _search()
    row = SearchTrial(name="mnist-search-004", number=4, rung=1, epochs=3, rungs=[{"epochs": 1}])
    first = render_trial(search, row.model_copy(update={"rung": 0, "epochs": 1, "rungs": []}))
    later = render_trial(search, row)
    assert (first["metadata"]["name"], later["metadata"]["name"]) == (
        "mnist-search-004",
        "mnist-search-004-r1",
    )
    assert later["metadata"]["labels"][RUNG_LABEL] == "1"
    assert later["spec"]["hyperparameters"]["epochs"] == 3
    assert later["spec"]["hyperparameters"]["scheduleEpochs"] == 9
    assert first["spec"]["hyperparameters"]["scheduleEpochs"] == 9
    assert later["spec"]["output"] == first["spec"]["output"]


@given(st.integers(min_value=1, max_value=253), st.integers(min_value=1, max_value=15))
def test_every_rung_job_name_is_a_distinct_object_name(length: int, rungs: int) -> None:
    name = "a" * length
    names = set()
    for finished in range(rungs + 1):
        row = SearchTrial(name=name, number=0, rungs=[TrialRung(epochs=1)] * finished)
        job = job_name(row)
        assert len(job) <= 253 and re.fullmatch(OBJECT_NAME_PATTERN, job), job
        names.add(job)
    assert len(names) == rungs + 1


def test_a_trial_over_the_parameter_limit_fails_before_it_trains() -> None:
    """objective.maxParameters goes to each trial's model.maxParameters (the tighter of the
    two when the template sets one), which the runtime checks before the first step."""
    search = _search({"objective": {"maxParameters": 50_000}})
    row = SearchTrial(name="mnist-search-000", number=0, epochs=1)
    assert render_trial(search, row)["spec"]["model"]["maxParameters"] == 50_000
    tighter = _search(
        {
            "objective": {"maxParameters": 50_000},
            "template": {"hyperparameters": {"epochs": 9}, "model": {"maxParameters": 20_000}},
        }
    )
    assert render_trial(tighter, row)["spec"]["model"]["maxParameters"] == 20_000
    assert "maxParameters" not in render_trial(_search(), row)["spec"]["model"]


# --------------------------------------------------------------------------- properties


def _run_to_the_end(search: LeptonSearch, quality: list[float]) -> tuple[SearchStatus, list[str]]:
    """Play the search through, one job finishing at a time (trial n's accuracy at e
    epochs grows with e and keeps the trials' order at every rung)."""
    observed: dict[str, TrialObservation] = {}
    created: list[str] = []
    for _ in range(200):
        plan = _plan(search, observed)
        for row in plan.create:  # what the trials' watch then sees
            created.append(job_name(row))
            observed[job_name(row)] = TrialObservation("Pending")
        search = search.model_copy(update={"status": plan.status})
        running = [row for row in plan.status.trials if row.state in ("Pending", "Running")]
        if not running:
            return plan.status, created
        row = running[0]
        assert row.epochs is not None
        observed[job_name(row)] = _done(quality[row.number] * (0.9 + 0.1 * row.epochs / 9))
    raise AssertionError("the search did not end")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.floats(min_value=0.1, max_value=1.0, allow_nan=False), min_size=1, max_size=12
    ).filter(lambda q: len(set(q)) == len(q)),
    st.integers(min_value=1, max_value=3),
    st.integers(min_value=1, max_value=3),
)
def test_halving_ends_with_the_best_trial_fully_trained_and_epochs_saved(
    quality: list[float], parallel: int, brackets: int
) -> None:
    spec = {
        "algorithm": {"name": "hyperband", "eta": 3, "brackets": brackets},
        "budget": {"maxTrials": len(quality), "parallelTrials": min(parallel, len(quality))},
    }
    status, created = _run_to_the_end(_search(spec), quality)
    rows = status.trials
    assert len(rows) == len(quality) and len(created) == len(set(created))  # none twice
    assert {row.state for row in rows} <= {"Completed", "Pruned"}
    # Every trial trained up the ladder from its bracket's rung, never skipping one.
    ladder = [1, 3, 9]
    for row in rows:
        trained = [rung.epochs for rung in row.rungs]
        start = min(row.number % brackets, 2)
        assert trained == ladder[start : start + len(trained)]
        assert (row.state == "Completed") == (trained[-1] == 9)
    # The best trial is the best at every rung, so it goes on each time and wins.
    best = max(range(len(quality)), key=quality.__getitem__)
    assert status.best_trial == rows[best].name and rows[best].state == "Completed"
    # A trial that goes on resumes: what it spent is its last rung's epochs.
    spent = sum(row.rungs[-1].epochs for row in rows)
    assert spent <= 9 * len(rows)
    if brackets == 1 and parallel == 1 and len(rows) > 1 and quality[1] < quality[0]:
        # Trial 1 finishes its first rung below trial 0, the only other trial there: not the
        # best 1/eta, so it stops, and the epochs it would have trained are saved.
        assert rows[1].state == "Pruned"
        assert spent < 9 * len(rows)


def test_trials_that_each_beat_every_trial_before_them_do_not_all_go_on() -> None:
    """The first trials at a rung wait for eta of them to finish it: trials that arrive in
    rising order are not each trained in full (as they were when the best so far went on at
    once), and 14 epochs are spent instead of 36."""
    quality = [0.25, 0.5, 0.75, 1.0]
    spec = {
        "algorithm": {"name": "hyperband", "eta": 3, "brackets": 1},
        "budget": {"maxTrials": len(quality), "parallelTrials": 1},
    }
    status, _ = _run_to_the_end(_search(spec), quality)
    assert [row.state for row in status.trials] == ["Pruned", "Pruned", "Pruned", "Completed"]
    assert [row.rungs[-1].epochs for row in status.trials] == [1, 1, 3, 9]


# --------------------------------------------------------------------------- the epoch budget


def test_the_epoch_budget_counts_what_trials_train_and_are_training_toward() -> None:
    """Random trials of 3 epochs under maxEpochs 7: two fit, a third would not."""
    spec = {
        "algorithm": {"name": "random"},
        "template": {"hyperparameters": {"epochs": 3}},
        "budget": {"maxTrials": 10, "parallelTrials": 3, "maxEpochs": 7},
    }
    plan = _plan(_search(spec), {})
    assert [row.epochs for row in plan.create] == [3, 3]
    observed = {row.name: _done(0.9) for row in plan.create}
    status = _plan(_search(spec, plan.status), observed).status
    assert (status.phase, len(status.trials), status.epochs_trained) == ("Succeeded", 2, 6)
    assert (status.message or "").startswith("budget.maxEpochs is spent")


def test_a_trial_that_would_go_on_past_the_epoch_budget_stops() -> None:
    """maxEpochs 9: trial 0 at 3 epochs and trial 1 at 1 commit 4; going on to 9 needs 6."""
    search = _search({"budget": {"maxTrials": 2, "parallelTrials": 1, "maxEpochs": 9}})
    row = _trial_zero_running(rung=1, epochs=3, finished=[0.9])
    status = _plan(
        search.model_copy(update={"status": _table(row, _at_first_rung(1, 0.5))}),
        {"mnist-search-000-r1": _done(0.95)},
    ).status
    assert [(row.state, row.message) for row in status.trials] == [
        ("Pruned", "stopped after 3 epochs: budget.maxEpochs is spent"),
        ("Pruned", "pruned after 1 epochs: not among the best 1/3 of the trials there"),
    ]
    assert (status.phase, status.conditions[-1].reason) == ("Failed", "NoTrialTrainedInFull")
    assert "mnist-search-000: stopped after 3 epochs" in (status.message or "")
    assert "raise budget.maxEpochs" in (status.message or "")
