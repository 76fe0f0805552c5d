"""Gang-aware admission: a job's workers all fit on the nodes of one pool, or it waits.

Admission is the operator's decision, made before anything is created, so a job never holds
part of a pool while the rest of its workers wait (the deadlock gang scheduling prevents).
kube-scheduler still binds each pod, within the pool the decision names.

Capacity counts per node, not per pool: eight free GPUs spread over two nodes do not hold a
worker that needs eight. Jobs admitted earlier whose pods are not bound yet hold a
reservation, so two jobs never count the same free GPUs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from lepton_operator.scheduling.inventory import GpuNode, pools

Policy = Literal["binpack", "least-loaded", "spread"]


@dataclass(frozen=True)
class GangRequest:
    """What a distributed job needs: `workers` pods of `gpus_per_worker` GPUs each."""

    workers: int
    gpus_per_worker: int
    gpu_product: str | None = None  # None: any product
    pool: str | None = None  # None: the policy chooses


@dataclass(frozen=True)
class Reservation:
    """The workers of an admitted job that kube-scheduler has not bound to a node yet."""

    pool: str
    workers: int
    gpus_per_worker: int
    gpu_product: str | None = None
    namespace: str | None = None  # whose: the child (PyTorchJob, Deployment) it is for
    job: str | None = None


@dataclass(frozen=True)
class Admitted:
    """The job fits: run it on this pool (the label key is the one its nodes carry)."""

    pool: str
    pool_label: str
    free_gpus_after: int


@dataclass(frozen=True)
class Waiting:
    """The job does not fit now; the reason and message say why and what would help."""

    reason: Literal["NoMatchingPool", "ExceedsPoolCapacity", "InsufficientGPUs"]
    message: str


Decision = Admitted | Waiting


def fit(free: Sequence[int], workers: int, gpus_per_worker: int) -> list[int] | None:
    """Free GPUs per node after placing the workers best-fit, or None if they do not all fit.

    Each worker goes to the node with the fewest free GPUs that still holds it, which keeps
    whole nodes free for later large workers. For identical workers this places as many as
    any order could: a node holds free // gpus_per_worker of them whatever else it holds.
    """
    remaining = list(free)
    if gpus_per_worker <= 0:
        return remaining
    for _ in range(workers):
        holders = [i for i, gpus in enumerate(remaining) if gpus >= gpus_per_worker]
        if not holders:
            return None
        chosen = min(holders, key=lambda i: (remaining[i], i))
        remaining[chosen] -= gpus_per_worker
    return remaining


def _matches(node: GpuNode, gpu_product: str | None) -> bool:
    return gpu_product is None or node.gpu_product == gpu_product


def _free_after_reservations(
    nodes: Sequence[GpuNode], reservations: Sequence[Reservation]
) -> list[int]:
    free = [node.free for node in nodes]
    for reservation in reservations:
        eligible = [i for i, node in enumerate(nodes) if _matches(node, reservation.gpu_product)]
        for _ in range(reservation.workers):
            # A reservation that no longer fits (the pool shrank) holds what it can, no more.
            placed = fit([free[i] for i in eligible], 1, reservation.gpus_per_worker)
            if placed is None:
                break
            for index, gpus in zip(eligible, placed, strict=True):
                free[index] = gpus
    return free


@dataclass(frozen=True)
class _Candidate:
    pool: str
    pool_label: str
    capacity: int
    free_before: int
    free_after: int
    whole_nodes_taken: int
    left_on_touched_nodes: int
    pinned_share: (
        float  # of the pool's GPUs, those that jobs pinned to its GPU product hold or want
    )


def pinned_demand(requests: Iterable[GangRequest]) -> dict[str, int]:
    """GPUs that these (waiting) requests ask for, per GPU product they are pinned to."""
    demand: dict[str, int] = {}
    for request in requests:
        if request.gpu_product is not None:
            gpus = request.workers * request.gpus_per_worker
            demand[request.gpu_product] = demand.get(request.gpu_product, 0) + gpus
    return demand


def _pinned_share(
    nodes: Sequence[GpuNode],
    reservations: Sequence[Reservation],
    pinned_waiting: Mapping[str, int],
) -> float:
    """How much of a pool jobs that can run only on its GPU product hold, reserve or wait for."""
    capacity = sum(n.allocatable for n in nodes) or 1
    products = {n.gpu_product for n in nodes if n.gpu_product is not None}
    held = sum(n.pinned for n in nodes)
    reserved = sum(r.workers * r.gpus_per_worker for r in reservations if r.gpu_product is not None)
    waiting = sum(gpus for product, gpus in pinned_waiting.items() if product in products)
    return (held + reserved + waiting) / capacity


def _score(candidate: _Candidate, policy: Policy, pinned: bool) -> tuple[float | str, ...]:
    if policy == "binpack":
        # A job that runs on any GPU first avoids the pools that jobs pinned to one GPU product
        # hold or wait for (the only place those can run); with no pinned demand, pure best fit.
        first = () if pinned else (candidate.pinned_share,)
        # Best fit across pools, node by node: the nodes the job lands on keep the fewest GPUs
        # free (a 1-GPU worker goes to a 4-GPU node, not an 8-GPU one), then the fewest
        # whole nodes are broken into, then the fullest pool wins. Whole 8-GPU nodes stay
        # free for the large workers that need them.
        return (
            *first,
            candidate.left_on_touched_nodes,
            candidate.whole_nodes_taken,
            candidate.free_after,
            candidate.pool,
        )
    if policy == "least-loaded":  # lowest allocation ratio now: the original Lepton rule
        return (1 - candidate.free_before / candidate.capacity, candidate.pool)
    return (-candidate.free_after, candidate.pool)  # spread: most GPUs left free


def admit(
    request: GangRequest,
    inventory: Sequence[GpuNode],
    reservations: Sequence[Reservation] = (),
    policy: Policy = "binpack",
    pinned_waiting: Mapping[str, int] | None = None,
) -> Decision:
    """Where the whole gang fits now, chosen by the policy; else why it waits.

    `pinned_waiting`: GPUs that queued jobs pinned to a GPU product (by product) wait for;
    binpack keeps their pools for them when the job can run anywhere.
    """
    shape = _describe(request)
    candidates: list[_Candidate] = []
    could_ever_fit = False
    matching_pools = 0
    for pool, nodes in pools(inventory).items():
        if request.pool is not None and pool != request.pool:
            continue
        eligible = [n for n in nodes if _matches(n, request.gpu_product)]
        if not eligible:
            continue
        matching_pools += 1
        everything = [n.allocatable for n in eligible]
        if fit(everything, request.workers, request.gpus_per_worker) is None:
            continue
        could_ever_fit = True
        pool_reservations = [r for r in reservations if r.pool == pool]
        free = _free_after_reservations(nodes, pool_reservations)
        eligible_index = [i for i, n in enumerate(nodes) if _matches(n, request.gpu_product)]
        placed = fit([free[i] for i in eligible_index], request.workers, request.gpus_per_worker)
        if placed is None:
            continue
        free_after = sum(free) - sum(free[i] for i in eligible_index) + sum(placed)
        touched = [
            (i, after) for i, after in zip(eligible_index, placed, strict=True) if after < free[i]
        ]
        whole_nodes_taken = sum(1 for i, _ in touched if free[i] == nodes[i].allocatable)
        left_on_touched_nodes = sum(after for _, after in touched)
        candidates.append(
            _Candidate(
                pool,
                nodes[0].pool_label,
                capacity=sum(n.allocatable for n in nodes),
                free_before=sum(free),
                free_after=free_after,
                whole_nodes_taken=whole_nodes_taken,
                left_on_touched_nodes=left_on_touched_nodes,
                pinned_share=_pinned_share(nodes, pool_reservations, pinned_waiting or {}),
            )
        )
    if candidates:
        pinned = request.gpu_product is not None
        best = min(candidates, key=lambda c: _score(c, policy, pinned))
        return Admitted(best.pool, best.pool_label, best.free_after)
    if matching_pools == 0:
        return Waiting("NoMatchingPool", f"no node pool has {_where(request)}: {_fix(request)}")
    if not could_ever_fit:
        return Waiting(
            "ExceedsPoolCapacity",
            f"{shape} do not fit on any one pool with {_where(request)} even when it is idle "
            f"({_capacity_summary(inventory, request)}): use fewer workers or fewer GPUs per "
            "worker, or grow the pool",
        )
    return Waiting(
        "InsufficientGPUs",
        f"{shape} do not fit on the free GPUs of any pool with {_where(request)} "
        f"({_free_summary(inventory, reservations, request)}); the job starts when they do",
    )


def _describe(request: GangRequest) -> str:
    noun = "worker" if request.workers == 1 else "workers"
    return f"{request.workers} {noun} x {request.gpus_per_worker} GPUs"


def _where(request: GangRequest) -> str:
    parts = []
    if request.pool is not None:
        parts.append(f"the name {request.pool!r}")
    if request.gpu_product is not None:
        parts.append(f"GPUs of type {request.gpu_product!r}")
    return " and ".join(parts) if parts else "GPUs"


def _fix(request: GangRequest) -> str:
    if request.pool is not None:
        return "check scheduling.nodePool (or set it to auto) and resources.gpuType"
    return "check resources.gpuType against the nodes' nvidia.com/gpu.product labels"


def _capacity_summary(inventory: Sequence[GpuNode], request: GangRequest) -> str:
    parts = []
    for pool, nodes in pools(inventory).items():
        eligible = [n for n in nodes if _matches(n, request.gpu_product)]
        if eligible and (request.pool is None or pool == request.pool):
            sizes = sorted({n.allocatable for n in eligible}, reverse=True)
            parts.append(f"{pool}: {len(eligible)} nodes of {'/'.join(str(s) for s in sizes)} GPUs")
    return "; ".join(parts)


def _free_summary(
    inventory: Sequence[GpuNode], reservations: Sequence[Reservation], request: GangRequest
) -> str:
    parts = []
    for pool, nodes in pools(inventory).items():
        if request.pool is not None and pool != request.pool:
            continue
        free = _free_after_reservations(nodes, [r for r in reservations if r.pool == pool])
        eligible = [f for f, n in zip(free, nodes, strict=True) if _matches(n, request.gpu_product)]
        if eligible:
            capacity = sum(n.allocatable for n in nodes if _matches(n, request.gpu_product))
            parts.append(f"{pool}: {sum(eligible)} of {capacity} free")
    return "; ".join(parts)
