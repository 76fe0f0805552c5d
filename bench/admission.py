"""GPU admission at scale on the real control plane: 1,500 kwok GPU nodes, 1,000 queued jobs.

The local control plane (e2e/cluster.py: etcd, kube-apiserver, kube-scheduler,
kube-controller-manager, the training operator, kwok) gets a pool `bench` of `--nodes` kwok
nodes with 8 GPUs each, every GPU held by a plain "filler" pod. The operator (the real one, a
process of its own) is started and `--jobs` LeptonTrainingJobs of 1 worker x 8 GPUs are
applied to that pool: they all wait Queued. Then:

1. steady state, `--window` seconds with nothing changing (every job Queued and its final
   queue position published): the operator's CPU-seconds per minute (from /proc), its RSS, and
   the API server's LIST requests per minute from all clients (its own /metrics), beside the
   same LIST rate in a window before the operator started (the baseline);
2. capacity freed in `--steps` steps: one filler pod deleted at a time, and the time from the
   delete to the next job's PyTorchJob appearing (seen on a watch), p50 and p99.

The kwok nodes stand in for GPU machines (there are none here); nothing else is simulated.
The control plane is started if it is not running (and left running, as `make cluster-up`
would), and everything the benchmark created is deleted at the end.

    python -m bench.admission                  # 1,500 nodes, 1,000 jobs, 40 steps
    python -m bench.admission --nodes 200 --jobs 100 --steps 10 --window 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi

from bench.common import report
from bench.watching import PyTorchJobsSeen
from e2e import cluster, topology
from e2e.claims import create_bound_claims
from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import GROUP, PLURALS, VERSION, install_crds, pipeline
from e2e.waiting import wait_until

NAMESPACE = "lepton-bench"
POOL = "bench"
PRODUCT = "NVIDIA-H200"
GPUS_PER_NODE = 8
KEEP_RUNNING = {"lepton.ai/e2e-run-duration": "1h"}
CLIENT_THREADS = 8


def bench_pool(nodes: int) -> topology.Pool:
    return topology.Pool(
        name=POOL, nodes=nodes, gpus_per_node=GPUS_PER_NODE, gpu_product=PRODUCT,
        cpu="64", memory="512Gi",
    )  # fmt: skip


def filler_pod(node: str) -> dict[str, Any]:
    """A plain pod bound straight to `node`, holding all its GPUs (kwok keeps it Running)."""
    return {
        "metadata": {"name": f"filler-{node}", "labels": {"app": "lepton-bench-filler"}},
        "spec": {
            "nodeName": node,
            "tolerations": [{"key": topology.GPU_RESOURCE, "operator": "Exists"}],
            "containers": [
                {
                    "name": "hold",
                    "image": "registry.invalid/hold:1",
                    "resources": {"limits": {topology.GPU_RESOURCE: str(GPUS_PER_NODE)}},
                }
            ],
        },
    }


def training_job(index: int) -> dict[str, Any]:
    job = pipeline()[0]
    job["metadata"] = {"name": f"job-{index:04d}", "namespace": NAMESPACE}
    job["spec"]["resources"] = {"workers": 1, "gpusPerWorker": GPUS_PER_NODE}
    job["spec"]["scheduling"] = {"nodePool": POOL}
    job["spec"]["podMetadata"] = {"annotations": KEEP_RUNNING}
    return job


def in_parallel(function: Any, items: list[Any]) -> None:
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(function, items))


def list_requests(api: ApiClient) -> float:
    """LIST requests the API server has served since it started (all clients, all kinds)."""
    params = api.param_serialize(
        method="GET", resource_path="/metrics", auth_settings=["BearerToken"]
    )
    response: Any = api.call_api(*params)
    response.read()
    text: str = response.data.decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'verb="LIST"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def list_rate(api: ApiClient, seconds: float) -> float:
    before = list_requests(api)
    time.sleep(seconds)
    return (list_requests(api) - before) * 60 / seconds


def queued_statuses(custom: Any) -> list[dict[str, Any]]:
    jobs = custom.list_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURALS["LeptonTrainingJob"]
    )
    statuses = [j.get("status", {}) for j in jobs["items"]]
    return [status for status in statuses if status.get("phase") == "Queued"]


def positions_final(custom: Any, jobs: int) -> bool:
    """Every job Queued, and every status says its final place (positions of a queue that
    grew are refreshed at most every 30 s): after this nothing is left to publish."""
    statuses = queued_statuses(custom)
    positions = sorted(status.get("queuePosition") or 0 for status in statuses)
    final = all(f"of {jobs} queued" in status.get("message", "") for status in statuses)
    return final and positions == list(range(1, jobs + 1))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def run(nodes: int, jobs: int, steps: int, window: float) -> dict[str, Any]:
    cluster.up()
    api = cluster.api_client(cluster.KUBECONFIG)
    core: Any = CoreV1Api(api)
    custom: Any = CustomObjectsApi(api)
    os.environ["KUBECONFIG"] = str(cluster.KUBECONFIG)
    install_crds()
    pool = bench_pool(nodes)
    names = pool.node_names()
    volumes: list[str] = []
    figures: dict[str, Any] = {"nodes": nodes, "gpus": nodes * GPUS_PER_NODE, "queued_jobs": jobs}
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        wait_until(
            "the bench namespace's ServiceAccount",
            lambda: core.list_namespaced_service_account(NAMESPACE).items,
        )
        volumes = create_bound_claims(core, NAMESPACE)
        started = time.monotonic()
        in_parallel(lambda name: core.create_node(topology.node_manifest(pool, name)), names)
        in_parallel(lambda name: core.create_namespaced_pod(NAMESPACE, filler_pod(name)), names)
        figures["setup_nodes_and_fillers_s"] = round(time.monotonic() - started, 1)
        time.sleep(10)  # let kwok's first status updates of the new nodes and pods pass
        figures["baseline_list_per_minute"] = round(list_rate(api, window), 1)

        settings = {"LEPTON_ADMISSION_RESYNC_SECONDS": "3600"}  # a window without a resync
        with OperatorProcess(cluster.KUBECONFIG, "lepton-operator-bench", settings) as operator:
            started = time.monotonic()
            in_parallel(
                lambda index: custom.create_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, PLURALS["LeptonTrainingJob"], training_job(index)
                ),
                list(range(jobs)),
            )
            wait_until(f"{jobs} jobs Queued", lambda: len(queued_statuses(custom)) == jobs,
                       timeout=1800, interval=5)  # fmt: skip
            figures["jobs_created_and_queued_s"] = round(time.monotonic() - started, 1)
            wait_until("every queue position published", lambda: positions_final(custom, jobs),
                       timeout=600, interval=5)  # fmt: skip
            figures["positions_final_s"] = round(time.monotonic() - started, 1)
            time.sleep(5)

            cpu_before = cpu_seconds(operator.pid)
            lists = list_rate(api, window)
            figures["operator_cpu_seconds_per_minute"] = round(
                (cpu_seconds(operator.pid) - cpu_before) * 60 / window, 3
            )
            # All clients' LISTs: an upper bound of the operator's own.
            figures["steady_list_per_minute"] = round(lists, 1)
            figures["operator_rss_mib"] = round(rss_mib(operator.pid), 1)

            seen = PyTorchJobsSeen(custom, NAMESPACE)
            time.sleep(2)
            cpu_before, steps_started = cpu_seconds(operator.pid), time.monotonic()
            latencies = []
            for step in range(steps):
                known = len(seen.first_seen)
                freed_at = time.monotonic()
                core.delete_namespaced_pod(
                    f"filler-{names[step]}", NAMESPACE, grace_period_seconds=0
                )
                wait_until(
                    f"a PyTorchJob after freeing node {step}",
                    lambda known=known: len(seen.first_seen) > known,  # type: ignore[misc]
                    timeout=120, interval=0.02,
                )  # fmt: skip
                latencies.append(sorted(seen.first_seen.values())[-1] - freed_at)
                time.sleep(1)
            seen.stop()
            # Every admission moves the jobs behind it up a place: the positions published
            # (at most every 30 s per job) are most of this.
            figures["operator_cpu_seconds_per_minute_while_freeing"] = round(
                (cpu_seconds(operator.pid) - cpu_before) * 60 / (time.monotonic() - steps_started),
                3,
            )
            figures["freed_to_pytorchjob_s"] = {
                "steps": steps,
                "p50": round(statistics.median(latencies), 3),
                "p99": round(percentile(latencies, 0.99), 3),
                "max": round(max(latencies), 3),
            }
            figures["operator_rss_mib_after_steps"] = round(rss_mib(operator.pid), 1)
    finally:
        core.delete_namespace(NAMESPACE)
        core.delete_collection_namespaced_pod(NAMESPACE, grace_period_seconds=0)
        in_parallel(core.delete_node, names)
        for volume in volumes:
            core.delete_persistent_volume(volume)
        api.close()  # type: ignore[no-untyped-call]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1500)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--window", type=float, default=60.0, help="seconds per measurement")
    args = parser.parse_args()
    figures = run(args.nodes, args.jobs, args.steps, args.window)
    report("admission", {**figures, "goals": {
        "operator_cpu_seconds_per_minute": "<= 2",
        "steady_list_per_minute": "~0 outside resyncs",
        "freed_to_pytorchjob_p99_s": "<= 2",
    }})  # fmt: skip


if __name__ == "__main__":
    main()
