"""`lepton run --fast` of the search pipeline: hyperband trials as local processes, the best
trial compressed and served by the real Triton server, on synthetic digits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lepton_cli.manifests import load_manifests, resolve_pipeline
from lepton_cli.overrides import Overrides, apply_overrides
from lepton_operator.api.search import SearchStatus
from lepton_operator.api.training import TrainingJobSpec
from lepton_operator.builders.runtime_config import StorageLayout, render_train_config
from lepton_operator.builders.search import render_trial
from lepton_operator.search.halving import job_name, last_run
from lepton_runtime.contract import CompressConfig, TrainConfig, TrainSummary, load_config
from tests.cli.conftest import SEARCH_PIPELINE, lepton, processes_mentioning

pytestmark = pytest.mark.runtime
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

Run = tuple[Path, Path, dict[str, Any], str]


@pytest.fixture(scope="module")
def search_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """(output dir, volumes dir, summary.json, stdout) of one fast run."""
    root = tmp_path_factory.mktemp("search-run")
    output, volumes = root / "run", root / "volumes"
    result = lepton(
        "run", "-f", str(SEARCH_PIPELINE), "--fast",
        "--volumes", str(volumes), "--output", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return output, volumes, json.loads((output / "summary.json").read_text()), result.stdout


def _status(summary: dict[str, Any]) -> SearchStatus:
    return SearchStatus.model_validate(summary["search"]["status"])


def _trial_summary(output: Path, job: str) -> TrainSummary:
    text = (output / "jobs" / "trials" / job / "train.termination").read_text()
    return TrainSummary.model_validate_json(text)


def test_the_search_ran_its_budget_and_found_a_best_trial(search_run: Run) -> None:
    _, _, summary, _ = search_run
    status = _status(summary)
    assert status.phase == "Succeeded"
    assert len(status.trials) == 4  # --fast: four trials
    assert {row.state for row in status.trials} <= {"Completed", "Pruned"}
    completed = [row for row in status.trials if row.state == "Completed" and row.feasible]
    best = max(completed, key=lambda row: (row.metrics.accuracy or 0.0) if row.metrics else 0.0)
    assert status.best_trial == best.name
    assert summary["training"]["name"] == job_name(last_run(best))


def test_a_trial_that_went_on_resumed_from_its_checkpoint(search_run: Run) -> None:
    """The first trial at a rung always goes on; its second job continues the first's run."""
    output, _, summary, _ = search_run
    first = _status(summary).trials[0]
    assert [rung.epochs for rung in first.rungs] == [1, 2]
    one, two = _trial_summary(output, first.name), _trial_summary(output, f"{first.name}-r1")
    assert two.resumed_from_step == one.steps > 0
    assert two.epochs == 2 and two.loss_history[0] == one.loss_history[0]


def test_each_trial_ran_the_contract_the_operator_renders(search_run: Run) -> None:
    output, volumes, summary, _ = search_run
    manifests = apply_overrides(load_manifests([SEARCH_PIPELINE]), Overrides(fast=True))
    search = resolve_pipeline(manifests).search
    assert search is not None
    layout = StorageLayout(str(volumes.resolve()))
    for row in _status(summary).trials:
        ran = last_run(row)
        job = render_trial(search, ran)
        workdir = output.resolve() / "jobs" / "trials" / job_name(ran)
        config = load_config(workdir / "train.json", "train")
        assert isinstance(config, TrainConfig)
        expected = render_train_config(
            TrainingJobSpec.model_validate(job["spec"]), layout, config.runtime
        )
        assert config == expected


def test_the_best_trial_was_compressed_and_served(search_run: Run) -> None:
    output, _, summary, stdout = search_run
    best = _status(summary).best_trial
    assert best is not None
    compress = load_config(output / "jobs" / "compress.json", "compress")
    assert isinstance(compress, CompressConfig)
    assert compress.source_model_uri.rstrip("/").endswith(f"/{best}")
    assert summary["serving"]["result"]["accuracy"] > 0.5
    assert "accuracy through Triton" in stdout


def test_the_pareto_plot_and_the_plain_trial_lines(search_run: Run) -> None:
    output, _, _, stdout = search_run
    assert (output / "search-pareto.png").read_bytes().startswith(PNG_MAGIC)
    assert "search mnist-search-pipeline: trial 0 Running (1 epochs)" in stdout
    assert "search mnist-search-pipeline: trial 0 Completed" in stdout
    assert "\r" not in stdout  # stdout is no terminal here: lines, no table redrawn in place
    assert not processes_mentioning(str(output))
