"""Placement policies on a simulated GPU cluster: the same job stream under each policy.

A discrete-event simulation drives the operator's own admission (`scheduling.admission.admit`)
with 2,000 gang jobs (1-8 workers x 1-8 GPUs, some pinned to a GPU type) arriving at about 90%
of the cluster's capacity. Queued jobs are retried in arrival order at every arrival and
completion, and a job that fits may overtake one that does not (as the operator does). Inside
the chosen pool, workers are bound best-fit, node by node.

Two workloads: `pinned` (40% of the jobs ask for a GPU type) and `unpinned` (the same jobs,
any GPU). The baseline is `least-loaded`, the rule of the original Lepton design. Figures: GPU
utilisation, queue wait (all jobs, and gangs of 16 GPUs or more; in units of a job's mean
duration / 10), and admit() time per call.

    python -m bench.scheduling                                   # the synthetic cluster
    python -m bench.scheduling --nodes NODES.csv --pods PODS.csv # replay a trace (bench/trace.py)
    python -m bench.scheduling --trace                           # the three shipped traces
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import trace
from bench.common import report
from lepton_operator.scheduling.admission import (
    Admitted,
    GangRequest,
    Policy,
    admit,
    fit,
    pinned_demand,
)
from lepton_operator.scheduling.inventory import GpuNode

POOL_LABEL = "lepton.ai/node-pool"
# (pool, nodes, GPUs per node, product)
CLUSTER = (("a100", 16, 8, "A100"), ("h100", 8, 8, "H100"), ("l4", 16, 4, "L4"))
JOBS = 2_000
MEAN_DURATION = 10.0
TARGET_LOAD = 0.9
LARGE_GANG_GPUS = 16
SEED = 0


@dataclass(frozen=True)
class Job:
    index: int
    arrival: float
    duration: float
    request: GangRequest

    @property
    def gpus(self) -> int:
        return self.request.workers * self.request.gpus_per_worker


@dataclass
class Outcome:
    waits: list[float] = field(default_factory=list)
    large_waits: list[float] = field(default_factory=list)
    gpu_time_used: float = 0.0
    end: float = 0.0


def job_stream(seed: int = SEED) -> list[Job]:
    rng = random.Random(seed)
    capacity = sum(nodes * gpus for _, nodes, gpus, _ in CLUSTER)
    shapes = [(1, 1), (1, 2), (1, 4), (1, 8), (2, 4), (2, 8), (4, 8), (8, 8), (4, 1), (8, 2)]
    weights = [20, 12, 10, 12, 8, 8, 5, 2, 8, 5]
    mean_gpus = sum(w * a * b for w, (a, b) in zip(weights, shapes, strict=True)) / sum(weights)
    # Arrivals at a rate that keeps TARGET_LOAD of the GPUs busy on average.
    rate = TARGET_LOAD * capacity / (mean_gpus * MEAN_DURATION)
    jobs, now = [], 0.0
    for index in range(JOBS):
        now += rng.expovariate(rate)
        workers, gpus = rng.choices(shapes, weights)[0]
        product = rng.choices([None, "A100", "H100"], [60, 25, 15])[0]
        if gpus > 4 and product is None and rng.random() < 0.5:
            product = "A100"  # large workers mostly want the big cards
        request = GangRequest(workers, gpus, gpu_product=product)
        jobs.append(Job(index, now, rng.expovariate(1 / MEAN_DURATION), request))
    return jobs


def inventory() -> list[GpuNode]:
    return [
        GpuNode(f"{pool}-{i}", pool, POOL_LABEL, product, gpus, 0)
        for pool, nodes, gpus, product in CLUSTER
        for i in range(nodes)
    ]


def _bind(nodes: list[GpuNode], pool: str, request: GangRequest) -> list[tuple[int, int, int]]:
    """Bind the workers best-fit on the pool's matching nodes; (node index, GPUs, of them
    pinned to the product) per worker."""
    bound = []
    for _ in range(request.workers):
        eligible = [
            i
            for i, n in enumerate(nodes)
            if n.pool == pool
            and (request.gpu_product is None or n.gpu_product == request.gpu_product)
        ]
        placed = fit([nodes[i].free for i in eligible], 1, request.gpus_per_worker)
        assert placed is not None, "admission said the gang fits"
        chosen = next(
            i for i, after in zip(eligible, placed, strict=True) if after != nodes[i].free
        )
        gpus = request.gpus_per_worker
        pinned = gpus if request.gpu_product is not None else 0
        node = nodes[chosen]
        nodes[chosen] = replace(node, used=node.used + gpus, pinned=node.pinned + pinned)
        bound.append((chosen, gpus, pinned))
    return bound


def simulate(policy: Policy, jobs: list[Job]) -> tuple[Outcome, list[float]]:
    nodes = inventory()
    outcome, queue, admit_seconds = Outcome(), list[Job](), list[float]()
    events: list[tuple[float, int, int]] = [(j.arrival, 1, j.index) for j in jobs]
    heapq.heapify(events)
    running: dict[int, list[tuple[int, int, int]]] = {}
    used, last = 0, 0.0
    while events:
        now, kind, index = heapq.heappop(events)
        outcome.gpu_time_used += used * (now - last)
        last = now
        if kind == 0:  # completion
            for node_index, gpus, pinned in running.pop(index):
                node = nodes[node_index]
                nodes[node_index] = replace(
                    node, used=node.used - gpus, pinned=node.pinned - pinned
                )
                used -= gpus
        else:
            queue.append(jobs[index])
        waiting = []
        pinned_waiting = pinned_demand(j.request for j in queue)
        for job in queue:
            started = time.perf_counter()
            decision = admit(job.request, nodes, policy=policy, pinned_waiting=pinned_waiting)
            admit_seconds.append(time.perf_counter() - started)
            if not isinstance(decision, Admitted):
                waiting.append(job)
                continue
            running[job.index] = _bind(nodes, decision.pool, job.request)
            used += job.gpus
            wait = now - job.arrival
            outcome.waits.append(wait)
            if job.gpus >= LARGE_GANG_GPUS:
                outcome.large_waits.append(wait)
            heapq.heappush(events, (now + job.duration, 0, job.index))
        queue = waiting
    outcome.end = last
    return outcome, admit_seconds


def figures(policy: Policy, jobs: list[Job]) -> dict[str, Any]:
    outcome, admit_seconds = simulate(policy, jobs)
    capacity = sum(n.allocatable for n in inventory())
    large = sorted(outcome.large_waits)
    return {
        "gpu_utilisation": round(outcome.gpu_time_used / (capacity * outcome.end), 3),
        "makespan": round(outcome.end, 1),
        "mean_wait": round(statistics.fmean(outcome.waits), 2),
        "p95_wait": round(sorted(outcome.waits)[int(0.95 * len(outcome.waits))], 2),
        "large_gang_mean_wait": round(statistics.fmean(large), 2) if large else None,
        "large_gangs": len(large),
        "admit_microseconds_mean": round(statistics.fmean(admit_seconds) * 1e6, 1),
        "admit_calls": len(admit_seconds),
    }


def _ratio(value: float | None, baseline: float | None) -> float | None:
    return round(value / baseline, 3) if value and baseline else None


TRACE_DIR = Path(__file__).parent / "data" / "alibaba-gpu-v2023"
TRACE_NODES = TRACE_DIR / "openb_node_list_gpu_node.csv"
TRACE_PODS = ("default", "gpuspec33", "multigpu50")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=Path, help="node list CSV (trace format)")
    parser.add_argument("--pods", type=Path, help="pod list CSV (trace format)")
    parser.add_argument("--trace", action="store_true", help="replay the three shipped traces")
    args = parser.parse_args(argv)
    if args.nodes or args.pods:
        if not (args.nodes and args.pods):
            parser.error("--nodes and --pods go together")
        report(f"scheduling-trace-{args.pods.stem}", trace.run(args.nodes, args.pods))
        return
    if args.trace:
        for name in TRACE_PODS:
            pods = TRACE_DIR / f"openb_pod_list_{name}.csv"
            report(f"scheduling-trace-{name}", trace.run(TRACE_NODES, pods))
        return
    synthetic()


def synthetic() -> None:
    pinned = job_stream()
    workloads = {
        "pinned": pinned,
        "unpinned": [replace(j, request=replace(j.request, gpu_product=None)) for j in pinned],
    }
    results: dict[str, Any] = {}
    for workload, jobs in workloads.items():
        policies = {p: figures(p, jobs) for p in ("binpack", "least-loaded", "spread")}
        binpack, baseline = policies["binpack"], policies["least-loaded"]
        results[workload] = {
            "policies": policies,
            "binpack_vs_baseline": {
                "mean_wait_ratio": _ratio(binpack["mean_wait"], baseline["mean_wait"]),
                "p95_wait_ratio": _ratio(binpack["p95_wait"], baseline["p95_wait"]),
                "large_gang_wait_ratio": _ratio(
                    binpack["large_gang_mean_wait"], baseline["large_gang_mean_wait"]
                ),
            },
        }
    report(
        "scheduling",
        {
            "cluster": [
                {"pool": pool, "nodes": nodes, "gpus_per_node": gpus, "product": product}
                for pool, nodes, gpus, product in CLUSTER
            ],
            "jobs": JOBS,
            "target_load": TARGET_LOAD,
            "baseline": "least-loaded",
            "workloads": results,
        },
    )


if __name__ == "__main__":
    main()
