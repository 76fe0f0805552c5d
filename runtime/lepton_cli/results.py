"""The record of one `lepton run`: what `summary.json` holds and what the report and plots show."""

from __future__ import annotations

from pydantic import Field, computed_field

from lepton_cli.inference import CamelModel, ServingResult
from lepton_operator.api.search import SearchStatus
from lepton_runtime.contract import CompressSummary, TrainSummary, TuningResult


class LossSample(CamelModel):
    """The training loss of one step, as the runtime's metrics reported it while training."""

    step: int
    loss: float


class TrainingOutcome(CamelModel):
    """The runtime's own summary plus what only the local run observed."""

    name: str
    """metadata.name of the LeptonTrainingJob."""
    workers: int
    """Local worker processes torchrun started."""
    steps_per_epoch: int
    """Optimiser steps per epoch per worker (x axis of the loss plot)."""
    summary: TrainSummary
    """What the runtime reported (as status.results would show it)."""
    loss_samples: list[LossSample] = Field(default_factory=list)
    """Per-step losses sampled from the metrics endpoint while training ran."""


class SearchOutcome(CamelModel):
    """The search's final status, as the operator would have written it."""

    name: str
    """metadata.name of the LeptonSearch."""
    status: SearchStatus
    """Phase, trial table, best trial, Pareto front, results."""
    parameters_front: list[str] = Field(default_factory=list)
    """Trials that no other feasible trial beats on both accuracy and parameters (the plot's
    front)."""


class CompressionOutcome(CamelModel):
    """The compression's summary."""

    name: str
    """metadata.name of the LeptonCompression."""
    summary: CompressSummary

    @computed_field  # type: ignore[prop-decorator]
    @property
    def size_ratio(self) -> float:
        """How many times smaller the served artifact is than the trained one."""
        return self.summary.size_bytes_before / max(self.summary.size_bytes_after, 1)


class ServingOutcome(CamelModel):
    """The endpoint, as served by the local Triton, and how it answered."""

    name: str
    """metadata.name of the LeptonEndpoint."""
    model_name: str
    """Name of the model in Triton."""
    backend_requested: str
    """spec.triton.backend."""
    backend_served: str
    """The backend the local Triton ran (it ships only the python backend)."""
    result: ServingResult
    tuning: TuningResult | None = None
    """What the package step measured and chose (spec.tuning)."""


class RunSummary(CamelModel):
    """Everything `lepton run` learned; written as summary.json."""

    manifests: list[str]
    output_dir: str
    volumes_dir: str
    overrides: list[str]
    """Command-line changes to the manifests (empty for the manifests as written)."""
    training: TrainingOutcome | None = None
    """The training job, or a search's best trial's; None when a search found none."""
    search: SearchOutcome | None = None
    compression: CompressionOutcome | None = None
    serving: ServingOutcome | None = None
    step_seconds: dict[str, float] = Field(default_factory=dict)
    """Wall time of each step."""
    total_seconds: float = 0.0
    plots: list[str] = Field(default_factory=list)
    """PNG files written next to summary.json."""
