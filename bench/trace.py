"""Replay a GPU cluster trace (Alibaba's v2023 format) through the operator's own admission.

Nodes are grouped into pools by GPU model (pool = product = model). Each GPU task is one worker
of `num_gpu` GPUs (a fractional GPU, `gpu_milli` < 1000, is rounded up to a whole one); a
`gpu_spec` that lists several models is tried model by model in the order given, the first
that admits wins. CPU-only tasks are left out.

Two experiments per policy, as in the trace's paper (Weng et al., ATC'23, "Beware of
Fragmentation"):
- fill: tasks arrive in creation order and never leave; a task that fits nowhere fails and the
  next one is tried. `alloc_ratio_first_failure` is the share of GPUs allocated when the first
  task fails, `alloc_ratio_saturation` the share once every task was tried, `placed_jobs` how
  many were placed.
- replay (when the trace has times): tasks arrive at `creation_time` and leave
  `deletion_time - scheduled_time` seconds after they start; a task that does not fit waits
  in the admission queue (`scheduling.queue.plan_pass`, the operator's own queue) until
  capacity frees. `mean_wait_s` and `p95_wait_s` over the tasks that started.

`kube-default` models kube-scheduler without Lepton: no pool choice, each pod to the node with
the most free GPUs among those that fit (its default `LeastAllocated` scoring).
"""

from __future__ import annotations

import csv
import heapq
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lepton_operator.scheduling.admission import Admitted, GangRequest, Policy, admit
from lepton_operator.scheduling.inventory import GpuNode
from lepton_operator.scheduling.queue import PassDecision, QueuedGang, QueuedJob, plan_pass

POOL_LABEL = "lepton.ai/node-pool"
POLICIES: tuple[str, ...] = ("binpack", "least-loaded", "spread", "kube-default")


@dataclass(frozen=True)
class Task:
    index: int
    gpus: int
    models: tuple[str | None, ...]  # (None,): any model
    created: float | None
    duration: float | None


def load_nodes(path: Path) -> list[GpuNode]:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return [
        GpuNode(row["sn"], row["model"], POOL_LABEL, row["model"], int(row["gpu"]), 0)
        for row in rows
        if int(row["gpu"]) > 0
    ]


def load_tasks(path: Path) -> list[Task]:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    tasks = []
    for index, row in enumerate(rows):
        gpus = int(row["num_gpu"])
        if gpus <= 0:
            continue
        spec = (row.get("gpu_spec") or "").strip()
        models: tuple[str | None, ...] = tuple(spec.split("|")) if spec else (None,)
        created = float(row["creation_time"]) if row.get("creation_time") else None
        duration = None
        if row.get("deletion_time") and row.get("scheduled_time"):
            duration = max(float(row["deletion_time"]) - float(row["scheduled_time"]), 1.0)
        tasks.append(Task(index, gpus, models, created, duration))
    tasks.sort(key=lambda t: (t.created or 0.0, t.index))
    return tasks


Decide = Callable[[Task, Sequence[GpuNode]], str | None]  # the node name, or None


def operator_policy(policy: Policy, timings: list[float]) -> Decide:
    """admit() picks the pool, then the worker is bound best-fit inside it (as kube-scheduler
    with a MostAllocated GPU profile would, docs/install.md)."""

    def decide(task: Task, nodes: Sequence[GpuNode]) -> str | None:
        for model in task.models:
            started = time.perf_counter()
            decision = admit(GangRequest(1, task.gpus, gpu_product=model), nodes, (), policy)
            timings.append(time.perf_counter() - started)
            if isinstance(decision, Admitted):
                fitting = [n for n in nodes if n.pool == decision.pool and n.free >= task.gpus]
                return min(fitting, key=lambda n: (n.free, n.name)).name
        return None

    return decide


def kube_default(task: Task, nodes: Sequence[GpuNode]) -> str | None:
    fitting = [
        n for n in nodes if n.free >= task.gpus and (None in task.models or n.pool in task.models)
    ]
    return max(fitting, key=lambda n: (n.free, n.name)).name if fitting else None


def _take(node: GpuNode, task: Task, sign: int = 1) -> GpuNode:
    """The node with the task's GPUs taken (sign 1) or given back (-1); a task that allows
    only some GPU models holds pinned GPUs, which binpack keeps their pools for."""
    pinned = task.gpus if None not in task.models else 0
    return replace(node, used=node.used + sign * task.gpus, pinned=node.pinned + sign * pinned)


def _allocation(nodes: dict[str, GpuNode]) -> float:
    return sum(n.used for n in nodes.values()) / sum(n.allocatable for n in nodes.values())


def fill(nodes: list[GpuNode], tasks: list[Task], decide: Decide) -> dict[str, Any]:
    state = {n.name: n for n in nodes}
    first_failure: float | None = None
    placed = 0
    for task in tasks:
        chosen = decide(task, list(state.values()))
        if chosen is None:
            if first_failure is None:
                first_failure = _allocation(state)
            continue
        state[chosen] = _take(state[chosen], task)
        placed += 1
    return {
        "alloc_ratio_first_failure": round(first_failure, 4) if first_failure else None,
        "alloc_ratio_saturation": round(_allocation(state), 4),
        "placed_jobs": placed,
    }


def replay(nodes: list[GpuNode], tasks: list[Task], policy: str, decide: Decide) -> dict[str, Any]:
    """Arrivals and departures in time; waiting tasks in the operator's admission queue."""
    timed = [t for t in tasks if t.created is not None and t.duration is not None]
    if not timed:
        return {"mean_wait_s": None, "p95_wait_s": None}
    state = {n.name: n for n in nodes}
    events: list[tuple[float, int, int, str]] = [(t.created or 0.0, 1, t.index, "") for t in timed]
    heapq.heapify(events)
    by_index = {t.index: t for t in timed}
    waiting: dict[int, Task] = {}
    waits: list[float] = []
    while events:
        now, kind, index, node_name = heapq.heappop(events)
        if kind == 0:  # departure
            state[node_name] = _take(state[node_name], by_index[index], -1)
        else:
            waiting[index] = by_index[index]
        for task in _admitted_in_order(list(waiting.values()), state, policy, decide, now):
            chosen = decide(task, list(state.values()))
            if chosen is None:
                continue
            state[chosen] = _take(state[chosen], task)
            del waiting[task.index]
            waits.append(now - (task.created or 0.0))
            heapq.heappush(events, (now + (task.duration or 0.0), 0, task.index, chosen))
    waits.sort()
    return {
        "mean_wait_s": round(statistics.fmean(waits), 1) if waits else None,
        "p95_wait_s": round(waits[math.floor(0.95 * (len(waits) - 1))], 1) if waits else None,
        "started": len(waits),
    }


def _admitted_in_order(
    waiting: list[Task], state: dict[str, GpuNode], policy: str, decide: Decide, now: float
) -> list[Task]:
    """The waiting tasks the queue would try now, oldest first; for the operator's policies,
    those that `plan_pass` admits (its memo of failed shapes keeps a long queue cheap)."""
    if policy == "kube-default" or not waiting:
        return sorted(waiting, key=lambda t: (t.created or 0.0, t.index))
    gangs = [
        QueuedGang(
            QueuedJob(f"{t.created or 0.0:015.1f}", "trace", f"{t.index:06d}", "Task"),
            GangRequest(1, t.gpus, gpu_product=t.models[0]),
            policy,  # type: ignore[arg-type]
            queued_at=t.created or 0.0,
        )
        for t in waiting
    ]
    decisions: list[tuple[QueuedGang, PassDecision]] = plan_pass(
        gangs, list(state.values()), (), now, starvation_seconds=math.inf
    )
    admitted = {int(g.job.name) for g, d in decisions if isinstance(d, Admitted)}
    # A gang request names one GPU model, so the queue saw only a task's first allowed model:
    # tasks that allow several are tried anyway, model by model, by `decide`.
    return [t for t in waiting if t.index in admitted or len(t.models) > 1]


def run(nodes_csv: Path, pods_csv: Path) -> dict[str, Any]:
    nodes, tasks = load_nodes(nodes_csv), load_tasks(pods_csv)
    timings: list[float] = []
    results: dict[str, Any] = {}
    for policy in POLICIES:
        decide = (
            kube_default if policy == "kube-default" else operator_policy(policy, timings)  # type: ignore[arg-type]
        )
        results[policy] = {**fill(nodes, tasks, decide), **replay(nodes, tasks, policy, decide)}
    timings.sort()
    return {
        "trace": {"nodes": str(nodes_csv), "pods": str(pods_csv)},
        "nodes": len(nodes),
        "gpus": sum(n.allocatable for n in nodes),
        "gpu_tasks": len(tasks),
        "policies": results,
        "decision_ms_p99": round(timings[int(0.99 * (len(timings) - 1))] * 1000, 3),
        "decision_ms_median": round(statistics.median(timings) * 1000, 3),
    }
