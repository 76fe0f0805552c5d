"""Reference cycles between compressions: reported as the cycle, never waited on forever."""

from __future__ import annotations

import pytest

from lepton_operator.resolve import cycle_blocker, reference_cycle


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": "a"}, ["a", "a"]),  # a compression of itself
        ({"a": "b", "b": "a"}, ["a", "b", "a"]),
        ({"a": "b", "b": "c", "c": "a"}, ["a", "b", "c", "a"]),
        ({"a": "b", "b": "c"}, None),  # a chain that ends (c names a training job, or nothing)
        ({"a": "b", "b": "c", "c": "b"}, None),  # a cycle further on: b and c report it
    ],
)
def test_a_cycle_through_the_start_is_found_and_only_then(
    graph: dict[str, str], cycle: list[str] | None
) -> None:
    assert reference_cycle("a", graph.get) == cycle


def test_a_chain_longer_than_the_limit_is_not_followed_to_its_end() -> None:
    graph = {f"c{i}": f"c{i + 1}" for i in range(100)} | {"c100": "c0"}
    assert reference_cycle("c0", graph.get) is None


def test_the_cycle_says_what_to_change() -> None:
    blocker = cycle_blocker(["a", "b", "a"])
    assert blocker.reason == "SourceCycle" and blocker.phase == "Pending"
    assert "a -> b -> a" in blocker.message and "trainingJobRef or a modelURI" in blocker.message
