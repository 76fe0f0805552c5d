"""How a tuning run walks its space: pure, given a function that measures one candidate.

`quick` is coordinate hill-climbing, in the spirit of Model Analyzer's quick mode: start from
the smallest batch and one instance, and in each dimension in turn (maxBatchSize, queue delay,
preferred size, instances) keep stepping while throughput keeps rising by `min_gain` within
the latency budget; a pass that moves nothing ends the search. Throughput over such a space is
close to unimodal along each dimension (a batch too small wastes forward passes, one too large
only waits), which is what makes a walk of a few steps land near the grid's best. `grid`
measures every candidate, the baseline the quick walk is judged against.

Nothing is measured twice: the walk keeps what it measured.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from lepton_runtime.contract import TritonSettings, TuningMeasurement, TuningSpace

Coordinates = tuple[int, int, int, int]
"""Indexes into (maxBatchSizes, delays, [none, *preferredBatchSizes], instanceCounts)."""

Measure = Callable[[TritonSettings], TuningMeasurement]
MAX_PASSES = 3


@dataclass(frozen=True)
class Dimensions:
    """The space as four ordered axes."""

    batch: tuple[int, ...]
    delay: tuple[int, ...]
    preferred: tuple[int | None, ...]
    instances: tuple[int, ...]

    @classmethod
    def of(cls, space: TuningSpace) -> Dimensions:
        return cls(
            tuple(space.max_batch_sizes),
            tuple(space.max_queue_delays_microseconds),
            (None, *space.preferred_batch_sizes),
            tuple(space.instance_counts),
        )

    @property
    def sizes(self) -> Coordinates:
        return (len(self.batch), len(self.delay), len(self.preferred), len(self.instances))

    def settings(self, at: Coordinates) -> TritonSettings | None:
        """The candidate at `at`, or None where its preferred size exceeds its batch."""
        batch, preferred = self.batch[at[0]], self.preferred[at[2]]
        if preferred is not None and preferred > batch:
            return None
        return TritonSettings(
            max_batch_size=batch,
            preferred_batch_size=preferred,
            max_queue_delay_microseconds=self.delay[at[1]],
            instances=self.instances[at[3]],
        )

    def start(self) -> Coordinates:
        """Smallest batch, no preferred size, one instance; the delay nearest Triton's usual
        100 us (a zero delay hides what batching can do until the batch dimension has grown)."""
        delay = min(range(len(self.delay)), key=lambda i: abs(self.delay[i] - 100))
        return (0, delay, 0, 0)

    def all(self) -> list[TritonSettings]:
        """Every valid candidate, in grid order."""
        found = []
        for at in itertools.product(*(range(n) for n in self.sizes)):
            settings = self.settings(at)  # type: ignore[arg-type]
            if settings is not None:
                found.append(settings)
        return found


def better(new: TuningMeasurement, old: TuningMeasurement, min_gain: float) -> bool:
    """Within budget beats over budget; within it, more throughput by `min_gain`; over it,
    a lower p99 by `min_gain` (walking towards the budget)."""
    if new.within_budget != old.within_budget:
        return new.within_budget
    if new.within_budget:
        return new.throughput > old.throughput * (1 + min_gain)
    return new.p99_ms < old.p99_ms * (1 - min_gain)


def choose(measured: list[TuningMeasurement]) -> TuningMeasurement:
    """The fastest within the budget; when none is, the fastest of all."""
    within = [m for m in measured if m.within_budget]
    return max(within or measured, key=lambda m: m.throughput)


class Walk:
    """Measures on demand and remembers, in the order measured."""

    def __init__(self, dimensions: Dimensions, measure: Measure) -> None:
        self.dimensions = dimensions
        self.measure = measure
        self.measured: dict[Coordinates, TuningMeasurement] = {}

    def at(self, coordinates: Coordinates) -> TuningMeasurement | None:
        if coordinates not in self.measured:
            settings = self.dimensions.settings(coordinates)
            if settings is None:
                return None
            self.measured[coordinates] = self.measure(settings)
        return self.measured[coordinates]


def _step(at: Coordinates, axis: int, delta: int) -> Coordinates:
    moved = list(at)
    moved[axis] += delta
    return (moved[0], moved[1], moved[2], moved[3])


def _climb_axis(walk: Walk, at: Coordinates, axis: int, min_gain: float) -> Coordinates:
    """Step along one axis while it pays: upwards first, downwards if the first step up
    does not. Invalid points (a preferred size above the batch) are stepped over."""
    size = walk.dimensions.sizes[axis]
    for delta in (1, -1):
        moved = False
        current = at
        while True:
            best = walk.at(current)
            assert best is not None
            candidate = _step(current, axis, delta)
            found = None
            while 0 <= candidate[axis] < size:
                found = walk.at(candidate)
                if found is not None:
                    break
                candidate = _step(candidate, axis, delta)
            if found is None or not better(found, best, min_gain):
                break
            current, moved = candidate, True
        if moved:
            return current
    return at


def quick_search(space: TuningSpace, measure: Measure, min_gain: float) -> list[TuningMeasurement]:
    """Hill-climb one axis at a time until a whole pass moves nothing."""
    walk = Walk(Dimensions.of(space), measure)
    at = walk.dimensions.start()
    walk.at(at)
    for _ in range(MAX_PASSES):
        before = at
        for axis in range(4):
            at = _climb_axis(walk, at, axis, min_gain)
        if at == before:
            break
    return list(walk.measured.values())


def grid_search(space: TuningSpace, measure: Measure) -> list[TuningMeasurement]:
    """Every candidate of the space."""
    return [measure(settings) for settings in Dimensions.of(space).all()]
