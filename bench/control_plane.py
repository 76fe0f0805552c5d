"""Operator throughput and latency on the real control plane, beside the API server's own limit.

The local control plane (e2e/cluster.py: etcd, kube-apiserver, kube-scheduler,
kube-controller-manager, the training operator, kwok) gets a CPU pool `bench-cpu` of kwok nodes
big enough for every pod the benchmark makes, and the operator (the real one, a process of its
own) is started. Then, in one run:

1. the baseline: `--jobs` plain ConfigMaps created by this client (the same `kubernetes` client,
   the same `--threads` threads) against the same API server, as fast as it takes them;
2. a burst: `--jobs` small CPU-only LeptonTrainingJobs created at once; throughput is jobs per
   second from the first create to the last job's PyTorchJob seen on a watch, and its ratio
   to the baseline. They are deleted (and their PyTorchJobs and pods gone) before step 3;
3. steady load: `--steady` jobs created at `--rate` per second, and the latency from each
   create to its PyTorchJob seen on the watch (p50, p99);
4. the operator's memory (peak, and growth per 1,000 CRs over the burst) and CPU-seconds, from
   /proc.

CPU-only jobs (gpusPerWorker 0) skip GPU admission: their reconcile applies the ConfigMap and
the PyTorchJob at once (handlers/admission.py `apply_when_admitted`), so this is the cost of
Kopf, the handler, the API calls and the status that follows, not of the admission queue
(bench/admission.py measures that). Their pods run (kwok) for an hour, so nothing finishes
during the run; `--suspend` creates them suspended instead (no pods: the operator's share of the
machine without the training operator's and the scheduler's).

The control plane is started if it is not running (and left running, as `make cluster-up`
would); everything the benchmark created is deleted at the end.

    python -m bench.control_plane                          # 1,000 jobs, then 400 at 20/s
    python -m bench.control_plane --jobs 200 --rate 20 --steady 200
    python -m bench.control_plane --py-spy PATH            # and profiles (e2e/.cluster/logs)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi, DiscoveryV1Api

from bench.common import report
from bench.watching import PyTorchJobsSeen
from e2e import cluster, processes, topology
from e2e.lepton_operator_process import LOG_DIR, OperatorProcess
from e2e.lepton_resources import GROUP, PLURALS, VERSION, install_crds
from e2e.waiting import wait_until

NAMESPACE = "lepton-bench-control-plane"
POOL = "bench-cpu"
PODS_PER_NODE = 250
PLURAL = PLURALS["LeptonTrainingJob"]
BENCH_LABEL = {"lepton.ai/bench": "control-plane"}
SELECTOR = "lepton.ai/bench=control-plane"
MANAGED = "app.kubernetes.io/managed-by=lepton-operator"
TRAINING_OPERATOR = "training.kubeflow.org/job-name"  # the Services it makes per job
KEEP_RUNNING = {"lepton.ai/e2e-run-duration": "1h"}
# The goals of the issue, printed beside the figures.
GOALS = {"ratio": ">= 0.5", "p50_ms": "<= 200", "p99_ms": "<= 1000", "rss_mb_per_1k": "<= 30"}


def bench_pool(pods: int) -> topology.Pool:
    """Enough kwok CPU nodes that every pod of the run is scheduled and runs."""
    return topology.Pool(
        name=POOL, nodes=max(math.ceil(pods / (PODS_PER_NODE - 10)), 1), cpu="64",
        memory="512Gi", pods=PODS_PER_NODE,
    )  # fmt: skip


def training_job(name: str, suspend: bool) -> dict[str, Any]:
    """The smallest valid job: one CPU-only worker, synthetic data, no claims or Secrets to
    check (a pvc:// URI would add a GET per claim to every reconcile)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LeptonTrainingJob",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": BENCH_LABEL},
        "spec": {
            "model": {"name": "mlp"},
            "dataset": {"uri": "synthetic://mnist", "format": "synthetic"},
            "output": {"uri": f"file:///tmp/lepton-bench/{name}"},
            "hyperparameters": {"epochs": 1},
            "resources": {"workers": 1, "gpusPerWorker": 0, "cpu": "100m", "memory": "128Mi"},
            "scheduling": {"nodePool": POOL},
            "runPolicy": {"suspend": suspend},
            "podMetadata": {"annotations": KEEP_RUNNING},
        },
    }


def config_map(name: str) -> dict[str, Any]:
    """The baseline's object: about the size of a job's spec."""
    return {
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": BENCH_LABEL},
        "data": {"spec": "x" * 400},
    }


def timed_creates(
    create: Callable[[str], Any], names: list[str], threads: int, rate: float | None = None
) -> dict[str, float]:
    """Create one object per name on `threads` threads, as fast as they go or `rate` per
    second; when each create was sent (time.monotonic)."""
    sent: dict[str, float] = {}

    def one(name: str) -> None:
        sent[name] = time.monotonic()
        create(name)

    with ThreadPoolExecutor(threads) as pool:
        if rate is None:
            list(pool.map(one, names))
        else:
            started = time.monotonic()
            futures = []
            for index, name in enumerate(names):
                time.sleep(max(started + index / rate - time.monotonic(), 0.0))
                futures.append(pool.submit(one, name))
            for future in futures:
                future.result()
    return sent


def cpu_seconds(pid: int | str) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class CpuShares:
    """CPU-seconds of every process of the run over one phase, and its wall time: on a machine
    of two cores, who held them (the operator is one of eight processes)."""

    def __init__(self, operator_pid: int | None = None) -> None:
        self._pids: dict[str, int | str] = {
            p.name: p.pid for p in processes.recorded(cluster.STATE_DIR)
        }
        self._pids["bench-client"] = "self"
        if operator_pid is not None:
            self._pids["lepton-operator"] = operator_pid
        self._started = time.monotonic()
        self._before = self._now()

    def _now(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self._pids.items()}

    def figures(self) -> dict[str, float]:
        now = self._now()
        used = {name: round(now[name] - self._before[name], 1) for name in now}
        return {"wall_s": round(time.monotonic() - self._started, 1), **used}

    def wait_quiet(self, timeout: float = 120.0, window: float = 3.0) -> float:
        """Wait until all of them together use under a quarter of a core over `window` s (the
        tail of a phase, garbage collection, endpoints, no longer runs into the next one)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            before = sum(self._now().values())
            time.sleep(window)
            if sum(self._now().values()) - before < 0.25 * window:
                break
        return time.monotonic() - started


class Proc:
    """The operator's CPU and memory, as the kernel counts them."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory_mb(self, field: str) -> float:
        """VmRSS (now) or VmHWM (peak), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def wait_idle(self, timeout: float = 180.0, window: float = 3.0) -> float:
        """Wait until the operator uses under 5 % of a core over `window` s; seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            before = self.cpu_seconds()
            time.sleep(window)
            if self.cpu_seconds() - before < 0.05 * window:
                break
        return time.monotonic() - started


class Profiler:
    """py-spy (not in the lock: its path comes from --py-spy) recording the operator, all its
    threads, as collapsed stacks (flame graphs, or a quick sort) beside the operator's log."""

    def __init__(self, py_spy: str | None, pid: int, name: str) -> None:
        self.output = LOG_DIR / f"control_plane-{name}.py-spy.txt"
        self._process = None
        if py_spy is not None:
            self._process = subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), "--format", "raw", "--threads",
                 "--rate", "50", "--output", str(self.output)],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1)

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            self._process.wait(timeout=60)


def request_counts(api: ApiClient) -> Counter[str]:
    """Requests the API server has served since it started, by verb and resource (all
    clients: the operator, the training operator, kube-scheduler, kwok, this benchmark)."""
    params = api.param_serialize(
        method="GET", resource_path="/metrics", auth_settings=["BearerToken"]
    )
    response: Any = api.call_api(*params)
    response.read()
    counts: Counter[str] = Counter()
    for line in response.data.decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition(" ")
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_text))
        if labels.get("resource") and labels.get("verb") != "WATCH":
            sub = labels.get("subresource")
            resource = labels["resource"] + (f"/{sub}" if sub else "")
            counts[f"{labels['verb']} {resource}"] += int(float(value))
    return counts


def per_job(before: Counter[str], after: Counter[str], jobs: int) -> dict[str, float]:
    """Requests per job over a phase, the most frequent first, with their total."""
    used = after - before
    top = {key: round(count / jobs, 2) for key, count in used.most_common(12)}
    return {"total": round(sum(used.values()) / jobs, 1), **top}


def progress(phase: str) -> None:
    """Where the run is, on stderr (stdout is the figures' JSON)."""
    print(f"[bench.control_plane] {time.strftime('%H:%M:%S')} {phase}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def wait_gone(core: Any, custom: Any, timeout: float = 600.0) -> None:
    """Every job, PyTorchJob and pod of the namespace gone (garbage collection)."""

    def gone() -> bool:
        listed = [
            custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, limit=1),
            custom.list_namespaced_custom_object(
                "kubeflow.org", "v1", NAMESPACE, "pytorchjobs", limit=1
            ),
        ]
        pods = core.list_namespaced_pod(NAMESPACE, limit=1).items
        return not pods and not any(result["items"] for result in listed)

    wait_until("the bench's jobs, PyTorchJobs and pods gone", gone, timeout=timeout, interval=2)


def delete_all(core: Any, custom: Any) -> None:
    """Delete what the jobs made directly: garbage collection alone (kube-controller-manager's
    client at 20 requests a second) takes minutes for a thousand jobs."""
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
    custom.delete_collection_namespaced_custom_object(
        "kubeflow.org", "v1", NAMESPACE, "pytorchjobs"
    )
    core.delete_collection_namespaced_pod(NAMESPACE, grace_period_seconds=0)
    core.delete_collection_namespaced_config_map(NAMESPACE, label_selector=MANAGED)
    core.delete_collection_namespaced_service(NAMESPACE, label_selector=TRAINING_OPERATOR)
    # What the endpoint controllers (also at 20 requests a second) would delete after them.
    core.delete_collection_namespaced_endpoints(NAMESPACE, label_selector=TRAINING_OPERATOR)
    DiscoveryV1Api(core.api_client).delete_collection_namespaced_endpoint_slice(
        NAMESPACE, label_selector=TRAINING_OPERATOR
    )
    wait_gone(core, custom)


def namespace_gone(core: Any, description: str) -> None:
    wait_until(
        description,
        lambda: NAMESPACE not in {n.metadata.name for n in core.list_namespace().items},
        timeout=300,
        interval=2,
    )


def phases(custom: Any) -> dict[str, int]:
    jobs = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
    return dict(Counter(str(j.get("status", {}).get("phase")) for j in jobs["items"]))


@dataclass(frozen=True)
class Options:
    jobs: int = 1000
    rate: float = 20.0
    steady: int = 400
    threads: int = 8
    suspend: bool = False
    py_spy: str | None = None
    settle: float = 120.0  # at most this long for the burst's status to stop flowing
    operator_env: dict[str, str] = field(default_factory=dict)  # e.g. MALLOC_ARENA_MAX=2


@dataclass
class Bench:
    """One run: its options, its clients and the figures so far."""

    options: Options
    api: ApiClient
    core: Any
    custom: Any
    figures: dict[str, Any] = field(default_factory=dict)

    def create_job(self, name: str) -> None:
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, training_job(name, self.options.suspend)
        )

    def baseline(self) -> None:
        """ConfigMaps, as fast as this client and this API server go (no operator yet)."""
        jobs = self.options.jobs
        names = [f"baseline-{index:04d}" for index in range(jobs)]
        shares = CpuShares()
        sent = timed_creates(
            lambda name: self.core.create_namespaced_config_map(NAMESPACE, config_map(name)),
            names, self.options.threads,
        )  # fmt: skip
        self.figures["raw_creates_per_s"] = round(jobs / (time.monotonic() - min(sent.values())), 1)
        self.figures["baseline_cpu_seconds_by_process"] = shares.figures()
        self.core.delete_collection_namespaced_config_map(NAMESPACE, label_selector=SELECTOR)

    def burst(self, operator: OperatorProcess, proc: Proc, seen: PyTorchJobsSeen) -> None:
        jobs, figures = self.options.jobs, self.figures
        rss_before = proc.memory_mb("VmRSS")
        figures["rss_mb_idle"] = round(rss_before, 1)
        cpu_before = proc.cpu_seconds()
        profiler = Profiler(self.options.py_spy, operator.pid, "burst")
        shares, requests = CpuShares(operator.pid), request_counts(self.api)
        names = [f"burst-{index:04d}" for index in range(jobs)]
        sent = timed_creates(self.create_job, names, self.options.threads)
        first = min(sent.values())
        figures["ltj_creates_per_s"] = round(jobs / (time.monotonic() - first), 1)
        wait_until(f"{jobs} PyTorchJobs", lambda: seen.all_seen(names), timeout=900)
        figures["burst_cpu_seconds_by_process"] = shares.figures()
        profiler.stop()
        reconciles = jobs / (max(seen.first_seen[name] for name in names) - first)
        figures["operator_reconciles_per_s"] = round(reconciles, 1)
        figures["ratio"] = round(reconciles / figures["raw_creates_per_s"], 3)
        # A LeptonTrainingJob costs the API server more than a ConfigMap (schema, CEL rules):
        # this ratio is 1 for an operator as fast as the jobs can be created at all.
        figures["ratio_to_ltj_creates"] = round(reconciles / figures["ltj_creates_per_s"], 3)
        latencies = [seen.first_seen[name] - sent[name] for name in names]
        figures["burst_create_to_pytorchjob_ms"] = {
            "p50": ms(statistics.median(latencies)),
            "max": ms(max(latencies)),
        }
        figures["burst_cpu_seconds"] = round(proc.cpu_seconds() - cpu_before, 1)
        # The PyTorchJobs' status (the training operator's, then the pods') flows back.
        figures["settle_s"] = round(proc.wait_idle(self.options.settle), 1)
        figures["settle_cpu_seconds"] = round(
            proc.cpu_seconds() - cpu_before - figures["burst_cpu_seconds"], 1
        )
        figures["phases_after_settle"] = phases(self.custom)
        figures["api_requests_per_job"] = per_job(requests, request_counts(self.api), jobs)
        rss_after = proc.memory_mb("VmRSS")
        figures["rss_mb_after_burst"] = round(rss_after, 1)
        figures["rss_mb_per_1k"] = round((rss_after - rss_before) * 1000 / jobs, 1)
        started = time.monotonic()
        delete_all(self.core, self.custom)
        figures["burst_deleted_s"] = round(time.monotonic() - started, 1)
        figures["quiet_after_delete_s"] = round(CpuShares(operator.pid).wait_quiet(), 1)
        # Still held with none of the 1,000 left: memory kept by the allocator, not by CRs.
        figures["rss_mb_after_delete"] = round(proc.memory_mb("VmRSS"), 1)

    def steady(self, operator: OperatorProcess, proc: Proc, seen: PyTorchJobsSeen) -> None:
        steady, figures = self.options.steady, self.figures
        rss_before = proc.memory_mb("VmRSS")
        cpu_before = proc.cpu_seconds()
        profiler = Profiler(self.options.py_spy, operator.pid, "steady")
        shares, requests = CpuShares(operator.pid), request_counts(self.api)
        names = [f"steady-{index:04d}" for index in range(steady)]
        sent = timed_creates(self.create_job, names, self.options.threads, self.options.rate)
        sending_s = max(sent.values()) - min(sent.values())
        wait_until(f"{steady} PyTorchJobs", lambda: seen.all_seen(names), timeout=600)
        figures["steady_cpu_seconds_by_process"] = shares.figures()
        figures["steady_api_requests_per_job"] = per_job(requests, request_counts(self.api), steady)
        profiler.stop()
        latencies = [seen.first_seen[name] - sent[name] for name in names]
        figures["steady"] = {
            "jobs": steady,
            "rate_per_s": round((steady - 1) / sending_s, 1) if sending_s else None,
            "cpu_seconds": round(proc.cpu_seconds() - cpu_before, 1),
        }
        # What the steady jobs, all still there, hold: state per CR, apart from the burst's
        # transient peak above (it may partly fill memory that peak left behind).
        proc.wait_idle()
        figures["rss_mb_per_1k_steady"] = round(
            (proc.memory_mb("VmRSS") - rss_before) * 1000 / steady, 1
        )
        figures["p50_ms"] = ms(statistics.median(latencies))
        figures["p99_ms"] = ms(percentile(latencies, 0.99))
        figures["max_ms"] = ms(max(latencies))


def run(options: Options) -> dict[str, Any]:
    with contextlib.redirect_stdout(sys.stderr):  # stdout is for the figures alone
        cluster.up()
    api: ApiClient = cluster.api_client(cluster.KUBECONFIG)
    bench = Bench(options, api, CoreV1Api(api), CustomObjectsApi(api))
    core, figures = bench.core, bench.figures
    figures.update(jobs=options.jobs, threads=options.threads, suspended=options.suspend)
    figures.update(steady_jobs=options.steady, operator_env=options.operator_env)
    os.environ["KUBECONFIG"] = str(cluster.KUBECONFIG)
    install_crds()
    pool = bench_pool(0 if options.suspend else max(options.jobs, options.steady))
    namespace_gone(core, "a namespace of an earlier run gone")
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        wait_until(
            "the bench namespace's ServiceAccount",
            lambda: core.list_namespaced_service_account(NAMESPACE).items,
        )
        for name in pool.node_names():
            core.create_node(topology.node_manifest(pool, name))
        progress("baseline")
        bench.baseline()
        progress("operator")
        log_name, env = "lepton-operator-bench-control-plane", options.operator_env
        with OperatorProcess(cluster.KUBECONFIG, log_name, env) as op:
            proc = Proc(op.pid)
            time.sleep(5)  # informers listed, Kopf's watches up
            CpuShares(op.pid).wait_quiet()
            cpu_start = proc.cpu_seconds()
            seen = PyTorchJobsSeen(bench.custom, NAMESPACE)
            try:
                progress("burst")
                bench.burst(op, proc, seen)
                progress("steady")
                bench.steady(op, proc, seen)
            finally:
                seen.stop()
            proc.wait_idle()
            figures["cpu_seconds"] = round(proc.cpu_seconds() - cpu_start, 1)
            figures["peak_rss_mb"] = round(proc.memory_mb("VmHWM"), 1)
    finally:
        progress("cleanup")
        delete_all(core, bench.custom)
        core.delete_namespace(NAMESPACE)
        namespace_gone(core, "the bench namespace deleted")  # the next run starts clean
        for name in pool.node_names():
            core.delete_node(name)
        api.close()  # type: ignore[no-untyped-call]
    return figures


def main() -> None:
    defaults = Options()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=defaults.jobs, help="burst (and baseline) size")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="steady creates per s")
    parser.add_argument("--steady", type=int, default=defaults.steady, help="jobs made at --rate")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="client threads")
    parser.add_argument("--suspend", action="store_true", help="jobs suspended: no pods")
    parser.add_argument("--settle", type=float, default=defaults.settle, help="max s to settle")
    parser.add_argument(
        "--operator-env", action="append", default=[], metavar="KEY=VALUE",
        help="extra environment of the operator process (repeatable)",
    )  # fmt: skip
    parser.add_argument("--py-spy", help="py-spy binary: profile the operator (e2e/.cluster/logs)")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.operator_env)
    options = Options(
        args.jobs, args.rate, args.steady, args.threads, args.suspend, args.py_spy, args.settle,
        env,
    )  # fmt: skip
    report("control_plane", {**run(options), "goals": GOALS})


if __name__ == "__main__":
    main()
