"""Training benchmark: accuracy on the 2,000 held-out real digits, and DDP scaling.

    python -m bench.training

- test_accuracy: LeptonNet (1.0x) trained on the 8,000 training digits with augmentation.
- epoch_seconds_1proc / epoch_seconds_2proc: median epoch time of one process (all cores)
  versus torchrun with two processes (cores split between them), same global batch per step.
"""

from __future__ import annotations

import os
import shutil
import statistics
from typing import Any

from bench.common import cache_dir, mnist_uri, report, run_train_cli

EPOCHS = int(os.environ.get("LEPTON_BENCH_EPOCHS", "15"))
TIMING_EPOCHS = 2


def _config(uri: str, epochs: int, out: str, batch_size: int, augment: bool) -> dict[str, Any]:
    return {
        "model": {"name": "leptonnet"},
        "dataset": {"uri": uri, "augment": augment},
        "hyperparameters": {
            "epochs": epochs,
            "batchSize": batch_size,
            "learningRate": 0.003,
            "weightDecay": 0.01,
            "optimizer": "adamw",
            "seed": 0,
        },
        "outputUri": out,
    }


def main() -> None:
    """Run and report."""
    uri = mnist_uri()
    work = cache_dir() / "training"
    shutil.rmtree(work, ignore_errors=True)
    model_dir = cache_dir() / "leptonnet-mnist"
    accuracy_run = run_train_cli(_config(uri, EPOCHS, str(model_dir), 64, True), work / "accuracy")
    one = run_train_cli(_config(uri, TIMING_EPOCHS, str(work / "m1"), 64, False), work / "one")
    # Two processes with 32 each: the same 64 samples per optimiser step as one process.
    two = run_train_cli(
        _config(uri, TIMING_EPOCHS, str(work / "m2"), 32, False), work / "two", nproc=2
    )
    epoch_1 = statistics.median(one.epoch_seconds)
    epoch_2 = statistics.median(two.epoch_seconds)
    report(
        "training",
        {
            "test_accuracy": accuracy_run.accuracy,
            "test_samples": 2000,
            "train_samples": 8000,
            "epochs": accuracy_run.epochs,
            "accuracy_history": accuracy_run.accuracy_history,
            "loss_history": accuracy_run.loss_history,
            "epoch_seconds_1proc": epoch_1,
            "epoch_seconds_2proc": epoch_2,
            "ddp_speedup_2v1": epoch_1 / epoch_2,
            "samples_per_second_1proc": one.samples_per_second,
            "samples_per_second_2proc": two.samples_per_second,
            "model_uri": str(model_dir),
        },
    )


if __name__ == "__main__":
    main()
