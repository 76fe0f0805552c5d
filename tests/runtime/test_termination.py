"""The termination message stays parseable under Kubernetes' 4 KiB limit."""

from __future__ import annotations

import json
from pathlib import Path

from lepton_runtime.contract import (
    PackageSummary,
    TrainSummary,
    TritonSettings,
    TuningMeasurement,
    TuningResult,
)
from lepton_runtime.termination import MAX_BYTES, summary_json, write_termination_message


def test_long_histories_are_trimmed_first() -> None:
    summary = TrainSummary(
        accuracy=0.99,
        loss=0.01,
        epochs=500,
        steps=10,
        samples_per_second=1.0,
        world_size=1,
        model_uri="/m",
        loss_history=[0.123456789] * 500,
        epoch_seconds=[1.23456789] * 500,
    )
    text = summary_json(summary)
    assert len(text.encode()) <= MAX_BYTES
    data = json.loads(text)
    assert data["accuracy"] == 0.99 and "epochSeconds" not in data


def test_a_long_tuning_table_keeps_its_choice_and_first_candidates() -> None:
    measured = [
        TuningMeasurement(
            settings=TritonSettings(max_batch_size=b, max_queue_delay_microseconds=d, instances=1),
            throughput=1000.0 + b,
            p50_ms=1.0,
            p99_ms=2.0,
            within_budget=True,
        )
        for b in range(1, 13)
        for d in (0, 100, 500, 2000, 5000)
    ]
    result = TuningResult(
        chosen=measured[-1], candidates=measured, latency_budget_ms=5, budget_met=True,
        best_p99_ms=2.0, seconds=90.0, grid_size=60, strategy="grid",
    )  # fmt: skip
    summary = PackageSummary(
        repository="/models", model_name="m", version=1, backend="python",
        config_path="/models/m/config.pbtxt", tuning=result,
    )  # fmt: skip
    text = summary_json(summary)
    assert len(text.encode()) <= MAX_BYTES
    parsed = PackageSummary.model_validate_json(text)
    assert parsed.tuning is not None and parsed.tuning.chosen == measured[-1]
    kept = parsed.tuning.candidates
    assert 10 < len(kept) < len(measured) and kept == measured[: len(kept)]


def test_unwritable_path_does_not_fail(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    write_termination_message(str(blocker / "sub" / "termination"), "reason")


def test_a_message_replaces_the_last_one_whole_never_in_place(tmp_path: Path) -> None:
    # `lepton run` gives every torchrun rank the same path, and their summaries differ in
    # length: written in place, a shorter one over a longer one leaves the longer one's tail.
    path = tmp_path / "termination.json"
    longer = json.dumps({"rank": 1, "pad": "x" * 100})
    write_termination_message(str(path), longer)
    with path.open() as reader:  # a reader of the last message, mid-way
        write_termination_message(str(path), json.dumps({"rank": 0}))
        assert reader.read() == longer  # it still holds the whole of the last one
    assert json.loads(path.read_text()) == {"rank": 0}
    assert [p.name for p in tmp_path.iterdir()] == ["termination.json"]  # no scratch left
