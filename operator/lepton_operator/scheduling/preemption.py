"""Gang preemption (pure): which whole jobs to evict so that a higher-priority gang fits.

A waiting gang may evict jobs of strictly lower priority in one pool, never part of a job:
every pod of a victim goes, and so does what it still reserves. Victims are taken lowest
priority first, youngest first among equals, until the gang fits; then each victim that is
not needed after all (the most valuable first) is spared again, so no victim is evicted in
vain. Nothing is evicted when even evicting every candidate would not make the gang fit.
Of the pools where it can fit, the one whose victims matter least wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from lepton_operator.scheduling.admission import (
    Admitted,
    GangRequest,
    Policy,
    Reservation,
    admit,
)
from lepton_operator.scheduling.inventory import GpuNode, pools


@dataclass(frozen=True)
class RunningGang:
    """An admitted Lepton job holding GPUs: the unit preemption evicts."""

    namespace: str
    child: str  # the PyTorchJob's name
    owner_kind: str
    owner_name: str
    priority: int
    created: str  # the PyTorchJob's creationTimestamp (RFC 3339 UTC sorts as text)
    pool: str
    held: tuple[tuple[str, int], ...]  # (node, GPUs) its bound pods hold
    reserved: Reservation | None = None  # its workers not bound to a node yet

    @property
    def gpus(self) -> int:
        held = sum(gpus for _, gpus in self.held)
        reserved = self.reserved.workers * self.reserved.gpus_per_worker if self.reserved else 0
        return held + reserved


@dataclass(frozen=True)
class Preemption:
    """Evict these (whole) jobs and the gang fits in `pool`."""

    pool: str
    victims: tuple[RunningGang, ...]


def eviction_order(candidates: Sequence[RunningGang]) -> list[RunningGang]:
    """Lowest priority first; among equals the youngest (least work lost) first."""
    youngest_first = sorted(
        candidates, key=lambda g: (g.created, g.namespace, g.child), reverse=True
    )
    return sorted(youngest_first, key=lambda g: g.priority)


def _fits_without(
    request: GangRequest,
    nodes: Sequence[GpuNode],
    reservations: Sequence[Reservation],
    victims: Sequence[RunningGang],
    policy: Policy,
) -> bool:
    """Would the gang fit on these nodes (one pool) once the victims' pods and reservations
    are gone?"""
    freed: dict[str, int] = {}
    for victim in victims:
        for node, gpus in victim.held:
            freed[node] = freed.get(node, 0) + gpus
    after = [replace(n, used=max(n.used - freed.get(n.name, 0), 0)) for n in nodes]
    remaining = list(reservations)
    for victim in victims:
        if victim.reserved is not None and victim.reserved in remaining:
            remaining.remove(victim.reserved)  # a multiset: one equal reservation per victim
    return isinstance(admit(request, after, remaining, policy), Admitted)


def plan_preemption(
    request: GangRequest,
    *,
    priority: int,
    policy: Policy,
    inventory: Sequence[GpuNode],
    reservations: Sequence[Reservation],
    running: Sequence[RunningGang],
) -> Preemption | None:
    """The least costly set of whole lower-priority jobs whose eviction makes the gang fit."""
    plans: list[Preemption] = []
    for pool, nodes in pools(inventory).items():
        if request.pool is not None and pool != request.pool:
            continue
        in_pool = replace(request, pool=pool)
        held = [r for r in reservations if r.pool == pool]
        candidates = eviction_order(
            [g for g in running if g.pool == pool and g.priority < priority]
        )

        def fits(victims: Sequence[RunningGang]) -> bool:
            return _fits_without(in_pool, nodes, held, victims, policy)  # noqa: B023 - used at once

        if not candidates or fits(()) or not fits(candidates):
            continue  # nobody to evict, nothing to evict for, or evicting all would not do
        chosen: list[RunningGang] = []
        for victim in candidates:
            chosen.append(victim)
            if fits(chosen):
                break
        for victim in reversed(list(chosen)):  # spare whom the gang does not need after all
            spared = [v for v in chosen if v is not victim]
            if fits(spared):
                chosen = spared
        plans.append(Preemption(pool, tuple(chosen)))
    if not plans:
        return None
    return min(plans, key=_cost)


def _cost(plan: Preemption) -> tuple[int, int, int, str]:
    """Evict the least valuable: lowest top priority, then fewest jobs, then fewest GPUs."""
    victims = plan.victims
    return (
        max(v.priority for v in victims),
        len(victims),
        sum(v.gpus for v in victims),
        plan.pool,
    )
