"""LeptonSearch: architecture and hyperparameter search, one LeptonTrainingJob per trial."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, WithJsonSchema

from lepton_operator.api.base import (
    NAME_MAX,
    TEXT_MAX,
    URI_MAX,
    Condition,
    LeptonModel,
    ObjectMeta,
)
from lepton_operator.api.training import DEFAULT_EPOCHS, TrainingJobSpec

# What a trial may vary: fields of the training spec, spelled as their path in it. Fields of
# model.parameters shape the built-in leptonnet only.
SearchableField = Literal[
    "model.parameters.widthMultiplier",
    "model.parameters.depthMultiplier",
    "model.parameters.stages",
    "model.parameters.blocksPerStage",
    "model.parameters.kernelSize",
    "model.parameters.activation",
    "model.parameters.normalization",
    "model.parameters.convolution",
    "model.parameters.dropout",
    "hyperparameters.learningRate",
    "hyperparameters.batchSize",
    "hyperparameters.optimizer",
    "hyperparameters.weightDecay",
]
ARCHITECTURE_PREFIX = "model.parameters."
DomainType = Literal["categorical", "int", "float"]
# A categorical choice: a word (relu, adamw) or a whole number (a kernel size); YAML's
# `values: [3, 5, 7]` and `values: [relu, gelu]` both fit.
Choice = Annotated[
    int | str,
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]
SEARCH_TRIALS_MAX = 200
SPACE_MAX = 16
Metric = Literal["parameters", "latencyMs", "sizeBytes"]
Algorithm = Literal["random", "grid", "tpe", "hyperband"]
HyperbandSampler = Literal["random", "tpe"]
SearchPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
TrialState = Literal["Pending", "Running", "Paused", "Completed", "Pruned", "Failed"]


class SearchParameter(LeptonModel):
    """One dimension of the search space: a field of the training spec and its domain."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type != 'categorical' || (has(self.values) && "
                    "size(self.values) > 0 && !has(self.min) && !has(self.max) && "
                    "!has(self.step) && !self.log)",
                    "message": "a categorical parameter lists its values (at least one) and "
                    "sets none of min, max, step and log",
                },
                {
                    "rule": "self.type == 'categorical' || (has(self.min) && has(self.max) && "
                    "self.min <= self.max && !has(self.values))",
                    "message": "an int or float parameter sets min and max (min <= max) and no "
                    "values",
                },
                {
                    "rule": "!self.log || (has(self.min) && self.min > 0.0)",
                    "message": "log: true samples on a log scale, which needs min > 0",
                },
                {
                    "rule": "!self.log || !has(self.step)",
                    "message": "step and log exclude each other: a log scale has no fixed step",
                },
                {
                    "rule": "self.type != 'int' || "
                    "(double(self.min) == double(int(self.min)) && "
                    "double(self.max) == double(int(self.max)) && (!has(self.step) || "
                    "double(self.step) == double(int(self.step))))",
                    "message": "an int parameter has whole-number min, max and step",
                },
            ]
        }
    )

    name: SearchableField
    """The training spec field that this parameter sets in every trial, e.g.
    hyperparameters.learningRate or model.parameters.widthMultiplier."""
    type: DomainType
    """categorical (one of `values`), int or float (between `min` and `max`)."""
    values: list[Choice] | None = Field(default=None, max_length=64)
    """categorical: the choices, e.g. [relu, gelu] or [3, 5, 7]."""
    min: float | None = None
    """int and float: the smallest value (inclusive)."""
    max: float | None = None
    """int and float: the largest value (inclusive)."""
    step: float | None = Field(default=None, gt=0)
    """int and float: sample on this grid from min (float needs one for algorithm grid; int
    defaults to 1)."""
    log: bool = False
    """int and float: sample on a log scale (needs min > 0), as for a learning rate."""


class TrialMetrics(LeptonModel):
    """What a completed trial measured (its training job's status.results)."""

    accuracy: float | None = Field(default=None, ge=0, le=1)
    """Accuracy on the held-out test split."""
    parameters: int | None = Field(default=None, ge=0)
    """Trainable parameters of the trial's model."""
    latency_ms: float | None = Field(default=None, ge=0)
    """Median batch-1 inference latency on the evaluation data, in milliseconds."""
    size_bytes: int | None = Field(default=None, ge=0)
    """Size of the exported weights, in bytes."""

    def of(self, metric: Metric) -> float | None:
        """The measurement that objective.minimize names `metric`."""
        value = {
            "parameters": self.parameters,
            "latencyMs": self.latency_ms,
            "sizeBytes": self.size_bytes,
        }[metric]
        return None if value is None else float(value)


class SearchObjective(LeptonModel):
    """What makes one trial better than another."""

    metric: Literal["accuracy"] = "accuracy"
    """Maximised: accuracy on the held-out test split."""
    minimize: list[Metric] = Field(
        default_factory=list, max_length=3, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Further objectives, each minimised: with any, the search keeps a Pareto front of
    accuracy against them (e.g. [latencyMs])."""
    max_parameters: int | None = Field(default=None, ge=1)
    """A trial whose model has more trainable parameters is infeasible."""
    max_latency_ms: float | None = Field(default=None, gt=0)
    """A trial whose batch-1 latency (measured by the runtime on the evaluation data) is higher
    is infeasible."""
    max_size_bytes: int | None = Field(default=None, ge=1)
    """A trial whose exported weights are larger is infeasible."""

    def limits(self, metrics: TrialMetrics | None) -> list[tuple[str, float, float | None]]:
        """(field, limit, what the trial measured or None) for every limit that is set."""
        found = metrics or TrialMetrics()
        return [
            (field, limit, measured)
            for field, limit, measured in (
                ("maxParameters", self.max_parameters, found.parameters),
                ("maxLatencyMs", self.max_latency_ms, found.latency_ms),
                ("maxSizeBytes", self.max_size_bytes, found.size_bytes),
            )
            if limit is not None
        ]


class SearchAlgorithm(LeptonModel):
    """How the next trial's parameters are chosen (Optuna's samplers, ask-and-tell), and for
    hyperband how long each trial trains."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.sampler) || self.name == 'hyperband'",
                    "message": "algorithm.sampler chooses hyperband's trials: remove it, or set "
                    "algorithm.name: hyperband",
                }
            ]
        }
    )

    name: Algorithm = "tpe"
    """random; grid (every combination, in the order of spec.space, the last fastest); tpe
    (multivariate tree-structured Parzen estimator: one density over all the parameters,
    multi-objective when objective.minimize is set);
    hyperband (trials drawn by `sampler` under asynchronous successive halving: every trial trains
    minEpochs, and only the best 1/eta of those at a rung go on, from their checkpoints, to
    eta times the epochs, up to the trial's full epochs)."""
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    """The same seed, space and results give the same trials (random and hyperband with the
    random sampler propose the same trials for the same seed)."""
    eta: int = Field(default=3, ge=2, le=8)
    """hyperband: each rung trains eta times the epochs of the one below, and a trial goes on
    only when it is among the best 1/eta of the trials that finished its rung."""
    min_epochs: int = Field(default=1, ge=1, le=10_000)
    """hyperband: the epochs of the first rung."""
    brackets: int = Field(default=1, ge=1, le=8)
    """hyperband: 1 is successive halving; with more, trial n starts at rung n mod brackets
    (Hyperband's brackets), so some trials skip the shortest rungs."""
    sampler: HyperbandSampler | None = None
    """hyperband: how its trials are drawn. random (the default: the same trials as random
    search with the same seed) or tpe (model-based, as in BOHB: TPE learns from every finished
    rung, the pruned trials' accuracies at their last rung too, and proposes more trials like
    the best ones)."""


class SearchBudget(LeptonModel):
    """How much the search may spend."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.parallelTrials <= self.maxTrials",
                    "message": "budget.parallelTrials must be at most budget.maxTrials",
                }
            ]
        }
    )

    max_trials: int = Field(default=20, ge=1, le=SEARCH_TRIALS_MAX)
    """Trials in all."""
    parallel_trials: int = Field(default=2, ge=1, le=64)
    """Trials running (or waiting for admission) at once."""
    max_epochs_per_trial: int | None = Field(default=None, ge=1, le=10_000)
    """Caps template.hyperparameters.epochs for every trial."""
    max_gpu_hours: float | None = Field(default=None, gt=0)
    """No trial starts once the finished and running trials have held this many GPU-hours."""
    max_epochs: int | None = Field(default=None, ge=1, le=1_000_000)
    """Epochs of all trials together (what they trained and are training toward): no trial
    starts, and no hyperband trial goes on to a rung, past it. Unlike GPU-hours, the same on
    any machine."""


_TEMPLATE_EPOCHS_CEL = (
    "(has(self.template.hyperparameters) && has(self.template.hyperparameters.epochs) ? "
    f"self.template.hyperparameters.epochs : {DEFAULT_EPOCHS})"
)
# A trial's epochs: the template's, capped by budget.maxEpochsPerTrial (CEL has no min()).
_TRIAL_EPOCHS_CEL = (
    "(has(self.budget.maxEpochsPerTrial) && "
    f"self.budget.maxEpochsPerTrial < {_TEMPLATE_EPOCHS_CEL} ? "
    f"self.budget.maxEpochsPerTrial : {_TEMPLATE_EPOCHS_CEL})"
)


class SearchSpec(LeptonModel):
    """Desired state of a LeptonSearch."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.space.all(p, !p.name.startsWith('model.parameters.')) || "
                    "(has(self.template.model.name) && self.template.model.name == 'leptonnet')",
                    "message": "model.parameters.* shape the built-in leptonnet: set "
                    "template.model.name to leptonnet or search other fields",
                },
                {
                    "rule": "self.algorithm.name != 'grid' || "
                    "self.space.all(p, p.type != 'float' || has(p.step))",
                    "message": "algorithm grid needs a step for every float parameter",
                },
                {
                    "rule": "!has(self.budget.maxEpochs) || "
                    f"self.budget.maxEpochs >= {_TRIAL_EPOCHS_CEL}",
                    "message": "budget.maxEpochs must leave one trial its epochs "
                    "(template.hyperparameters.epochs, capped by budget.maxEpochsPerTrial)",
                },
                {
                    "rule": "self.algorithm.name != 'hyperband' || "
                    f"self.algorithm.minEpochs < {_TRIAL_EPOCHS_CEL}",
                    "message": "algorithm hyperband: algorithm.minEpochs must be less than the "
                    "trials' epochs (template.hyperparameters.epochs, capped by "
                    "budget.maxEpochsPerTrial), or no trial has a rung to go on to",
                },
            ]
        }
    )

    template: TrainingJobSpec
    """The training job every trial starts from; each trial writes under
    template.output.uri/<trial name>."""
    space: list[SearchParameter] = Field(
        min_length=1,
        max_length=SPACE_MAX,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """The parameters to search, each a field of the template and its domain."""
    objective: SearchObjective = Field(
        default_factory=SearchObjective, json_schema_extra={"default": {}}
    )
    """Maximise accuracy, under optional constraints, against optional further objectives."""
    algorithm: SearchAlgorithm = Field(
        default_factory=SearchAlgorithm, json_schema_extra={"default": {}}
    )
    """How trials are chosen."""
    # Spelled out: the API server checks the budget's CEL rule against this default as written.
    budget: SearchBudget = Field(
        default_factory=SearchBudget,
        json_schema_extra={"default": {"maxTrials": 20, "parallelTrials": 2}},
    )
    """Trials in all and at once, epochs per trial and in all, GPU-hours."""


class TrialRung(LeptonModel):
    """A rung a hyperband trial finished: how far it had trained, and how well."""

    epochs: int = Field(ge=1)
    """Epochs trained by the end of the rung."""
    accuracy: float | None = Field(default=None, ge=0, le=1)
    """Accuracy on the held-out test split after those epochs."""
    gpu_hours: float | None = Field(default=None, ge=0)
    """GPU-hours the rung's training job held."""


class SearchTrial(LeptonModel):
    """One row of the trial table."""

    name: str = Field(max_length=NAME_MAX)
    """The trial's LeptonTrainingJob (its first; a hyperband trial's later rungs are
    <name>-r1, <name>-r2, ..., continuing from its checkpoints)."""
    number: int = Field(ge=0)
    """Order of creation, from 0."""
    params: dict[str, str] = Field(default_factory=dict, max_length=SPACE_MAX)
    """The value of each searched field, as text (floats exactly)."""
    state: TrialState = "Pending"
    """Pending (created, waiting to run), Running, Paused (hyperband: finished a rung, goes on
    once among the best 1/eta there), Completed, Pruned (hyperband stopped it at a rung: not
    among the best 1/eta there when the search ended, or out of budget) or Failed."""
    epochs: int | None = Field(default=None, ge=1)
    """Epochs the trial trains to at its current rung (its full epochs but under hyperband)."""
    rung: int = Field(default=0, ge=0)
    """hyperband: the rung the trial is at, from 0."""
    rungs: list[TrialRung] = Field(default_factory=list, max_length=16)
    """hyperband: the rungs the trial finished, in order."""
    metrics: TrialMetrics | None = None
    """Measured once Completed."""
    feasible: bool | None = None
    """Completed (or Pruned) within objective's constraints."""
    gpu_hours: float | None = Field(default=None, ge=0)
    """GPU-hours the trial held, once it started (every rung's together)."""
    message: str | None = Field(default=None, max_length=TEXT_MAX)
    """Why the trial failed or is infeasible."""


class SearchResults(LeptonModel):
    """The best trial's outcome; compressions and endpoints chain from `modelURI`."""

    trial: str = Field(max_length=NAME_MAX)
    """The best trial's LeptonTrainingJob."""
    accuracy: float | None = Field(default=None, ge=0, le=1)
    """The best trial's accuracy on the held-out test split."""
    model_uri: str | None = Field(default=None, alias="modelURI", max_length=URI_MAX)
    """Where the best trial wrote its model."""
    params: dict[str, str] = Field(default_factory=dict, max_length=SPACE_MAX)
    """The best trial's parameters."""


class SearchStatus(LeptonModel):
    """Observed state of a LeptonSearch, written by the operator only."""

    phase: SearchPhase = "Pending"
    """Pending, Running, Succeeded or Failed."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=8,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Latest observations: Ready, Succeeded, Failed."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation this status describes."""
    message: str | None = Field(default=None, max_length=TEXT_MAX)
    """One line on the current state, for humans."""
    trials: list[SearchTrial] = Field(default_factory=list, max_length=SEARCH_TRIALS_MAX)
    """Every trial so far, in the order they were created."""
    completed_trials: int = Field(default=0, ge=0)
    """Trials that completed (feasible or not)."""
    best_trial: str | None = Field(default=None, max_length=NAME_MAX)
    """The feasible completed trial with the highest accuracy."""
    pareto_front: list[str] = Field(default_factory=list, max_length=SEARCH_TRIALS_MAX)
    """With objective.minimize: the feasible trials that no other trial beats on every
    objective."""
    gpu_hours: float = Field(default=0.0, ge=0)
    """GPU-hours held by the trials so far."""
    epochs_trained: int = Field(default=0, ge=0)
    """Epochs the trials have finished training, together (a hyperband trial's epochs once,
    however many rungs it went on to)."""
    results: SearchResults | None = None
    """The best trial, once there is one."""
    start_time: datetime | None = None
    """When the first trial was recorded."""
    completion_time: datetime | None = None
    """When the last trial finished."""


class LeptonSearch(LeptonModel):
    """Architecture and hyperparameter search over LeptonTrainingJob trials."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = "lepton.ai/v1alpha1"
    kind: Literal["LeptonSearch"] = "LeptonSearch"
    metadata: ObjectMeta
    spec: SearchSpec
    status: SearchStatus | None = None
