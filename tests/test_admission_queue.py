"""The admission queue's passes (pure): order, one decision after another, starvation bound."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from lepton_operator.scheduling.admission import Admitted, GangRequest, Waiting, fit
from lepton_operator.scheduling.inventory import pools
from lepton_operator.scheduling.queue import (
    PassDecision,
    QueuedGang,
    QueuedJob,
    admission_order,
    plan_pass,
    queue_positions,
)
from tests.test_scheduling import A100, cluster, node

STARVATION = 600.0


def gang(
    name: str,
    workers: int,
    gpus: int,
    second: int = 0,
    priority: int = 0,
    pool: str | None = None,
    product: str | None = None,
) -> QueuedGang:
    created = f"2026-12-01T10:00:{second:02d}Z"
    return QueuedGang(
        QueuedJob(created, "team", name, "LeptonTrainingJob"),
        GangRequest(workers, gpus, gpu_product=product, pool=pool),
        priority=priority,
        queued_at=float(second),
    )


def admitted(decisions: Sequence[tuple[QueuedGang, PassDecision]]) -> dict[str, str]:
    return {g.job.name: d.pool for g, d in decisions if isinstance(d, Admitted)}


def test_order_is_priority_then_arrival() -> None:
    gangs = [
        gang("late-high", 1, 1, second=9, priority=100),
        gang("early", 1, 1, second=1),
        gang("late", 1, 1, second=5),
        gang("early-low", 1, 1, second=0, priority=-5),
    ]
    assert [g.job.name for g in admission_order(gangs)] == [
        "late-high", "early", "late", "early-low",
    ]  # fmt: skip


def test_gangs_that_each_fill_a_pool_are_admitted_one_at_a_time() -> None:
    # Three 4 x 8 gangs, each filling a100 (4 x 8) on its own, decided in one pass.
    gangs = [gang(f"g{i}", 4, 8, second=i, product=A100) for i in range(3)]
    decisions = plan_pass(gangs, cluster(), [], now=10, starvation_seconds=STARVATION)
    assert admitted(decisions) == {"g0": "a100"}
    waiting = [(g.job.name, d.reason) for g, d in decisions if isinstance(d, Waiting)]
    assert waiting == [("g1", "InsufficientGPUs"), ("g2", "InsufficientGPUs")]
    positions = queue_positions(decisions)
    assert [positions[g.job] for g in gangs[1:]] == [1, 2]


def test_a_higher_priority_gang_goes_first_even_when_it_came_later() -> None:
    gangs = [gang("first", 4, 8, second=0, product=A100),
             gang("urgent", 4, 8, second=5, priority=1000, product=A100)]  # fmt: skip
    decisions = plan_pass(gangs, cluster(), [], now=10, starvation_seconds=STARVATION)
    assert admitted(decisions) == {"urgent": "a100"}


def test_small_jobs_backfill_until_the_big_one_has_waited_too_long() -> None:
    # a100: one node busy, three with 4 of 8 free (12 free, but no node holds an 8-GPU worker).
    busy = [node("a100", 0, used=8), *(node("a100", i, used=4) for i in (1, 2, 3))]
    big = gang("big", 1, 8, second=0, pool="a100")
    small = gang("small", 1, 4, second=30, pool="a100")
    early = plan_pass([big, small], busy, [], now=60, starvation_seconds=STARVATION)
    assert admitted(early) == {"small": "a100"}  # backfill: it cannot fit anyway yet
    late = plan_pass([big, small], busy, [], now=STARVATION + 1, starvation_seconds=STARVATION)
    assert admitted(late) == {}
    held = dict((g.job.name, d) for g, d in late)["small"]
    assert isinstance(held, Waiting)
    assert "held for LeptonTrainingJob team/big" in held.message


def test_a_held_pool_does_not_stop_jobs_that_fit_elsewhere() -> None:
    busy = [*(node("a100", i, used=4) for i in range(4)), node("h100", 0, used=0, product="H")]
    big = gang("big", 1, 8, second=0, product=A100)
    small = gang("small", 1, 4, second=30)
    decisions = plan_pass([big, small], busy, [], now=STARVATION + 1, starvation_seconds=STARVATION)
    assert admitted(decisions) == {"small": "h100"}


@settings(max_examples=150, deadline=None)
@given(
    used=st.lists(st.integers(0, 8), min_size=2, max_size=6),
    requests=st.lists(st.tuples(st.integers(1, 4), st.sampled_from([1, 2, 4, 8])), max_size=12),
    waited=st.floats(0, 2 * STARVATION),
)
def test_everything_admitted_in_one_pass_fits_at_once(
    used: list[int], requests: list[tuple[int, int]], waited: float
) -> None:
    inventory = [node("a100", i, used=u) for i, u in enumerate(used)] + [
        node("h100", 0, used=used[0] // 2, product="H")
    ]
    gangs = [gang(f"j{i}", w, g, second=i) for i, (w, g) in enumerate(requests)]
    decisions = plan_pass(gangs, inventory, [], now=waited, starvation_seconds=STARVATION)
    # Replaying the admitted gangs onto the free GPUs, node by node, never runs out.
    free = {pool: [n.free for n in nodes] for pool, nodes in pools(inventory).items()}
    for g, d in decisions:
        if isinstance(d, Admitted):
            placed = fit(free[d.pool], g.request.workers, g.request.gpus_per_worker)
            assert placed is not None, f"{g.job.name} was admitted onto GPUs already taken"
            free[d.pool] = placed
    # ... and a gang that waits did not fit in what was left, unless a pool is held for one.
    held = any("is held for" in d.message for _, d in decisions if isinstance(d, Waiting))
    for g, d in decisions:
        if isinstance(d, Waiting) and not held:
            fits = [fit(f, g.request.workers, g.request.gpus_per_worker) for f in free.values()]
            assert all(f is None for f in fits), f"{g.job.name} waits but fits"


@settings(max_examples=200, deadline=None)
@given(
    used=st.lists(st.integers(0, 8), min_size=1, max_size=5),
    requests=st.lists(
        st.tuples(st.integers(1, 4), st.sampled_from([1, 2, 4, 8]), st.integers(0, 3)),
        max_size=10,
    ),
)
def test_a_lower_priority_gang_never_takes_what_a_higher_one_could_use(
    used: list[int], requests: list[tuple[int, int, int]]
) -> None:
    inventory = [node("a100", i, used=u) for i, u in enumerate(used)]
    gangs = [gang(f"j{i}", w, g, second=i, priority=p) for i, (w, g, p) in enumerate(requests)]
    decisions = plan_pass(gangs, inventory, [], now=0, starvation_seconds=STARVATION)
    assert [g for g, _ in decisions] == admission_order(gangs)
    for index, (waiting, decision) in enumerate(decisions):
        if isinstance(decision, Admitted):
            continue
        # Only what was admitted before it in the order: it did not fit there either.
        free = [n.free for n in inventory]
        for earlier, outcome in decisions[:index]:
            if isinstance(outcome, Admitted):
                placed = fit(free, earlier.request.workers, earlier.request.gpus_per_worker)
                assert placed is not None
                free = placed
        request = waiting.request
        assert fit(free, request.workers, request.gpus_per_worker) is None, waiting.job.name


def _simulate(
    nodes: int, small_every: int, small_duration: int, starvation: float, horizon: int
) -> int | None:
    """One pool of 8-GPU nodes kept busy by a stream of 1-GPU jobs; a 1 x 8 gang arrives at
    t=1. Returns when the gang was admitted (None: never, within the horizon)."""
    inventory = [node("a100", i) for i in range(nodes)]
    running: list[tuple[int, int]] = []  # (ends at, node index)
    queue: list[QueuedGang] = []
    # Start from a pool where every node carries some 1-GPU work, so no 8-GPU node is free.
    for index in range(nodes):
        inventory[index] = node("a100", index, used=1)
        running.append((small_duration, index))
    counter = 0
    for now in range(horizon):
        for ends, index in [r for r in running if r[0] <= now]:
            running.remove((ends, index))
            inventory[index] = node("a100", index, used=inventory[index].used - 1)
        if now == 1:
            queue.append(gang("big", 1, 8, second=1))
        if now % small_every == 0:
            counter += 1
            queue.append(
                QueuedGang(
                    QueuedJob(f"2026-12-01T11:{counter:06d}Z", "team", f"s{counter}", "Job"),
                    GangRequest(1, 1),
                    queued_at=float(now),
                )
            )
        decisions = plan_pass(queue, inventory, [], float(now), starvation)
        for g, d in decisions:
            if not isinstance(d, Admitted):
                continue
            if g.job.name == "big":
                return now
            # kube-scheduler binds it best fit: the busiest node that still has a GPU free.
            index = min(
                (i for i, n in enumerate(inventory) if n.free >= 1),
                key=lambda i: (inventory[i].free, i),
            )
            inventory[index] = node("a100", index, used=inventory[index].used + 1)
            running.append((now + small_duration, index))
            queue.remove(g)
    return None


@settings(max_examples=60, deadline=None)
@given(
    nodes=st.integers(1, 4),
    small_every=st.integers(1, 3),
    small_duration=st.integers(2, 12),
    starvation=st.integers(1, 30),
)
def test_no_gang_waits_longer_than_the_bound_plus_the_longest_running_job(
    nodes: int, small_every: int, small_duration: int, starvation: int
) -> None:
    started = _simulate(nodes, small_every, small_duration, starvation, horizon=200)
    # Once its pool is held, nothing new starts there: it fits when the jobs running then end.
    assert started is not None
    assert started <= 1 + starvation + small_duration


def test_without_the_bound_small_jobs_can_starve_a_gang_forever() -> None:
    # The same stream, but the pool is never held: some 1-GPU job always sits on every node.
    assert _simulate(2, 1, 10, starvation=float("inf"), horizon=300) is None
    assert _simulate(2, 1, 10, starvation=30, horizon=300) is not None
