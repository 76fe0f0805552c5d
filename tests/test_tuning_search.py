"""The tuning walk (runtime/lepton_runtime/tune/search.py) over synthetic throughput surfaces.

The surfaces stand in for Triton only here: they let properties be checked over thousands of
spaces in a second. The walk on the real server is tested in tests/runtime/test_tuning.py.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lepton_runtime.contract import ExportFormat, TritonSettings, TuningMeasurement, TuningSpace
from lepton_runtime.tune.search import (
    CONFIRMING_SAMPLES,
    Coordinates,
    Dimensions,
    better,
    choose,
    confirm_choice,
    formats_to_try,
    grid_search,
    pooled,
    quick_search,
)


def _measurement(
    settings: TritonSettings, throughput: float, p99: float, budget: float
) -> TuningMeasurement:
    return TuningMeasurement(
        settings=settings,
        throughput=throughput,
        p50_ms=p99 / 2,
        p99_ms=p99,
        within_budget=p99 <= budget,
    )


class Surface:
    """A separable surface: throughput is a product of one peaked factor per dimension, so
    each dimension alone rises to its peak and falls after it (the shape of batch size and
    queue delay on a real server); p99 grows with the batch and the delay."""

    def __init__(self, dimensions: Dimensions, peaks: Coordinates, budget: float) -> None:
        self.dimensions = dimensions
        self.peaks = peaks
        self.budget = budget
        self.calls: list[TritonSettings] = []

    def _factor(self, axis: int, index: int) -> float:
        return 1.0 / (1.0 + 0.5 * abs(index - self.peaks[axis]))

    def index(self, settings: TritonSettings) -> Coordinates:
        d = self.dimensions
        return (
            d.batch.index(settings.max_batch_size),
            d.delay.index(settings.max_queue_delay_microseconds),
            d.preferred.index(settings.preferred_batch_size),
            d.instances.index(settings.instances),
            d.formats.index(settings.model_format),
        )

    def __call__(self, settings: TritonSettings) -> TuningMeasurement:
        self.calls.append(settings)
        at = self.index(settings)
        throughput = 1000.0 * math.prod(self._factor(axis, i) for axis, i in enumerate(at))
        p99 = 1.0 + settings.max_batch_size / 16 + settings.max_queue_delay_microseconds / 1000
        return _measurement(settings, throughput, p99, self.budget)


SPACES = st.builds(
    TuningSpace,
    max_batch_sizes=st.lists(st.integers(1, 128), min_size=1, max_size=7, unique=True),
    max_queue_delays_microseconds=st.lists(
        st.integers(0, 5000), min_size=1, max_size=5, unique=True
    ),
    preferred_batch_sizes=st.just([]),
    instance_counts=st.lists(st.integers(1, 4), min_size=1, max_size=3, unique=True),
    model_formats=st.permutations(["onnx", "torchscript"]).map(list),
)
RUNNABLE: st.SearchStrategy[tuple[ExportFormat, ...]] = st.sampled_from(
    [(), ("onnx",), ("torchscript",), ("onnx", "torchscript")]
)
"""What a model's files let the python backend run: nothing to choose (a compact model),
one format, or both."""
DIMENSIONS = st.builds(Dimensions.of, SPACES, RUNNABLE)


def _peaks(dimensions: Dimensions, data: st.DataObject) -> Coordinates:
    return tuple(data.draw(st.integers(0, n - 1)) for n in dimensions.sizes)  # type: ignore[return-value]


@settings(max_examples=300, deadline=None)
@given(dimensions=DIMENSIONS, data=st.data())
def test_quick_finds_the_grid_best_of_a_separable_peaked_surface(
    dimensions: Dimensions, data: st.DataObject
) -> None:
    surface = Surface(dimensions, _peaks(dimensions, data), budget=math.inf)
    quick = choose(quick_search(dimensions, surface, min_gain=0.0, concurrency=8))
    best = choose(grid_search(dimensions, Surface(dimensions, surface.peaks, math.inf)))
    assert quick.throughput == pytest.approx(best.throughput)


@settings(max_examples=300, deadline=None)
@given(dimensions=DIMENSIONS, data=st.data(), budget=st.floats(1.0, 20.0))
def test_quick_measures_only_a_seed_twice_and_measures_less_than_the_grid(
    dimensions: Dimensions, data: st.DataObject, budget: float
) -> None:
    surface = Surface(dimensions, _peaks(dimensions, data), budget)
    measured = quick_search(dimensions, surface, min_gain=0.03, concurrency=32)
    keys = [s.model_dump_json() for s in surface.calls]
    seeds = {dimensions.settings(at) for at in dimensions.seeds(32)}
    twice = {key for key in keys if keys.count(key) > 1}
    assert all(keys.count(key) == 2 for key in twice)
    assert twice <= {seed.model_dump_json() for seed in seeds if seed is not None}
    assert len(twice) <= len(seeds) - 1  # racing ends when the leader has two samples
    assert len(measured) == len(set(keys)) <= len(dimensions.all())


@settings(max_examples=300, deadline=None)
@given(dimensions=DIMENSIONS, data=st.data(), budget=st.floats(1.0, 20.0))
def test_the_choice_is_the_fastest_within_budget_else_the_fastest(
    dimensions: Dimensions, data: st.DataObject, budget: float
) -> None:
    measured = quick_search(
        dimensions,
        Surface(dimensions, _peaks(dimensions, data), budget),
        min_gain=0.03,
        concurrency=8,
    )
    chosen = choose(measured)
    within = [m for m in measured if m.within_budget]
    if within:
        assert chosen.within_budget
        assert chosen.throughput == max(m.throughput for m in within)
    else:
        assert chosen.throughput == max(m.throughput for m in measured)


class Noisy:
    """A second sample of each candidate: its first throughput scaled by a drawn factor (a
    lucky first sample falls back), p99 likewise."""

    def __init__(self, factors: list[float], budget: float) -> None:
        self.factors = factors
        self.budget = budget
        self.first: dict[str, TuningMeasurement] = {}
        self.calls: list[str] = []

    def __call__(self, settings: TritonSettings) -> TuningMeasurement:
        key = settings.model_dump_json()
        self.calls.append(key)
        first = self.first[key]
        factor = self.factors[len(self.calls) % len(self.factors)]
        return _measurement(settings, first.throughput * factor, first.p99_ms * factor, self.budget)


@settings(max_examples=300, deadline=None)
@given(
    dimensions=DIMENSIONS,
    data=st.data(),
    budget=st.floats(1.0, 20.0),
    factors=st.lists(st.floats(0.5, 1.5), min_size=1, max_size=8),
)
def test_the_choice_is_confirmed_by_a_second_sample(
    dimensions: Dimensions, data: st.DataObject, budget: float, factors: list[float]
) -> None:
    surface = Surface(dimensions, _peaks(dimensions, data), budget)
    walked = quick_search(dimensions, surface, min_gain=0.03, concurrency=8)
    again = Noisy(factors, budget)
    again.first = {m.settings.model_dump_json(): m for m in walked}
    confirmed = confirm_choice(walked, again)
    assert [m.settings for m in confirmed] == [m.settings for m in walked]
    assert max(again.calls.count(key) for key in again.calls or [""]) <= 1
    chosen = choose(confirmed)
    if len(walked) > 1:
        assert chosen.samples == CONFIRMING_SAMPLES  # never chosen on one sample
    for before, after in zip(walked, confirmed, strict=True):
        assert after.samples in (1, 2)
        if after.samples == 2:  # within budget only if both samples were
            assert after.within_budget == (before.within_budget and after.p99_ms <= budget)


def test_a_lucky_first_sample_loses_to_the_confirmed_runner_up() -> None:
    fast, steady = (
        TritonSettings(max_batch_size=b, max_queue_delay_microseconds=0, instances=1)
        for b in (4, 8)
    )
    measured = [_measurement(fast, 3000, 4.0, 5.0), _measurement(steady, 2600, 4.0, 5.0)]
    second_sample = {fast.model_dump_json(): 2000.0, steady.model_dump_json(): 2700.0}

    def again(settings: TritonSettings) -> TuningMeasurement:
        return _measurement(settings, second_sample[settings.model_dump_json()], 4.5, 5.0)

    chosen = choose(confirm_choice(measured, again))
    assert chosen.settings == steady
    assert chosen.throughput == pytest.approx(2650)
    assert chosen.p99_ms == 4.5


def test_pooled_samples_average_throughput_and_keep_the_worst_p99() -> None:
    one = _measurement(S, 1000, 4.0, 5.0)
    two = pooled(one, _measurement(S, 1300, 6.0, 5.0))
    assert (two.throughput, two.p50_ms, two.p99_ms) == (1150, 2.5, 6.0)
    assert (two.samples, two.within_budget) == (2, False)
    three = pooled(two, _measurement(S, 1600, 3.0, 5.0))
    assert (three.throughput, three.samples) == (1300, 3)


def test_preferred_sizes_above_a_candidates_batch_are_never_tried() -> None:
    space = TuningSpace(
        max_batch_sizes=[1, 8, 32], max_queue_delays_microseconds=[100], preferred_batch_sizes=[16]
    )
    dimensions = Dimensions.of(space)
    candidates = dimensions.all()
    assert all(
        c.preferred_batch_size is None or c.preferred_batch_size <= c.max_batch_size
        for c in candidates
    )
    assert len(candidates) == (3 + 1) * 2  # none for every batch, 16 only with 32; x2 instances
    surface = Surface(dimensions, (2, 0, 1, 0, 0), budget=math.inf)
    quick_search(dimensions, surface, min_gain=0.0, concurrency=16)
    assert all(
        c.preferred_batch_size is None or c.preferred_batch_size <= c.max_batch_size
        for c in surface.calls
    )


@pytest.mark.parametrize(
    ("concurrency", "expected"),
    [
        (16, [(8, 1), (4, 2)]),  # half of each instance's share of the clients
        (12, [(8, 1), (4, 2)]),  # 6 and 3: the smallest batch that holds it
        (1, [(1, 1), (1, 2)]),
        (400, [(64, 1), (64, 2)]),  # no batch holds it: the largest
    ],
)
def test_the_walk_is_seeded_with_half_of_each_instances_share(
    concurrency: int, expected: list[tuple[int, int]]
) -> None:
    space = TuningSpace(max_batch_sizes=[1, 4, 8, 64], max_queue_delays_microseconds=[0, 50, 500])
    dimensions = Dimensions.of(space)
    seeds = [dimensions.settings(at) for at in dimensions.seeds(concurrency)]
    assert [(s.max_batch_size, s.instances) for s in seeds if s] == expected
    assert {s.max_queue_delay_microseconds for s in seeds if s} == {0}


S = TritonSettings(max_batch_size=8, max_queue_delay_microseconds=100, instances=1)


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        ((1100, 4.0), (1000, 4.0), True),  # +10% within budget
        ((1020, 4.0), (1000, 4.0), False),  # +2%: below the 3% that counts as rising
        ((500, 4.0), (2000, 9.0), True),  # within budget beats any throughput over it
        ((2000, 9.0), (500, 4.0), False),
        ((1100, 9.0), (1000, 7.0), True),  # both over: throughput decides (the fastest is
        ((900, 7.0), (1000, 9.0), False),  # served when nothing meets the budget)
    ],
)
def test_better(new: tuple[float, float], old: tuple[float, float], expected: bool) -> None:
    budget = 5.0
    assert (
        better(_measurement(S, *new, budget), _measurement(S, *old, budget), min_gain=0.03)
        is expected
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_batch_sizes": [0, 8]}, "maxBatchSizes must be >= 1"),
        ({"max_batch_sizes": [8], "preferred_batch_sizes": [16]}, "between 1 and"),
        ({"instance_counts": [0]}, "instanceCounts"),
        ({"model_formats": ["onnx", "onnx"]}, "names a format twice"),
        ({"model_formats": []}, "at least 1 item"),
    ],
)
def test_contradictory_spaces_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TuningSpace.model_validate(fields)


@pytest.mark.parametrize(
    ("listed", "runnable", "expected"),
    [
        (
            ["torchscript", "onnx"],
            ("onnx", "torchscript"),
            ("torchscript", "onnx"),
        ),  # space's order
        (["onnx", "torchscript"], ("torchscript",), ("torchscript",)),  # only what the model has
        (["onnx"], (), (None,)),  # a compact model: no file to choose
    ],
)
def test_the_formats_tried_are_the_listed_ones_the_model_has(
    listed: list[ExportFormat],
    runnable: tuple[ExportFormat, ...],
    expected: tuple[ExportFormat | None, ...],
) -> None:
    assert formats_to_try(TuningSpace(model_formats=listed), runnable) == expected


def test_a_listed_format_the_model_lacks_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"tuning.space.modelFormats \['onnx'\].*only"):
        formats_to_try(TuningSpace(model_formats=["onnx"]), ("torchscript",))


def test_the_walk_starts_in_the_first_format_and_moves_to_a_faster_second() -> None:
    space = TuningSpace(max_batch_sizes=[1, 8, 32], max_queue_delays_microseconds=[0, 500])
    dimensions = Dimensions.of(space, ("onnx", "torchscript"))
    assert dimensions.formats == ("onnx", "torchscript")
    assert {dimensions.settings(at).model_format for at in dimensions.seeds(8)} == {"onnx"}  # type: ignore[union-attr]
    assert len(dimensions.all()) == 3 * 2 * 2 * 2  # batch x delay x instances x format
    surface = Surface(dimensions, (1, 0, 0, 0, 1), budget=math.inf)  # torchscript peaks
    chosen = choose(quick_search(dimensions, surface, min_gain=0.03, concurrency=8))
    assert chosen.settings.model_format == "torchscript"
    assert chosen.settings.max_batch_size == 8
