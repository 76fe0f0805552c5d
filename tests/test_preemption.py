"""Gang preemption (pure): whole lower-priority jobs, lowest priority and youngest first, only
when evicting them makes the gang fit, and none evicted in vain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lepton_operator.builders.meta import PRIORITY_ANNOTATION
from lepton_operator.scheduling.admission import Admitted, GangRequest, Waiting, admit
from lepton_operator.scheduling.inventory import GpuNode
from lepton_operator.scheduling.preemption import (
    Preemption,
    RunningGang,
    eviction_order,
    plan_preemption,
)
from lepton_operator.scheduling.queue import Preempting, plan_pass
from lepton_operator.scheduling.reservations import reservations_from, running_gangs
from lepton_operator.scheduling.views import PodView
from tests.test_admission_queue import STARVATION, admitted, gang
from tests.test_scheduling import LABELS, node, pod_manifest, pytorchjob


def owned_by(name: str) -> dict[str, Any]:
    return {"kind": "LeptonTrainingJob", "name": name, "controller": True}


def running(
    name: str, priority: int, nodes: dict[str, int], second: int = 0, pool: str = "a100"
) -> RunningGang:
    return RunningGang(
        namespace="team",
        child=name,
        owner_kind="LeptonTrainingJob",
        owner_name=name,
        priority=priority,
        created=f"2026-12-01T09:00:{second:02d}Z",
        pool=pool,
        held=tuple(sorted(nodes.items())),
    )


def occupied(gangs: Sequence[RunningGang], pool: str = "a100", count: int = 4) -> list[GpuNode]:
    """`count` 8-GPU nodes of `pool`, used by exactly these gangs."""
    used: dict[str, int] = {}
    for g in gangs:
        for name, gpus in g.held:
            used[name] = used.get(name, 0) + gpus
    return [node(pool, i, used=used.get(f"{pool}-{i}", 0)) for i in range(count)]


def plan(
    request: GangRequest, priority: int, gangs: Sequence[RunningGang], nodes: list[GpuNode]
) -> Preemption | None:
    return plan_preemption(
        request, priority=priority, policy="binpack", inventory=nodes, reservations=(),
        running=gangs,
    )  # fmt: skip


def test_eviction_order_is_lowest_priority_then_youngest() -> None:
    gangs = [
        running("old-low", 1, {}, second=1),
        running("young-low", 1, {}, second=9),
        running("young-lowest", 0, {}, second=5),
        running("mid", 5, {}, second=3),
    ]
    assert [g.child for g in eviction_order(gangs)] == [
        "young-lowest", "young-low", "old-low", "mid",
    ]  # fmt: skip


def test_a_gang_evicts_whole_jobs_lowest_priority_and_youngest_first() -> None:
    # a100 full: four 2-node jobs of 8-GPU workers. A 2 x 8 gang of priority 10 needs 2 nodes.
    gangs = [
        running("a", 5, {"a100-0": 8, "a100-1": 8}, second=1),
        running("b", 1, {"a100-2": 8}, second=2),
        running("c", 1, {"a100-3": 8}, second=3),
    ]
    found = plan(GangRequest(2, 8), 10, gangs, occupied(gangs))
    assert found is not None
    assert found.pool == "a100"
    assert {v.child for v in found.victims} == {"b", "c"}  # priority 1 before 5


def test_a_victim_not_needed_after_all_is_spared() -> None:
    # Youngest first takes "young" (4 GPUs beside a higher-priority job on a100-0) before
    # "old" (all of a100-1); the 8-GPU worker needs a whole node, which only evicting "old"
    # frees: "young" is spared again.
    gangs = [
        running("keeper", 20, {"a100-0": 4}, second=0),
        running("young", 1, {"a100-0": 4}, second=9),
        running("old", 1, {"a100-1": 8}, second=1),
    ]
    found = plan(GangRequest(1, 8), 10, gangs, occupied(gangs, count=2))
    assert found is not None
    assert [v.child for v in found.victims] == ["old"]


def test_no_eviction_of_equal_or_higher_priority_nor_when_it_would_not_help() -> None:
    gangs = [
        running("same", 10, {"a100-0": 8, "a100-1": 8}),
        running("low", 1, {"a100-2": 8}),
        running("other", 0, {"a100-3": 8}),
    ]
    nodes = occupied(gangs)
    # Three whole nodes: only two are held by lower priorities.
    assert plan(GangRequest(3, 8), 10, gangs, nodes) is None
    assert plan(GangRequest(1, 8), 1, gangs, nodes) is not None  # evicts "other" (0 < 1)
    assert plan(GangRequest(1, 8), 0, gangs, nodes) is None


def test_a_preempting_gang_holds_its_pool_against_lower_priorities() -> None:
    gangs = [running("low", 0, {f"a100-{i}": 8 for i in range(4)})]
    nodes = [*occupied(gangs), node("a100", 4, gpus=4)]
    high = gang("high", 4, 8, second=5, priority=100)
    small = gang("small", 1, 4, second=1)  # fits on a100-4, but the pool is held now
    decisions = plan_pass(
        [high, small], nodes, [], now=10, starvation_seconds=STARVATION, running=gangs
    )
    outcome = dict((g.job.name, d) for g, d in decisions)
    assert isinstance(outcome["high"], Preempting)
    assert [v.child for v in outcome["high"].preemption.victims] == ["low"]
    assert isinstance(outcome["small"], Waiting)
    assert "held for LeptonTrainingJob team/high" in outcome["small"].message


def test_a_nominated_gang_preempts_no_more_and_starts_once_its_gpus_are_free() -> None:
    gangs = [running("low", 0, {f"a100-{i}": 8 for i in range(4)})]
    high = gang("high", 4, 8, second=5, priority=100)
    # The victims' pods are still terminating: no second preemption, the pool stays held.
    still = plan_pass(
        [high], occupied(gangs), [], now=10, starvation_seconds=STARVATION,
        nominated={high: "a100"}, running=[replace(gangs[0], child="other")],
    )  # fmt: skip
    assert isinstance(still[0][1], Waiting)
    gone = plan_pass(
        [high], occupied([]), [], now=12, starvation_seconds=STARVATION,
        nominated={high: "a100"}, running=[],
    )  # fmt: skip
    assert admitted(gone) == {"high": "a100"}


def test_running_gangs_read_priority_pods_and_reservations_from_the_cluster() -> None:
    job = pytorchjob("trainer", "a100", workers=3, conditions=("Created",))
    job["metadata"]["ownerReferences"] = [owned_by("trainer")]
    job["metadata"]["annotations"] = {PRIORITY_ANNOTATION: "50"}
    job["metadata"]["creationTimestamp"] = "2026-12-01T09:00:00Z"
    finished = pytorchjob("done", "a100", workers=1, conditions=("Succeeded",))
    finished["metadata"]["ownerReferences"] = [owned_by("done")]
    pods = [
        PodView.model_validate(p)
        for p in (
            pod_manifest("a100-0", 8, job="trainer"),
            pod_manifest("a100-0", 8, phase="Succeeded", job="trainer"),
            pod_manifest(None, 8, phase="Pending", job="trainer"),
        )
    ]
    jobs = [job, finished]
    reservations = reservations_from(jobs, pods, "lepton.ai/pool", LABELS.gpu_product_label)
    found = running_gangs(jobs, pods, reservations, "lepton.ai/pool")
    assert len(found) == 1
    trainer = found[0]
    assert (trainer.owner_kind, trainer.owner_name, trainer.priority) == (
        "LeptonTrainingJob", "trainer", 50,
    )  # fmt: skip
    assert trainer.held == (("a100-0", 8),)
    assert trainer.reserved is not None and trainer.reserved.workers == 2
    assert trainer.gpus == 24


# --------------------------------------------------------------------------- properties

gpu_counts = st.sampled_from([1, 2, 4, 8])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[GpuNode], list[RunningGang], GangRequest, int]:
    """A pool of 2-5 8-GPU nodes, filled by random gangs of random priorities."""
    count = draw(st.integers(2, 5))
    free = {f"a100-{i}": 8 for i in range(count)}
    gangs = []
    for index in range(draw(st.integers(1, 8))):
        gpus = draw(gpu_counts)
        holders = [name for name, left in free.items() if left >= gpus]
        if not holders:
            break
        chosen = draw(st.lists(st.sampled_from(holders), min_size=1, max_size=3, unique=True))
        for name in chosen:
            free[name] -= gpus
        gangs.append(
            running(f"j{index}", draw(st.integers(0, 3)), {n: gpus for n in chosen}, second=index)
        )
    request = GangRequest(draw(st.integers(1, 3)), draw(gpu_counts))
    return occupied(gangs, count=count), gangs, request, draw(st.integers(0, 4))


def fits_after(request: GangRequest, nodes: list[GpuNode], evicted: Sequence[RunningGang]) -> bool:
    freed: dict[str, int] = {}
    for victim in evicted:
        for name, gpus in victim.held:
            freed[name] = freed.get(name, 0) + gpus
    after = [replace(n, used=n.used - freed.get(n.name, 0)) for n in nodes]
    return isinstance(admit(request, after), Admitted)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_preemption_evicts_only_lower_priorities_only_to_fit_and_none_in_vain(
    scenario: tuple[list[GpuNode], list[RunningGang], GangRequest, int],
) -> None:
    nodes, gangs, request, priority = scenario
    found = plan(request, priority, gangs, nodes)
    lower = [g for g in gangs if g.priority < priority]
    if found is None:
        # Nothing evicted: either it fits already, or not even every lower job's GPUs would do.
        assert fits_after(request, nodes, []) or not fits_after(request, nodes, lower)
        return
    assert all(v.priority < priority for v in found.victims)
    assert len({v.child for v in found.victims}) == len(found.victims)
    assert fits_after(request, nodes, found.victims)
    for spared in found.victims:  # each victim was needed
        rest = [v for v in found.victims if v is not spared]
        assert not fits_after(request, nodes, rest)


def test_a_nominated_gang_keeps_its_pool_while_it_backs_off() -> None:
    # "high" preempted, then the API server refused its children: it is not decided on this
    # pass, but the GPUs it freed stay held against lower priorities.
    high = gang("high", 4, 8, second=5, priority=100)
    low = gang("low", 4, 8, second=1)
    decisions = plan_pass(
        [low], occupied([]), [], now=10, starvation_seconds=STARVATION, nominated={high: "a100"}
    )
    assert admitted(decisions) == {}
    assert "held for LeptonTrainingJob team/high" in decisions[0][1].message  # type: ignore[union-attr]
