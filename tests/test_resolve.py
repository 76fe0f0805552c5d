"""Sources: reference cycles between compressions are reported as the cycle, never waited on
forever; a search is a source once it succeeded."""

from __future__ import annotations

import pytest

from lepton_operator.api.common import ModelSourceRefs
from lepton_operator.api.search import LeptonSearch
from lepton_operator.resolve import (
    cycle_blocker,
    reference_cycle,
    source_blocker,
    source_dataset,
    source_model_uri,
    source_reference,
)
from tests.factories import make_search


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


def _search(status: dict[str, object] | None) -> LeptonSearch:
    manifest = make_search(name="digits")
    if status is not None:
        manifest["status"] = status
    return LeptonSearch.model_validate(manifest)


def test_a_search_is_a_source_once_it_succeeded_with_its_best_trials_model() -> None:
    reference = source_reference(ModelSourceRefs.model_validate({"searchRef": {"name": "digits"}}))
    assert reference == ("LeptonSearch", "digits")
    running = source_blocker("LeptonSearch", "digits", "default", _search({"phase": "Running"}))
    assert running is not None and running.reason == "WaitingForSource"
    best = {"trial": "digits-003", "modelURI": "pvc://artifacts/digits/digits-003"}
    done = _search({"phase": "Succeeded", "results": best})
    assert source_blocker("LeptonSearch", "digits", "default", done) is None
    assert source_model_uri(done) == "pvc://artifacts/digits/digits-003"
    assert source_dataset(done) == done.spec.template.dataset  # compressions measure on it
    missing = source_blocker("LeptonSearch", "digits", "default", None)
    assert missing is not None and "spec.source.searchRef.name" in missing.message
