"""Training on real digits: learning, artifacts, checkpoints/resume, DDP, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from lepton_runtime import train
from lepton_runtime.contract import (
    CheckpointSpec,
    DatasetSpec,
    Hyperparameters,
    LeptonNetSpec,
    MLPSpec,
    RuntimeOptions,
    TrainConfig,
    TrainSummary,
)
from lepton_runtime.errors import JobError
from lepton_runtime.export.artifacts import load_float_model, load_scripted, read_card
from lepton_runtime.serve.local import free_port
from lepton_runtime.train.loop import step_seeds
from lepton_runtime.train.measure import latency_ms
from lepton_runtime.train.progress import Progress
from lepton_runtime.train.runner import weights_size

from .conftest import HELPERS, tiny_train_config

pytestmark = pytest.mark.runtime
REPO = Path(__file__).resolve().parents[2]


def _cli(config: dict[str, object], tmp_path: Path, *extra_env: tuple[str, str]) -> tuple[int, str]:
    """Run `python -m lepton_runtime train` and return (exit code, termination message)."""
    path = tmp_path / "config.json"
    termination = tmp_path / "termination"
    config = {**config, "runtime": {"terminationMessagePath": str(termination), "numThreads": 1}}
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(HELPERS), **dict(extra_env)}
    result = subprocess.run(
        [sys.executable, "-m", "lepton_runtime", "train", "--config", str(path)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    return result.returncode, termination.read_text() if termination.exists() else ""


def test_training_learns_real_digits_and_writes_artifacts(
    trained: tuple[str, TrainSummary],
) -> None:
    uri, summary = trained
    assert summary.accuracy > 0.8  # chance is 0.1; the fixture gets ~0.95 in two short epochs
    assert summary.loss_history[-1] < summary.loss_history[0]
    assert summary.epochs == 2 and summary.world_size == 1
    model, card = load_float_model(uri)
    scripted = load_scripted(uri)
    x = torch.rand(4, *card.input_shape)
    assert torch.allclose(model(x), scripted(x), atol=1e-5)
    assert card.metrics["accuracy"] == summary.accuracy
    _assert_measured(summary, uri, model)


def _assert_measured(summary: TrainSummary, uri: str, model: torch.nn.Module) -> None:
    """parameters, size_bytes and latency_ms describe the exported model."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert summary.parameters == trainable > 0
    weights = Path(uri.removeprefix("file://")) / "model.pt"
    assert summary.size_bytes == weights.stat().st_size > 0
    assert summary.latency_ms is not None and 0 < summary.latency_ms < 1000
    on_the_wire = json.loads(summary.to_wire())
    assert {"parameters", "sizeBytes", "latencyMs"} <= on_the_wire.keys()


def test_weights_size_without_a_local_file(trained: tuple[str, TrainSummary]) -> None:
    """A remote output has no file to stat: the same serialization gives the same size."""
    uri, summary = trained
    model, _ = load_float_model(uri)
    assert weights_size("s3://bucket/run", model) == summary.size_bytes


def test_latency_times_batch_one_calls_in_eval_mode() -> None:
    calls: list[tuple[bool, int]] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append((self.training, x.shape[0]))
            return x

    assert latency_ms(Probe().train(), torch.rand(3, 1, 28, 28), runs=7, warmup=2) >= 0
    assert calls == [(False, 1)] * 9
    with pytest.raises(ValueError, match="at least one sample"):
        latency_ms(Probe(), torch.rand(0, 1, 28, 28))


def test_resume_continues_from_the_checkpoint(mnist_uri: str, tmp_path: Path) -> None:
    checkpoint = CheckpointSpec(dir=str(tmp_path / "ckpt"), every_steps=5)
    dataset = DatasetSpec(uri=mnist_uri, train_limit=256, test_limit=100)
    first = train.run(
        tiny_train_config(
            mnist_uri,
            tmp_path,
            model=MLPSpec(hidden_sizes=[32]),
            dataset=dataset,
            checkpoint=checkpoint,
            hyperparameters=Hyperparameters(epochs=1, batch_size=32),
        )
    )
    assert first.last_checkpoint and Path(first.last_checkpoint).exists()
    second = train.run(
        tiny_train_config(
            mnist_uri,
            tmp_path,
            model=MLPSpec(hidden_sizes=[32]),
            dataset=dataset,
            checkpoint=checkpoint,
            hyperparameters=Hyperparameters(epochs=2, batch_size=32),
        )
    )
    assert second.resumed_from_step == first.steps == 8
    assert second.steps == 16 and second.epochs == 2
    assert second.loss_history[0] == first.loss_history[0]


def test_a_model_over_max_parameters_fails_before_training(mnist_uri: str, tmp_path: Path) -> None:
    config = tiny_train_config(mnist_uri, tmp_path, max_parameters=1000)
    with pytest.raises(
        JobError, match=r"has [\d,]+ trainable parameters, over model.maxParameters 1,000"
    ):
        train.run(config)
    assert not (tmp_path / "model").exists()  # nothing trained, nothing written


def test_a_run_continued_on_one_schedule_is_the_run_in_one_go(
    mnist_uri: str, tmp_path: Path
) -> None:
    """What a search's successive halving relies on: epoch 1 of a 2-epoch schedule, resumed
    for epoch 2, trains exactly as one 2-epoch run does: the same losses, bit for bit the same
    weights. LeptonNet's dropout and the augmentation draw random numbers at every step; a
    resumed run that drew them from its seed again would train on other masks (it did)."""
    dataset = DatasetSpec(uri=mnist_uri, train_limit=256, test_limit=100, augment=True)

    def run(name: str, epochs: int, schedule_epochs: int | None) -> TrainSummary:
        return train.run(
            tiny_train_config(
                mnist_uri,
                tmp_path / name,
                model=LeptonNetSpec(width_multiplier=0.25, stages=2, dropout=0.5),
                dataset=dataset,
                checkpoint=CheckpointSpec(dir=str(tmp_path / name / "ckpt"), every_steps=5),
                hyperparameters=Hyperparameters(
                    epochs=epochs, batch_size=32, schedule_epochs=schedule_epochs
                ),
            )
        )

    def weights(name: str) -> dict[str, torch.Tensor]:
        model, _ = load_float_model("file://" + str(tmp_path / name / "model"))
        return model.state_dict()

    whole = run("whole", 2, None)
    run("rungs", 1, 2)
    continued = run("rungs", 2, 2)
    assert continued.resumed_from_step == 8
    assert continued.loss_history == whole.loss_history
    assert continued.accuracy == whole.accuracy
    resumed, in_one_go = weights("rungs"), weights("whole")
    assert resumed.keys() == in_one_go.keys()
    assert all(torch.equal(resumed[key], in_one_go[key]) for key in in_one_go)
    # Without the longer schedule the first epoch decays to zero and the runs differ.
    first_alone = run("alone", 1, None)
    assert first_alone.loss_history[0] != pytest.approx(whole.loss_history[0], rel=1e-5)


def test_every_step_draws_from_its_own_streams() -> None:
    """The seeds of a step depend on (seed, step, rank) only, and differ between the
    augmentation and the modules, between steps, ranks and seeds."""
    assert step_seeds(0, 7, 0) == step_seeds(0, 7, 0)
    seeds = {
        stream
        for key in [(0, 7, 0), (0, 8, 0), (0, 7, 1), (1, 7, 0)]
        for stream in step_seeds(*key)
    }
    assert len(seeds) == 8


def test_killed_worker_resumes_losing_at_most_n_steps(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    config = {
        "model": {"name": "mlp", "hiddenSizes": [64]},
        "dataset": {"uri": "synthetic://mnist?n=40000"},
        "hyperparameters": {"epochs": 1, "batchSize": 16},
        "checkpoint": {"dir": str(ckpt), "everySteps": 20},
        "outputUri": str(tmp_path / "out"),
        "runtime": {"terminationMessagePath": str(tmp_path / "t"), "numThreads": 1},
    }
    (tmp_path / "c.json").write_text(json.dumps(config))
    command = [
        sys.executable,
        "-m",
        "lepton_runtime",
        "train",
        "--config",
        str(tmp_path / "c.json"),
    ]
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (ckpt / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert (ckpt / "checkpoint.pt").exists()
    saved_step = torch.load(ckpt / "checkpoint.pt", weights_only=True)["step"]
    assert saved_step > 0 and saved_step % 20 == 0
    resumed = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = TrainSummary.model_validate_json((tmp_path / "t").read_text())
    assert summary.resumed_from_step is not None and summary.resumed_from_step >= saved_step
    assert summary.steps == 40000 // 16


def test_checkpoint_of_another_model_fails_and_is_kept(mnist_uri: str, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    base = {
        "dataset": {"uri": "synthetic://mnist?n=64"},
        "hyperparameters": {"epochs": 1, "batchSize": 32},
        "checkpoint": {"dir": str(ckpt), "everySteps": 1},
        "outputUri": str(tmp_path / "out"),
    }
    code, _ = _cli({**base, "model": {"name": "mlp", "hiddenSizes": [8]}}, tmp_path)
    assert code == 0
    before = (ckpt / "checkpoint.pt").read_bytes()
    code, message = _cli({**base, "model": {"name": "mlp", "hiddenSizes": [9]}}, tmp_path)
    assert code == 1
    assert "different model" in message and "\n" not in message.strip()
    assert (ckpt / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"model": {"name": "mlp"}, "dataset": {"uri": "file:///nonexistent/mnist"}}, "not found"),
        (
            {"model": {"name": "transformer"}, "dataset": {"uri": "synthetic://mnist"}},
            "invalid config",
        ),
        (
            {
                "model": {"name": "custom", "factory": "helpers_models:diverging"},
                "dataset": {"uri": "synthetic://mnist?n=64"},
            },
            "not finite",
        ),
    ],
    ids=["missing-dataset", "unknown-model", "nan-loss"],
)
def test_bad_input_exits_non_zero_with_one_line(
    config: dict[str, object], fragment: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.json").write_text("good artifact")
    code, message = _cli({**config, "outputUri": str(out)}, tmp_path)
    assert code == 1
    assert fragment in message and len(message.strip().splitlines()) == 1
    assert (out / "model.json").read_text() == "good artifact"  # never replaced by a failed run


def test_progress_is_scrapeable() -> None:
    progress = Progress("train", free_port())
    try:
        progress.step.set(7)
        progress.loss.set(0.25)
        assert progress.port is not None
        body = urllib.request.urlopen(f"http://127.0.0.1:{progress.port}/metrics").read().decode()
    finally:
        progress.close()
    assert "lepton_train_step 7.0" in body and "lepton_train_loss 0.25" in body


def test_ddp_with_torchrun_two_processes(tmp_path: Path) -> None:
    config = TrainConfig(
        model=MLPSpec(hidden_sizes=[32]),
        dataset=DatasetSpec(uri="synthetic://mnist?n=512"),
        hyperparameters=Hyperparameters(epochs=2, batch_size=32, learning_rate=0.01),
        output_uri=str(tmp_path / "out"),
        runtime=RuntimeOptions(termination_message_path=str(tmp_path / "t"), num_threads=1),
    )
    (tmp_path / "c.json").write_text(config.to_wire())
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    result = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "lepton_runtime",
            "train",
            "--config",
            str(tmp_path / "c.json"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = TrainSummary.model_validate_json((tmp_path / "t").read_text())
    assert summary.world_size == 2
    assert summary.steps == 2 * (512 // 2 // 32)  # each rank sees half the data per epoch
    assert summary.accuracy > 0.5
    assert read_card(str(tmp_path / "out")).spec == config.model
    model, _ = load_float_model(str(tmp_path / "out"))
    _assert_measured(summary, str(tmp_path / "out"), model)  # rank 0 measured, all report it


def test_progress_is_live_during_training(tmp_path: Path) -> None:
    port = free_port()
    config = TrainConfig(
        model=MLPSpec(hidden_sizes=[256]),
        dataset=DatasetSpec(uri="synthetic://mnist?n=20000"),
        hyperparameters=Hyperparameters(epochs=1, batch_size=8),
        output_uri=str(tmp_path / "out"),
        runtime=RuntimeOptions(
            termination_message_path=str(tmp_path / "t"), metrics_port=port, num_threads=1
        ),
    )
    runner = threading.Thread(target=train.run, args=(config,))
    runner.start()
    steps_seen = 0.0
    deadline = time.monotonic() + 60
    while runner.is_alive() and time.monotonic() < deadline and steps_seen == 0:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read()
        except OSError:
            time.sleep(0.05)
            continue
        for line in body.decode().splitlines():
            if line.startswith("lepton_train_step "):
                steps_seen = float(line.split()[1])
        time.sleep(0.05)
    runner.join()
    assert 0 < steps_seen < 20000 // 8  # scraped mid-run, not after the last step
