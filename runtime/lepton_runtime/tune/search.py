"""How a tuning run walks its space: pure, given a function that measures one candidate.

`quick` is coordinate hill-climbing, in the spirit of Model Analyzer's quick mode, from a
seeded start. With C closed-loop clients and I instances, each instance sees about C/I
requests at a time, so the seeds are, for each instance count, a batch of half that share at
the smallest delay (see `Dimensions.seeds`). The walk starts from the best seed and, one
dimension at a time (model format, maxBatchSize, delay, instances, preferred size), measures
both neighbours, goes the better one's way while throughput rises by `min_gain`, and stops
when a pass moves nothing. Within the latency budget beats over it; among candidates on the
same side of it, throughput decides (over the budget the fastest is served, so that is what
the walk looks for). Measured: coordinate steps upwards from the smallest batch and one
instance stopped at 62-81% of the grid's best here, because the instance count and the batch
interact (two instances want half the batch).
`grid` measures every candidate, the baseline the quick walk is judged against.

One short sample varies by tens of percent on a shared machine (bench.tuning, 2 cores: one
config measured 2,178 and 2,987 req/s in two runs), and the best of several single samples
is biased upwards. So `confirm_choice` races the leaders: the leader is measured again and
ranked on the mean of its samples, until the leader is one measured twice. The seeds are
raced before the walk starts from one, and all candidates after it. Otherwise the walk
measures nothing twice: it keeps what it measured.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lepton_runtime.contract import ExportFormat, TritonSettings, TuningMeasurement, TuningSpace

Coordinates = tuple[int, int, int, int, int]
"""Indexes into (maxBatchSizes, delays, [none, *preferredBatchSizes], instanceCounts,
model formats)."""

Measure = Callable[[TritonSettings], TuningMeasurement]
MAX_PASSES = 3
CONFIRMING_SAMPLES = 2
"""Samples the chosen candidate has (unless it is the only one measured)."""


def formats_to_try(
    space: TuningSpace, runnable: Sequence[ExportFormat]
) -> tuple[ExportFormat | None, ...]:
    """The space's model formats that the model has, in the space's order; (None,) when the
    model offers no choice of file (a compact model); ValueError when it has none of them."""
    if not runnable:
        return (None,)
    found = tuple(fmt for fmt in space.model_formats if fmt in runnable)
    if not found:
        raise ValueError(
            f"tuning.space.modelFormats {space.model_formats}: the model has only "
            f"{list(runnable)}; add one of those, or export the model in a listed format"
        )
    return found


@dataclass(frozen=True)
class Dimensions:
    """The space as five ordered axes."""

    batch: tuple[int, ...]
    delay: tuple[int, ...]
    preferred: tuple[int | None, ...]
    instances: tuple[int, ...]
    formats: tuple[ExportFormat | None, ...] = (None,)

    @classmethod
    def of(cls, space: TuningSpace, runnable: Sequence[ExportFormat] = ()) -> Dimensions:
        """The axes of `space` for a model that can run the formats `runnable`."""
        return cls(
            tuple(space.max_batch_sizes),
            tuple(space.max_queue_delays_microseconds),
            (None, *space.preferred_batch_sizes),
            tuple(space.instance_counts),
            formats_to_try(space, runnable),
        )

    @property
    def sizes(self) -> Coordinates:
        return (
            len(self.batch),
            len(self.delay),
            len(self.preferred),
            len(self.instances),
            len(self.formats),
        )

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
            model_format=self.formats[at[4]],
        )

    def seeds(self, concurrency: int) -> list[Coordinates]:
        """For each instance count, the smallest batch that holds half of one instance's share of
        the clients (the largest batch when none does), no preferred size and the
        smallest delay, in the first model format. Half: under closed-loop load an
        instance keeps a batch computing while the next one forms, so two batches share
        its clients. The smallest delay: at full load the batch limit, not the delay,
        closes a batch, and a delay only adds waiting (the walk raises it where that
        pays)."""
        found = []
        for index, instances in enumerate(self.instances):
            share = max(1, -(-concurrency // (2 * instances)))
            batch = next((i for i, b in enumerate(self.batch) if b >= share), len(self.batch) - 1)
            found.append((batch, 0, 0, index, 0))
        return found

    def all(self) -> list[TritonSettings]:
        """Every valid candidate, in grid order."""
        found = []
        for at in itertools.product(*(range(n) for n in self.sizes)):
            settings = self.settings(at)  # type: ignore[arg-type]
            if settings is not None:
                found.append(settings)
        return found


def better(new: TuningMeasurement, old: TuningMeasurement, min_gain: float) -> bool:
    """Within budget beats over budget; on the same side of it, more throughput by
    `min_gain`."""
    if new.within_budget != old.within_budget:
        return new.within_budget
    return new.throughput > old.throughput * (1 + min_gain)


def _rank(measured: TuningMeasurement) -> tuple[bool, float]:
    return (measured.within_budget, measured.throughput)


def choose(measured: list[TuningMeasurement]) -> TuningMeasurement:
    """The fastest within the budget; when none is, the fastest of all."""
    return max(measured, key=_rank)


def pooled(first: TuningMeasurement, again: TuningMeasurement) -> TuningMeasurement:
    """One candidate's samples together: throughput and p50 averaged over the samples, p99
    the highest seen, within budget only if every sample was."""
    total = first.samples + again.samples

    def mean(a: float, b: float) -> float:
        return (a * first.samples + b * again.samples) / total

    return first.model_copy(
        update={
            "throughput": mean(first.throughput, again.throughput),
            "p50_ms": mean(first.p50_ms, again.p50_ms),
            "p99_ms": max(first.p99_ms, again.p99_ms),
            "within_budget": first.within_budget and again.within_budget,
            "samples": total,
        }
    )


def confirm_choice(measured: list[TuningMeasurement], measure: Measure) -> list[TuningMeasurement]:
    """While the leader has fewer than `CONFIRMING_SAMPLES` samples, measure it again and
    pool: a leader that only led on a lucky sample falls back, and the next is confirmed in
    turn. Each candidate is measured at most `CONFIRMING_SAMPLES` times, so it ends."""
    found = list(measured)
    while len(found) > 1:
        leader = max(range(len(found)), key=lambda i: _rank(found[i]))
        if found[leader].samples >= CONFIRMING_SAMPLES:
            break
        found[leader] = pooled(found[leader], measure(found[leader].settings))
    return found


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
    return (moved[0], moved[1], moved[2], moved[3], moved[4])


def _neighbour(walk: Walk, at: Coordinates, axis: int, delta: int) -> Coordinates | None:
    """The next valid point along `axis` (a preferred size above the batch is stepped over)."""
    size = walk.dimensions.sizes[axis]
    candidate = _step(at, axis, delta)
    while 0 <= candidate[axis] < size:
        if walk.at(candidate) is not None:
            return candidate
        candidate = _step(candidate, axis, delta)
    return None


def _climb_axis(walk: Walk, at: Coordinates, axis: int, min_gain: float) -> Coordinates:
    """Both neighbours along one axis are measured; the walk goes the better one's way, and
    on in that direction, while it pays."""
    here = walk.at(at)
    assert here is not None
    steps = [
        (found, delta)
        for delta in (1, -1)
        if (found := _neighbour(walk, at, axis, delta)) is not None
    ]
    paying = [
        (point, delta) for point, delta in steps if better(walk.measured[point], here, min_gain)
    ]
    if not paying:
        return at
    current, delta = max(paying, key=lambda step: walk.measured[step[0]].throughput)
    while (following := _neighbour(walk, current, axis, delta)) is not None and better(
        walk.measured[following], walk.measured[current], min_gain
    ):
        current = following
    return current


AXES = (4, 0, 1, 3, 2)
"""Climbing order: model format, batch, delay, instances, preferred size. The format goes
first: a faster engine drains a batch sooner, which moves the best batch and delay."""


def quick_search(
    dimensions: Dimensions, measure: Measure, min_gain: float, concurrency: int
) -> list[TuningMeasurement]:
    """Measure the seeds and confirm the best of them, then hill-climb one axis at a time
    from it until a whole pass moves nothing."""
    walk = Walk(dimensions, measure)
    seeds = walk.dimensions.seeds(concurrency)
    for seed in seeds:
        walk.at(seed)
    # The start decides the instance count the walk climbs from, and the walk never measures
    # a point again, so the seeds are raced first: measured here, the first sample of the
    # two-instance seed came out 15-20% low in two of three runs.
    for seed, confirmed in zip(
        seeds, confirm_choice([walk.measured[seed] for seed in seeds], measure), strict=True
    ):
        walk.measured[seed] = confirmed
    at = max(seeds, key=lambda seed: _rank(walk.measured[seed]))
    for _ in range(MAX_PASSES):
        before = at
        for axis in AXES:
            at = _climb_axis(walk, at, axis, min_gain)
        if at == before:
            break
    return list(walk.measured.values())


def grid_search(dimensions: Dimensions, measure: Measure) -> list[TuningMeasurement]:
    """Every candidate of the space."""
    return [measure(settings) for settings in dimensions.all()]
