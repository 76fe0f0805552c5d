"""Inventory, gang-aware admission and placement policies: pure functions, checked as tables
and as properties over random clusters."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lepton_operator.scheduling.admission import (
    Admitted,
    GangRequest,
    Reservation,
    Waiting,
    admit,
    fit,
)
from lepton_operator.scheduling.inventory import GpuNode, InventoryLabels, build_inventory
from lepton_operator.scheduling.reservations import reservations_from
from lepton_operator.scheduling.views import PodView

A100 = "NVIDIA-A100-SXM4-80GB"
H100 = "NVIDIA-H100-80GB-HBM3"
POOL_KEY = "lepton.ai/node-pool"
LABELS = InventoryLabels(pool_labels=(POOL_KEY, "karpenter.sh/nodepool"))


def node(pool: str, index: int, gpus: int = 8, used: int = 0, product: str = A100) -> GpuNode:
    return GpuNode(f"{pool}-{index}", pool, POOL_KEY, product, gpus, used)


def cluster(
    a100_used: tuple[int, ...] = (0, 0, 0, 0), h100_used: tuple[int, ...] = (0, 0)
) -> list[GpuNode]:
    """The e2e topology: a100 4 x 8, h100 2 x 8."""
    return [node("a100", i, used=u) for i, u in enumerate(a100_used)] + [
        node("h100", i, used=u, product=H100) for i, u in enumerate(h100_used)
    ]


# --------------------------------------------------------------------------- fit


@pytest.mark.parametrize(
    ("free", "workers", "gpus", "expected"),
    [
        ([8, 8], 2, 8, [0, 0]),
        ([8, 8], 3, 8, None),
        ([4, 4], 1, 8, None),  # 8 free GPUs, but not on one node
        ([8, 3], 1, 2, [8, 1]),  # best fit keeps the whole node free
        ([8, 8], 4, 0, [8, 8]),  # CPU-only workers always fit
    ],
)
def test_fit_places_best_fit(
    free: list[int], workers: int, gpus: int, expected: list[int] | None
) -> None:
    assert fit(free, workers, gpus) == expected


@given(
    free=st.lists(st.integers(0, 16), min_size=1, max_size=8),
    workers=st.integers(1, 12),
    gpus=st.integers(1, 8),
)
def test_fit_succeeds_exactly_when_the_slots_suffice(
    free: list[int], workers: int, gpus: int
) -> None:
    placed = fit(free, workers, gpus)
    slots = sum(f // gpus for f in free)
    assert (placed is not None) == (slots >= workers)
    if placed is not None:
        assert all(0 <= after <= before for after, before in zip(placed, free, strict=True))
        assert sum(free) - sum(placed) == workers * gpus


# --------------------------------------------------------------------------- admit


def test_binpack_fills_the_smaller_pool_first() -> None:
    decision = admit(GangRequest(workers=1, gpus_per_worker=8), cluster())
    assert decision == Admitted("h100", POOL_KEY, free_gpus_after=8)


def test_binpack_sends_a_small_worker_to_the_pool_of_small_nodes() -> None:
    l4 = [GpuNode(f"l4-{i}", "l4", POOL_KEY, "NVIDIA-L4", 4, 0) for i in range(4)]
    assert admit(GangRequest(1, 1), [*cluster(), *l4]) == Admitted("l4", POOL_KEY, 15)
    # ... and onto a node already in use rather than a whole one
    half_used = [*cluster(a100_used=(6, 0, 0, 0), h100_used=(0, 0)), *l4]
    assert admit(GangRequest(1, 2), half_used) == Admitted("a100", POOL_KEY, 24)


def test_binpack_keeps_the_pools_pinned_jobs_need_for_them() -> None:
    l4 = [GpuNode(f"l4-{i}", "l4", POOL_KEY, "NVIDIA-L4", 4, 0) for i in range(4)]
    anywhere = GangRequest(1, 1)
    # Jobs that can run only on L4 wait for 8 of its GPUs: a job that runs anywhere leaves
    # the L4 pool to them and packs onto the next best fit.
    waiting = {"NVIDIA-L4": 8}
    decision = admit(anywhere, [*cluster(), *l4], pinned_waiting=waiting)
    assert isinstance(decision, Admitted) and decision.pool != "l4"
    # The same when L4-pinned work holds it already (pods with a product nodeSelector).
    held = [GpuNode(f"l4-{i}", "l4", POOL_KEY, "NVIDIA-L4", 4, 2, pinned=2) for i in range(4)]
    decision = admit(anywhere, [*cluster(), *held])
    assert isinstance(decision, Admitted) and decision.pool != "l4"
    # A job pinned to L4 itself still goes there.
    pinned = GangRequest(1, 1, gpu_product="NVIDIA-L4")
    assert admit(pinned, [*cluster(), *l4], pinned_waiting=waiting) == Admitted("l4", POOL_KEY, 15)


def test_least_loaded_picks_the_lowest_allocation_ratio() -> None:
    decision = admit(GangRequest(1, 8), cluster(h100_used=(0, 0)), policy="least-loaded")
    assert isinstance(decision, Admitted) and decision.pool == "a100"
    busy_a100 = cluster(a100_used=(8, 8, 8, 0), h100_used=(8, 0))
    # a100 would be 100% allocated, h100 too; before that a100 is at 75%, h100 at 50%
    assert admit(GangRequest(1, 8), busy_a100, policy="least-loaded") == Admitted(
        "h100", POOL_KEY, 0
    )


def test_spread_keeps_the_most_gpus_free() -> None:
    decision = admit(GangRequest(1, 2), cluster(), policy="spread")
    assert isinstance(decision, Admitted) and decision.pool == "a100"


def test_gpu_type_and_named_pool_narrow_the_choice() -> None:
    assert admit(GangRequest(1, 8, gpu_product=A100), cluster()) == Admitted("a100", POOL_KEY, 24)
    assert admit(GangRequest(1, 8, pool="a100"), cluster()) == Admitted("a100", POOL_KEY, 24)


def test_the_whole_gang_fits_or_nothing() -> None:
    decision = admit(GangRequest(3, 8, gpu_product=A100), cluster(a100_used=(8, 8, 0, 0)))
    assert isinstance(decision, Waiting)
    assert decision.reason == "InsufficientGPUs"
    assert "3 workers x 8 GPUs" in decision.message
    assert "a100: 16 of 32 free" in decision.message


def test_free_gpus_on_different_nodes_do_not_hold_one_worker() -> None:
    decision = admit(GangRequest(1, 8, pool="a100"), cluster(a100_used=(4, 4, 4, 4)))
    assert isinstance(decision, Waiting) and decision.reason == "InsufficientGPUs"


def test_a_gang_larger_than_any_pool_says_so() -> None:
    decision = admit(GangRequest(5, 8, gpu_product=A100), cluster())
    assert isinstance(decision, Waiting)
    assert decision.reason == "ExceedsPoolCapacity"
    assert "a100: 4 nodes of 8 GPUs" in decision.message
    assert "fewer workers" in decision.message


@pytest.mark.parametrize(
    "request_",
    [GangRequest(1, 8, pool="v100"), GangRequest(1, 8, gpu_product="NVIDIA-L4")],
    ids=["unknown pool", "unknown product"],
)
def test_nothing_matching_names_the_field_to_check(request_: GangRequest) -> None:
    decision = admit(request_, cluster())
    assert isinstance(decision, Waiting) and decision.reason == "NoMatchingPool"
    assert "resources.gpuType" in decision.message


def test_reservations_hold_gpus_of_admitted_jobs_not_yet_bound() -> None:
    reserved = [Reservation("h100", workers=2, gpus_per_worker=8, gpu_product=H100)]
    decision = admit(GangRequest(1, 8), cluster(), reserved)
    assert decision == Admitted("a100", POOL_KEY, 24)  # h100 is taken, though no pod runs yet


@given(
    used=st.lists(st.integers(0, 8), min_size=6, max_size=6),
    workers=st.integers(1, 6),
    gpus=st.sampled_from([1, 2, 4, 8]),
    policy=st.sampled_from(["binpack", "least-loaded", "spread"]),
)
def test_admission_never_overcommits_a_node(
    used: list[int], workers: int, gpus: int, policy: Any
) -> None:
    inventory = cluster(tuple(used[:4]), tuple(used[4:]))
    decision = admit(GangRequest(workers, gpus), inventory, policy=policy)
    free_slots = {
        pool: sum(n.free // gpus for n in inventory if n.pool == pool) for pool in ("a100", "h100")
    }
    if isinstance(decision, Admitted):
        assert free_slots[decision.pool] >= workers
    else:
        assert all(slots < workers for slots in free_slots.values())


# --------------------------------------------------------------------------- from the cluster


def node_manifest(
    name: str, labels: dict[str, str], gpus: str | None, **spec: Any
) -> dict[str, Any]:
    allocatable = {"cpu": "32"} | ({"nvidia.com/gpu": gpus} if gpus else {})
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"allocatable": allocatable},
    }


def pod_manifest(
    node_name: str | None, gpus: int, phase: str = "Running", job: str | None = None
) -> dict[str, Any]:
    """A Pod as the API server lists it (the handler parses each into a PodView once)."""
    labels = {"training.kubeflow.org/job-name": job} if job else {}
    return {
        "metadata": {"name": "p", "namespace": "team", "labels": labels},
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {"phase": phase},
    }


def test_inventory_counts_bound_unfinished_pods_on_pool_nodes() -> None:
    gpu_taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    nodes = [
        node_manifest(
            "a-0", {POOL_KEY: "a100", LABELS.gpu_product_label: A100}, "8", taints=[gpu_taint]
        ),
        node_manifest("k-0", {"karpenter.sh/nodepool": "spot"}, "4"),
        node_manifest("cpu-0", {POOL_KEY: "cpu"}, None),  # no GPUs: not in the inventory
        node_manifest("a-1", {POOL_KEY: "a100"}, "8", unschedulable=True),  # cordoned
        node_manifest("x-0", {}, "8"),  # names no pool
    ]
    pods = [
        pod_manifest("a-0", 2),
        pod_manifest("a-0", 3, phase="Succeeded"),  # finished: frees its GPUs
        pod_manifest(None, 8),  # not bound: a reservation's business, not usage
        pod_manifest("k-0", 1, phase="Pending"),  # bound, still starting: holds its GPU
        pod_manifest("k-0", 1) | {"spec": {"nodeName": "k-0", "containers": [{}]}},  # no GPU
    ]
    # A pod that asked for the product by name holds pinned GPUs.
    pinned = pod_manifest("a-0", 4)
    pinned["spec"]["nodeSelector"] = {LABELS.gpu_product_label: A100}
    pods.append(pinned)
    inventory = build_inventory(nodes, [PodView.model_validate(p) for p in pods], LABELS)
    assert inventory == [
        GpuNode("a-0", "a100", POOL_KEY, A100, allocatable=8, used=6, pinned=4),
        GpuNode("k-0", "spot", "karpenter.sh/nodepool", None, allocatable=4, used=1),
    ]


def pytorchjob(
    name: str, pool: str | None, workers: int, conditions: tuple[str, ...] = ()
) -> dict[str, Any]:
    template = {
        "spec": {
            "nodeSelector": {LABELS.gpu_product_label: A100},
            # A number, as a custom resource's template may keep it (pods have strings).
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": 8}}}],
        }
    }
    return {
        "metadata": {
            "name": name,
            "namespace": "team",
            "labels": {"lepton.ai/pool": pool} if pool else {},
        },
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "template": template},
                "Worker": {"replicas": workers - 1, "template": template},
            }
        },
        "status": {"conditions": [{"type": c, "status": "True"} for c in conditions]},
    }


def test_reservations_are_the_unbound_workers_of_unfinished_admitted_jobs() -> None:
    jobs = [
        pytorchjob("waiting", "a100", workers=3),
        pytorchjob("done", "a100", workers=2, conditions=("Created", "Succeeded")),
        pytorchjob("unplaced", None, workers=2),
        pytorchjob("deleted", "a100", workers=2)
        | {"metadata": {"name": "deleted", "deletionTimestamp": "2026-11-27T04:00:00Z"}},
        # Ran, then lost its pods (its namespace is going): no pod is about to appear.
        pytorchjob("orphaned", "a100", workers=2, conditions=("Created", "Running")),
        # Ran, and a restarted worker waits for a node again.
        pytorchjob("restarting", "h100", workers=2, conditions=("Created", "Running")),
    ]
    pods = [
        pod_manifest("a-0", 8, job="waiting"),
        pod_manifest(None, 8, job="waiting"),
        pod_manifest("h-0", 8, job="restarting"),
        pod_manifest(None, 8, phase="Pending", job="restarting"),
    ]
    views = [PodView.model_validate(p) for p in pods]
    assert reservations_from(jobs, views, "lepton.ai/pool", LABELS.gpu_product_label) == [
        # waiting: 3 workers, 1 bound, 1 waiting for a node, 1 not created yet
        Reservation("a100", 2, 8, A100, namespace="team", job="waiting"),
        Reservation("h100", 1, 8, A100, namespace="team", job="restarting"),
    ]
