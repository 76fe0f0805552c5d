"""Training: `run(TrainConfig) -> TrainSummary`, the same code under `python -m` and torchrun."""

from lepton_runtime.train.runner import run

__all__ = ["run"]
