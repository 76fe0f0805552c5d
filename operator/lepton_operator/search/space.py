"""A search space's values: how they are written in status, set into a trial's training spec,
laid out as a grid, and checked against the training spec before any trial runs.

Pure: no sampler here (search/sampler.py asks Optuna), only what Lepton's API defines.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from lepton_operator.api.search import SearchBudget, SearchParameter, SearchSpec
from lepton_operator.api.training import TrainingJobSpec

Value = int | float | str
Params = dict[str, Value]


def format_value(value: Value) -> str:
    """A value as status holds it: text that reads back to the same value (floats exactly)."""
    return repr(value) if isinstance(value, float) else str(value)


def parse_value(parameter: SearchParameter, text: str) -> Value:
    """The value that `format_value` wrote for this parameter."""
    if parameter.type == "int":
        return int(text)
    if parameter.type == "float":
        return float(text)
    for choice in parameter.values or []:
        if str(choice) == text:
            return choice
    raise ValueError(f"{text!r} is not one of {parameter.name}'s values")


def parse_params(space: list[SearchParameter], texts: Mapping[str, str]) -> Params:
    by_name: dict[str, SearchParameter] = {parameter.name: parameter for parameter in space}
    return {name: parse_value(by_name[name], text) for name, text in texts.items()}


def int_step(parameter: SearchParameter) -> int:
    return int(parameter.step) if parameter.step is not None else 1


def _steps(parameter: SearchParameter) -> list[Value]:
    """Every value of one parameter on the grid, smallest first."""
    if parameter.type == "categorical":
        return list(parameter.values or [])
    low, high = parameter.min, parameter.max
    assert low is not None and high is not None  # the CRD requires both
    if parameter.type == "int":
        return list(range(int(low), int(high) + 1, int_step(parameter)))
    assert parameter.step is not None  # the CRD requires a step for grid
    count = math.floor((high - low) / parameter.step + 1e-9) + 1
    return [round(low + index * parameter.step, 12) for index in range(count)]


def grid_size(space: list[SearchParameter]) -> int:
    return math.prod(len(_steps(parameter)) for parameter in space)


def grid_point(space: list[SearchParameter], index: int) -> Params:
    """The index-th combination, in the order of the space with the last parameter fastest."""
    point: Params = {}
    for parameter in reversed(space):
        steps = _steps(parameter)
        index, position = divmod(index, len(steps))
        point[parameter.name] = steps[position]
    return {parameter.name: point[parameter.name] for parameter in space}


def trial_spec(template: TrainingJobSpec, params: Params, budget: SearchBudget) -> TrainingJobSpec:
    """The template with every searched field set (and epochs capped by the budget).

    Raises pydantic's ValidationError when a value is no valid value of its field."""
    wire = template.to_wire()
    for path, value in params.items():
        _set_path(wire, path, value)
    wire.setdefault("hyperparameters", {})["epochs"] = capped_epochs(template, budget)
    return TrainingJobSpec.model_validate(wire)


def capped_epochs(template: TrainingJobSpec, budget: SearchBudget) -> int:
    """A trial's full epochs: the template's, capped by budget.maxEpochsPerTrial."""
    cap = budget.max_epochs_per_trial
    epochs = template.hyperparameters.epochs
    return epochs if cap is None else min(epochs, cap)


def _set_path(wire: dict[str, Any], path: str, value: Value) -> None:
    *parents, leaf = path.split(".")
    node = wire
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def _probes(parameter: SearchParameter) -> Iterator[Value]:
    """Values that stand for the whole domain: both ends, and for a float a value between
    them (a float domain on an integer field fails there, not at the ends)."""
    if parameter.type == "categorical":
        yield from parameter.values or []
        return
    low, high = parameter.min, parameter.max
    assert low is not None and high is not None
    if parameter.type == "int":
        yield from (int(low), int(high))
        return
    yield from (low, high)
    if low < high:
        yield low + (high - low) * 0.37


def space_problem(spec: SearchSpec) -> str | None:
    """Why some value of the space is no valid value of its training spec field, naming the
    field and the fix; None when every probe of every parameter makes a valid trial."""
    for index, parameter in enumerate(spec.space):
        for value in _probes(parameter):
            try:
                trial_spec(spec.template, {parameter.name: value}, spec.budget)
            except ValidationError as error:
                detail = error.errors()[0]["msg"]
                return (
                    f"spec.space[{index}] ({parameter.name}, {parameter.type}): {value!r} is "
                    f"no valid template.{parameter.name} ({detail}): change the domain"
                )
    return None
