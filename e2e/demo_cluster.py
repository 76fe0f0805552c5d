"""`make demo-cluster`: the MNIST pipeline on the local control plane, as a user would run it.

Applies the CRDs, starts the operator in the background (log in e2e/.cluster/logs), creates
namespace `lepton-demo` with the claims the sample names, applies samples/mnist-pipeline.yaml
and shows `kubectl get lepton` until the endpoint is Available. kwok simulates the pods, so
the jobs "succeed" without training anything: this demonstrates the control plane, not ML.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes.client import CoreV1Api

from e2e import cluster, processes
from e2e.claims import create_bound_claims
from e2e.lepton_operator_process import OPERATOR_MODULE, REPO_ROOT, OperatorProcess

NAMESPACE = "lepton-demo"
PID_FILE = cluster.STATE_DIR / "pids" / "lepton-operator.pid"
WATCH_SECONDS = 180


def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "kubectl"), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "KUBECONFIG": str(cluster.KUBECONFIG)},
    )


def _stop_previous_operator() -> None:
    # The launcher's own bookkeeping: it signals a pid only while it is still the operator.
    for proc in processes.recorded(cluster.STATE_DIR):
        if proc.name == PID_FILE.stem:
            if processes.is_alive(proc):
                os.kill(proc.pid, signal.SIGTERM)
            PID_FILE.unlink(missing_ok=True)


def _prepare_namespace(core: Any) -> None:
    kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
    for claim in ("datasets", "artifacts"):
        kubectl("delete", "pv", f"{NAMESPACE}-{claim}", "--ignore-not-found")
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    create_bound_claims(core, NAMESPACE)


def main() -> int:
    if cluster.running() is None:
        print("the local control plane is not running: run `make cluster-up` first")
        return 1
    applied = kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    print(applied.stdout or applied.stderr)
    _stop_previous_operator()
    operator = OperatorProcess(Path(cluster.KUBECONFIG), log_name="lepton-operator-demo").start()
    PID_FILE.parent.mkdir(parents=True, exist_ok=True)
    # The pid file format of e2e/processes.py, so `make cluster-down` stops the operator too.
    PID_FILE.write_text(f"{operator.pid}\n{OPERATOR_MODULE}\n")
    print(f"operator running (pid {operator.pid}), log: {operator.log_path}")

    with cluster.api_client() as api:
        _prepare_namespace(CoreV1Api(api))
    sample = REPO_ROOT / "samples" / "mnist-pipeline.yaml"
    print(kubectl("apply", "-n", NAMESPACE, "-f", str(sample)).stdout)

    deadline = time.monotonic() + WATCH_SECONDS
    while time.monotonic() < deadline:
        listing = kubectl("get", "lepton", "-n", NAMESPACE).stdout
        print(listing)
        if "Available" in listing:
            break
        time.sleep(3)
    print(f"kubectl --kubeconfig {cluster.KUBECONFIG} get lepton -n {NAMESPACE}")
    print("stop the operator and the cluster: make cluster-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
