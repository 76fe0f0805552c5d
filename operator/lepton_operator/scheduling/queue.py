"""The admission queue's order and one pass of decisions over it (pure, no I/O).

Order: higher priority first (the value of the job's PriorityClass), then earlier arrival.
A pass walks the queue in that order and admits every gang that fits, each admission's
GPUs reserved before the next decision. A smaller job may start ahead of a larger one that
does not fit yet (backfill), but not forever: once the first job that does not fit has waited
`starvation_seconds`, the pool it would run on is held for it, and jobs behind it start only
elsewhere. The GPUs that free up there then add up for it until it fits.

With preemption on, a gang that does not fit may evict whole jobs of lower priority
(scheduling/preemption.py); that pool is then held for it, as for a starving job, until the
evicted jobs' GPUs are free and it starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lepton_operator.scheduling.admission import (
    Admitted,
    Decision,
    GangRequest,
    Policy,
    Reservation,
    Waiting,
    admit,
    pinned_demand,
)
from lepton_operator.scheduling.inventory import GpuNode
from lepton_operator.scheduling.preemption import Preemption, RunningGang, plan_preemption


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


@dataclass(frozen=True)
class Preempting:
    """The gang waits for the GPUs of the jobs it evicts; its pool is held for it meanwhile."""

    preemption: Preemption
    reason: str = "Preempting"

    @property
    def message(self) -> str:
        victims = ", ".join(
            f"{v.owner_kind} {v.namespace}/{v.owner_name}" for v in self.preemption.victims
        )
        return (
            f"evicting lower-priority {victims} from pool {self.preemption.pool!r}; the job "
            "starts once their GPUs are free"
        )


PassDecision = Decision | Preempting


@dataclass(frozen=True)
class _Hold:
    """A pool kept for one gang: gangs after it in admission order do not start there."""

    owner: QueuedGang
    why: str


def _order_key(gang: QueuedGang) -> tuple[int, QueuedJob]:
    return (-gang.priority, gang.job)


def plan_pass(
    gangs: Iterable[QueuedGang],
    inventory: Sequence[GpuNode],
    reservations: Sequence[Reservation],
    now: float,
    starvation_seconds: float,
    *,
    nominated: Mapping[QueuedGang, str] | None = None,
    running: Sequence[RunningGang] | None = None,
) -> list[tuple[QueuedGang, PassDecision]]:
    """Every queued gang with its decision, in admission order.

    `nominated`: gangs that evicted jobs earlier and wait for those GPUs, with their pool,
    which is held for them (also while they are not decided on: backing off after a refusal).
    `running`: the jobs preemption may evict (None: preemption off); at most one gang preempts
    per pass, and only one that nothing is nominated for yet.
    """
    ordered = admission_order(gangs)
    nominated_jobs = {gang.job for gang in nominated or {}}
    held = list(reservations)
    holds: dict[str, _Hold] = {
        pool: _Hold(gang, "which preempted jobs there") for gang, pool in (nominated or {}).items()
    }
    starving_held = False
    # What waiting pinned jobs need, as of the pass's start: binpack keeps it for them.
    pinned = pinned_demand(g.request for g in ordered)
    # Within a pass nothing frees up: once a shape has failed, the same shape behind it fails
    # the same way until something is admitted (which only takes GPUs) or a pool is held.
    failed: dict[tuple[GangRequest, Policy], Waiting] = {}
    decisions: list[tuple[QueuedGang, PassDecision]] = []
    for gang in ordered:
        shape = (gang.request, gang.policy)
        decision: Decision = failed.get(shape) or _decide(gang, inventory, held, holds, pinned)
        outcome: PassDecision = decision
        if isinstance(decision, Admitted):
            held.append(reservation_for(gang, decision))
            failed.clear()
            decisions.append((gang, decision))
            continue
        failed[shape] = decision
        if decision.reason != "InsufficientGPUs" or gang.job in nominated_jobs:
            decisions.append((gang, decision))
            continue
        plan = None
        if running is not None:
            plan = plan_preemption(
                gang.request,
                priority=gang.priority,
                policy=gang.policy,
                inventory=inventory,
                reservations=held,
                running=running,
            )
        if plan is not None:
            outcome = Preempting(plan)
            holds[plan.pool] = _Hold(gang, "which preempted jobs there")
            running = None  # one preemption per pass: the next pass sees what it freed
            failed.clear()
        elif not starving_held and now - gang.queued_at >= starvation_seconds:
            pool = admit(gang.request, _idle(inventory), (), gang.policy)
            if isinstance(pool, Admitted) and pool.pool not in holds:
                holds[pool.pool] = _Hold(gang, "which has waited longest")
                starving_held = True
                failed.clear()
        decisions.append((gang, outcome))
    return decisions


def _decide(
    gang: QueuedGang,
    inventory: Sequence[GpuNode],
    held: Sequence[Reservation],
    holds: Mapping[str, _Hold],
    pinned: Mapping[str, int],
) -> Decision:
    def blocked(pool: str) -> bool:
        hold = holds.get(pool)
        return hold is not None and _order_key(hold.owner) < _order_key(gang)

    decision = admit(gang.request, inventory, held, gang.policy, pinned)
    if not isinstance(decision, Admitted) or not blocked(decision.pool):
        return decision
    elsewhere = admit(
        gang.request, [n for n in inventory if not blocked(n.pool)], held, gang.policy, pinned
    )
    if isinstance(elsewhere, Admitted):
        return elsewhere
    hold = holds[decision.pool]
    owner = hold.owner.job
    return Waiting(
        "InsufficientGPUs",
        f"pool {decision.pool!r} is held for {owner.kind} {owner.namespace}/{owner.name}, "
        f"{hold.why}; this job starts after it, or elsewhere when another pool frees up",
    )


def queue_positions(
    decisions: Sequence[tuple[QueuedGang, PassDecision]],
) -> dict[QueuedJob, int]:
    """1-based position of every gang still waiting after the pass, in admission order."""
    waiting = [gang.job for gang, decision in decisions if not isinstance(decision, Admitted)]
    return {job: index for index, job in enumerate(waiting, start=1)}
