"""The admission queue's order and one pass of decisions over it (pure, no I/O).

Order: higher priority first (the value of the job's PriorityClass), then earlier arrival.
A pass walks the queue in that order and admits every gang that fits, each admission's
GPUs reserved before the next decision. A smaller job may start ahead of a larger one that
does not fit yet (backfill), but not forever: once the first job that does not fit has waited
`starvation_seconds`, the pool it would run on is held for it, and jobs behind it start only
elsewhere. The GPUs that free up there then add up for it until it fits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lepton_operator.scheduling.admission import (
    Admitted,
    Decision,
    GangRequest,
    Policy,
    Reservation,
    Waiting,
    admit,
)
from lepton_operator.scheduling.inventory import GpuNode


@dataclass(frozen=True, order=True)
class QueuedJob:
    """A job in the queue, ordered by when it was created (RFC 3339 UTC sorts as text)."""

    created: str
    namespace: str
    name: str
    kind: str


@dataclass(frozen=True)
class QueuedGang:
    """A queued job and what it asks for; `queued_at` is on the caller's clock (seconds)."""

    job: QueuedJob
    request: GangRequest
    policy: Policy = "binpack"
    priority: int = 0
    queued_at: float = 0.0


def admission_order(gangs: Iterable[QueuedGang]) -> list[QueuedGang]:
    """Priority (highest first), then arrival, then name: the same order on every pass."""
    return sorted(gangs, key=lambda g: (-g.priority, g.job))


def reservation_for(gang: QueuedGang, admitted: Admitted) -> Reservation:
    """What an admitted gang holds until kube-scheduler binds its pods."""
    request = gang.request
    return Reservation(admitted.pool, request.workers, request.gpus_per_worker, request.gpu_product)


def _idle(inventory: Sequence[GpuNode]) -> list[GpuNode]:
    return [
        GpuNode(n.name, n.pool, n.pool_label, n.gpu_product, n.allocatable, used=0)
        for n in inventory
    ]


def plan_pass(
    gangs: Iterable[QueuedGang],
    inventory: Sequence[GpuNode],
    reservations: Sequence[Reservation],
    now: float,
    starvation_seconds: float,
) -> list[tuple[QueuedGang, Decision]]:
    """Every queued gang with its decision, in admission order."""
    held = list(reservations)
    held_pools: dict[str, QueuedJob] = {}  # pool -> the starving job it is kept for
    # Within a pass nothing frees up: once a shape has failed, the same shape behind it fails
    # the same way until something is admitted (which only takes GPUs) or a pool is held.
    failed: dict[tuple[GangRequest, Policy], Waiting] = {}
    decisions: list[tuple[QueuedGang, Decision]] = []
    for gang in admission_order(gangs):
        shape = (gang.request, gang.policy)
        decision: Decision = failed.get(shape) or _decide(gang, inventory, held, held_pools)
        if isinstance(decision, Admitted):
            held.append(reservation_for(gang, decision))
            failed.clear()
        else:
            failed[shape] = decision
            starving = now - gang.queued_at >= starvation_seconds
            if starving and decision.reason == "InsufficientGPUs" and not held_pools:
                pool = admit(gang.request, _idle(inventory), (), gang.policy)
                if isinstance(pool, Admitted):
                    held_pools[pool.pool] = gang.job
                    failed.clear()
        decisions.append((gang, decision))
    return decisions


def _decide(
    gang: QueuedGang,
    inventory: Sequence[GpuNode],
    held: Sequence[Reservation],
    held_pools: dict[str, QueuedJob],
) -> Decision:
    decision = admit(gang.request, inventory, held, gang.policy)
    if not isinstance(decision, Admitted) or decision.pool not in held_pools:
        return decision
    elsewhere = admit(
        gang.request, [n for n in inventory if n.pool not in held_pools], held, gang.policy
    )
    if isinstance(elsewhere, Admitted):
        return elsewhere
    starving = held_pools[decision.pool]
    return Waiting(
        "InsufficientGPUs",
        f"pool {decision.pool!r} is held for {starving.kind} {starving.namespace}/"
        f"{starving.name}, which has waited longest; this job starts after it, or elsewhere "
        "when another pool frees up",
    )


def queue_positions(decisions: Sequence[tuple[QueuedGang, Decision]]) -> dict[QueuedJob, int]:
    """1-based position of every gang still waiting after the pass, in admission order."""
    waiting = [gang.job for gang, decision in decisions if not isinstance(decision, Admitted)]
    return {job: index for index, job in enumerate(waiting, start=1)}
