"""LeptonSearch: its space, the sampler behind it, its trial table, and the trials it renders."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lepton_operator.api.base import OBJECT_NAME_PATTERN
from lepton_operator.api.search import LeptonSearch, SearchSpec, SearchTrial, TrialMetrics
from lepton_operator.api.training import TrainingJobSpec, TrainingResults
from lepton_operator.builders.search import render_trial, trial_name
from lepton_operator.search import sampler
from lepton_operator.search.plan import TrialObservation, plan_search
from lepton_operator.search.space import (
    Params,
    format_value,
    grid_point,
    grid_size,
    parse_params,
    space_problem,
    trial_spec,
)
from tests.factories import make_search
from tests.golden import assert_matches_golden

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _search(spec: dict[str, Any] | None = None, **status: Any) -> LeptonSearch:
    manifest = make_search(spec=spec)
    if status:
        manifest["status"] = status
    return LeptonSearch.model_validate(manifest)


def _completed(number: int, accuracy: float, **metrics: Any) -> SearchTrial:
    return SearchTrial(
        name=f"s-{number:03d}",
        number=number,
        params={"model.parameters.widthMultiplier": "0.5"},
        state="Completed",
        metrics=TrialMetrics(accuracy=accuracy, **metrics),
        feasible=True,
    )


# --------------------------------------------------------------------------- space


@given(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False))
def test_a_float_reads_back_exactly_from_status(value: float) -> None:
    space = _search().spec.space
    text = format_value(value)
    assert parse_params(space, {"hyperparameters.learningRate": text}) == {
        "hyperparameters.learningRate": value
    }


def test_the_grid_is_every_combination_once_last_parameter_fastest() -> None:
    spec = _search(
        {
            "algorithm": {"name": "grid"},
            "space": [
                {"name": "model.parameters.stages", "type": "int", "min": 1, "max": 3},
                {"name": "model.parameters.kernelSize", "type": "categorical", "values": [3, 5]},
                {
                    "name": "hyperparameters.learningRate",
                    "type": "float",
                    "min": 0.001,
                    "max": 0.003,
                    "step": 0.001,
                },
            ],
        }
    ).spec
    assert grid_size(spec.space) == 3 * 2 * 3
    points = [grid_point(spec.space, index) for index in range(grid_size(spec.space))]
    assert len({tuple(point.values()) for point in points}) == 18
    assert points[0] == {
        "model.parameters.stages": 1,
        "model.parameters.kernelSize": 3,
        "hyperparameters.learningRate": 0.001,
    }
    assert points[1]["hyperparameters.learningRate"] == 0.002
    assert points[-1] == {
        "model.parameters.stages": 3,
        "model.parameters.kernelSize": 5,
        "hyperparameters.learningRate": 0.003,
    }
    assert sampler.propose(spec, [], 18) is None  # nothing left


def test_a_trial_spec_sets_each_searched_field_and_caps_epochs() -> None:
    search = _search({"budget": {"maxEpochsPerTrial": 2}})
    params: Params = {"model.parameters.activation": "gelu", "hyperparameters.learningRate": 0.003}
    trial = trial_spec(search.spec.template, params, search.spec.budget)
    assert isinstance(trial, TrainingJobSpec)
    assert trial.model.parameters.activation == "gelu"
    assert trial.hyperparameters.learning_rate == 0.003
    assert trial.hyperparameters.epochs == 2  # the template asked for 3


@pytest.mark.parametrize(
    ("parameter", "names"),
    [
        (
            {"name": "model.parameters.activation", "type": "categorical", "values": ["tanh"]},
            "spec.space[0] (model.parameters.activation, categorical): 'tanh'",
        ),
        (
            {"name": "model.parameters.stages", "type": "float", "min": 1, "max": 4},
            "spec.space[0] (model.parameters.stages, float)",
        ),
        (
            {"name": "hyperparameters.optimizer", "type": "int", "min": 1, "max": 2},
            "spec.space[0] (hyperparameters.optimizer, int)",
        ),
        (
            {"name": "model.parameters.stages", "type": "int", "min": 1, "max": 6},
            "spec.space[0] (model.parameters.stages, int): 6",
        ),
    ],
)
def test_a_domain_the_training_spec_refuses_is_named_with_the_fix(
    parameter: dict[str, Any], names: str
) -> None:
    problem = space_problem(_search({"space": [parameter]}).spec)
    assert problem is not None
    assert problem.startswith(names), problem
    assert problem.endswith("change the domain")


def test_a_valid_space_has_no_problem() -> None:
    assert space_problem(_search().spec) is None


# --------------------------------------------------------------------------- sampler


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=0, max_value=2**31 - 1), st.sampled_from(["random", "tpe"]))
def test_a_proposal_is_reproducible_and_inside_the_space(seed: int, algorithm: str) -> None:
    spec = _search({"algorithm": {"name": algorithm, "seed": seed}}).spec
    table = [_completed(0, 0.97), _completed(1, 0.98)]
    first = sampler.propose(spec, table, 2)
    assert first == sampler.propose(spec, table, 2)
    assert first is not None
    assert 0.25 <= float(first["model.parameters.widthMultiplier"]) <= 1.0
    assert first["model.parameters.activation"] in ("relu", "gelu")
    assert 1e-4 <= float(first["hyperparameters.learningRate"]) <= 1e-2


def test_each_trial_number_gets_its_own_proposal() -> None:
    spec = _search({"algorithm": {"name": "random"}}).spec
    proposals = [sampler.propose(spec, [], number) for number in range(5)]
    widths = {p["model.parameters.widthMultiplier"] for p in proposals if p is not None}
    assert len(widths) == 5


def test_tpe_replays_failed_and_running_trials() -> None:
    spec = _search({"algorithm": {"name": "tpe"}}).spec
    table = [
        _completed(0, 0.97),
        SearchTrial(name="s-001", number=1, params=_completed(0, 0).params, state="Failed"),
        SearchTrial(name="s-002", number=2, params=_completed(0, 0).params, state="Running"),
    ]
    study = sampler.replay(spec, table)
    # A failed trial is the worst outcome, not left out (TPE ignores FAIL trials).
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "PRUNED", "RUNNING"]
    assert sampler.propose(spec, table, 3) is not None


@pytest.mark.parametrize("objective", [{}, {"maxParameters": 100_000}])
def test_tpe_stops_proposing_the_region_where_trials_fail(objective: dict[str, Any]) -> None:
    """Every gelu trial failed (over a limit, say), every relu one completed. Told FAIL, the
    failures were invisible to TPE and it proposed gelu 20 times out of 20; told as the worst
    outcome, it proposes relu."""
    spec = _search({"algorithm": {"name": "tpe"}, "objective": objective}).spec
    table: list[SearchTrial] = []
    for number in range(20):
        params = {
            "model.parameters.widthMultiplier": str(0.25 + 0.03 * number),
            "model.parameters.activation": "gelu" if number % 2 else "relu",
            "hyperparameters.learningRate": str(1e-3 * (1 + number % 5)),
        }
        if number % 2:
            table.append(
                SearchTrial(name=f"s-{number:03d}", number=number, params=params, state="Failed")
            )
        else:
            completed = _completed(number, 0.9 + 0.004 * number, parameters=50_000)
            table.append(completed.model_copy(update={"params": params}))
    proposals = [sampler.propose(spec, table, number) for number in range(20, 40)]
    gelu = [p for p in proposals if p is not None and p["model.parameters.activation"] == "gelu"]
    assert len(gelu) <= 4, f"{len(gelu)} of 20 proposals in the failing region"


def test_tpe_proposes_the_combinations_the_best_trials_had() -> None:
    """Wide gelu and narrow relu networks are good, the other two combinations bad, and each
    value alone is as good as its alternative. One density per parameter cannot tell: 34 of
    60 proposals (three seeds) fell in a bad combination. The multivariate one, 4 of 60."""
    table: list[SearchTrial] = []
    for number in range(20):
        wide, gelu = number % 2 == 0, (number // 2) % 2 == 0
        params = {
            "model.parameters.widthMultiplier": "1.0" if wide else "0.25",
            "model.parameters.activation": "gelu" if gelu else "relu",
            "hyperparameters.learningRate": "0.003",
        }
        completed = _completed(number, 0.98 if wide == gelu else 0.90)
        table.append(completed.model_copy(update={"params": params}))
    specs = [_search({"algorithm": {"name": "tpe", "seed": seed}}).spec for seed in range(3)]
    proposals = [sampler.propose(spec, table, number) for spec in specs for number in range(20, 40)]
    bad = [
        p
        for p in proposals
        if p is not None
        and (float(p["model.parameters.widthMultiplier"]) > 0.625)
        != (p["model.parameters.activation"] == "gelu")
    ]
    assert len(bad) <= 15, f"{len(bad)} of 60 proposals in a bad combination"


def test_the_pareto_front_is_the_feasible_trials_nothing_beats() -> None:
    spec = _search({"objective": {"minimize": ["latencyMs"]}}).spec
    table = [
        _completed(0, 0.99, latency_ms=2.0),  # most accurate
        _completed(1, 0.97, latency_ms=0.5),  # fastest
        _completed(2, 0.96, latency_ms=1.0),  # beaten by 1 on both
        _completed(3, 0.995, latency_ms=0.1).model_copy(update={"feasible": False}),
    ]
    assert sampler.pareto_front(spec, table) == ["s-000", "s-001"]


# --------------------------------------------------------------------------- plan


def _plan(search: LeptonSearch, observed: dict[str, TrialObservation] | None = None) -> Any:
    return plan_search(
        search,
        observed or {},
        propose=lambda rows, number: {
            "model.parameters.widthMultiplier": 0.25 + number / 100,
            "hyperparameters.learningRate": 0.001,
        },
        front=lambda rows: [],
        now=NOW,
    )


def _rows(plan: Any) -> list[dict[str, Any]]:
    return [row.to_wire() for row in plan.status.trials]


def test_a_new_search_records_then_creates_as_many_trials_as_may_run() -> None:
    plan = _plan(_search())
    assert [row.name for row in plan.create] == ["mnist-search-000", "mnist-search-001"]
    assert [row["state"] for row in _rows(plan)] == ["Pending", "Pending"]
    assert plan.status.trials[1].params["model.parameters.widthMultiplier"] == "0.26"
    assert plan.status.phase == "Running"


def _status_with(*rows: SearchTrial) -> dict[str, Any]:
    return {"phase": "Running", "trials": [row.to_wire() for row in rows]}


PENDING = [
    SearchTrial(name=f"mnist-search-00{n}", number=n, params={}, state="Pending") for n in (0, 1)
]


@pytest.mark.parametrize(
    ("phases", "created", "phase"),
    [
        # (what the two trials' jobs say, trials created now, the search's phase)
        ({}, ["mnist-search-000", "mnist-search-001"], "Running"),  # a restart: made again
        ({"mnist-search-000": "Running", "mnist-search-001": "Queued"}, [], "Running"),
        (
            {"mnist-search-000": "Succeeded", "mnist-search-001": "Running"},
            ["mnist-search-002"],
            "Running",
        ),
        (
            {"mnist-search-000": "Failed", "mnist-search-001": "Failed"},
            ["mnist-search-002", "mnist-search-003"],
            "Running",
        ),
    ],
)
def test_trials_follow_their_training_jobs(
    phases: dict[str, str], created: list[str], phase: str
) -> None:
    search = _search(**_status_with(*PENDING))
    results = TrainingResults(accuracy=0.98, parameters=1000)
    observed = {
        name: TrialObservation(seen, results=results if seen == "Succeeded" else None)
        for name, seen in phases.items()
    }
    plan = _plan(search, observed)
    assert [row.name for row in plan.create] == created
    assert plan.status.phase == phase
    assert len(plan.status.trials) == 2 + sum(name.endswith(("2", "3")) for name in created)


def test_the_search_succeeds_with_its_best_trial_once_every_trial_finished() -> None:
    rows = [_completed(n, accuracy) for n, accuracy in enumerate((0.97, 0.99, 0.98, 0.99))]
    plan = _plan(_search(**_status_with(*rows)))
    assert plan.create == []
    status = plan.status
    assert (status.phase, status.best_trial, status.completed_trials) == ("Succeeded", "s-001", 4)
    assert status.results is not None
    assert status.results.model_uri == "pvc://artifacts/mnist-search/s-001"
    assert status.completion_time == NOW


def test_every_trial_failing_fails_the_search_with_the_first_reason() -> None:
    rows = [
        SearchTrial(name=f"s-{n}", number=n, state="Failed", message=f"worker {n} crashed")
        for n in range(4)
    ]
    status = _plan(_search(**_status_with(*rows))).status
    assert status.phase == "Failed"
    assert "s-0: worker 0 crashed" in (status.message or "")
    assert status.conditions[-1].reason == "AllTrialsFailed"


def test_a_trial_over_a_limit_is_infeasible_and_no_feasible_trial_fails_the_search() -> None:
    spec = {"objective": {"maxParameters": 500}, "budget": {"maxTrials": 2, "parallelTrials": 2}}
    big = TrainingResults(accuracy=0.99, parameters=1000)
    observed = {row.name: TrialObservation("Succeeded", results=big) for row in PENDING}
    status = _plan(_search(spec, **_status_with(*PENDING)), observed).status
    first = status.trials[0]
    assert (first.state, first.feasible) == ("Completed", False)
    assert first.message == "objective.maxParameters is 500, the trial measured 1000"
    assert (status.phase, status.best_trial) == ("Failed", None)
    assert "no trial met the objective's limits" in (status.message or "")


def test_the_gpu_hour_budget_stops_new_trials() -> None:
    started = NOW - timedelta(hours=2)
    search = _search({"budget": {"maxGpuHours": 1.5}}, **_status_with(*PENDING))
    observed = {
        PENDING[0].name: TrialObservation(
            "Succeeded",
            results=TrainingResults(accuracy=0.97),
            start_time=started,
            completion_time=NOW,
        ),
        PENDING[1].name: TrialObservation("Running", start_time=NOW - timedelta(minutes=1)),
    }
    plan = _plan(search, observed)
    assert plan.create == []
    assert plan.status.gpu_hours == pytest.approx(2 + 1 / 60, rel=1e-4)
    done = {**observed, PENDING[1].name: TrialObservation("Failed", message="oom")}
    status = _plan(
        _search({"budget": {"maxGpuHours": 1.5}}, **_status_with(*plan.status.trials)), done
    ).status
    assert status.phase == "Succeeded"
    assert "GPU-hour budget is spent" in (status.message or "")


# --------------------------------------------------------------------------- trials


def test_a_trial_renders_as_a_training_job_owned_by_its_search() -> None:
    search = _search()
    row = SearchTrial(
        name="mnist-search-000",
        number=0,
        params={
            "model.parameters.widthMultiplier": "0.5",
            "model.parameters.activation": "gelu",
            "hyperparameters.learningRate": "0.003",
        },
    )
    assert_matches_golden("search-trial", [render_trial(search, row)])


@given(st.from_regex(OBJECT_NAME_PATTERN, fullmatch=True).filter(lambda n: len(n) <= 253))
def test_every_trial_name_is_a_valid_object_name(name: str) -> None:
    for number in (0, 7, 199):
        trial = trial_name(name, number)
        assert len(trial) <= 253
        assert re.fullmatch(OBJECT_NAME_PATTERN, trial), trial
    assert trial_name(name, 1) != trial_name(name, 2)


def test_a_spec_without_a_leptonnet_search_is_accepted_by_the_model() -> None:
    spec = SearchSpec.model_validate(make_search()["spec"])
    assert spec.budget.parallel_trials == 2
