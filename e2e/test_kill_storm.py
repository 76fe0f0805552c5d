"""Jobs applied while the operator is SIGKILLed again and again: each gets exactly one
PyTorchJob, no pod is started twice, and every one succeeds.

A module of its own: it starts (and kills) operator processes of its own, and two operators
deciding at once is what the other modules must not meet.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import GROUP, PLURALS, VERSION, create, pipeline
from e2e.waiting import wait_until

pytestmark = pytest.mark.e2e

JOBS = 60
KILLS = 5


def test_jobs_applied_through_a_kill_storm_each_run_once_and_succeed(
    crds: None, kubeconfig_path: Path, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    names = [f"storm-{i:02d}" for i in range(JOBS)]

    def apply_all() -> None:
        for name in names:
            job = pipeline()[0]
            job["metadata"] = {"name": name}
            create(custom, namespace, job)
            time.sleep(0.1)

    applying = threading.Thread(target=apply_all)
    applying.start()
    for _ in range(KILLS):
        operator = OperatorProcess(kubeconfig_path, log_name="lepton-operator-storm").start()
        time.sleep(1.5)  # mid-reconcile, mid-admission, mid-status: wherever it is
        operator.kill()
    applying.join()

    with OperatorProcess(kubeconfig_path, log_name="lepton-operator-storm"):

        def phases() -> dict[str, int] | None:
            jobs = custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS["LeptonTrainingJob"]
            )["items"]
            counts: dict[str, int] = {}
            for job in jobs:
                phase = job.get("status", {}).get("phase", "none")
                counts[phase] = counts.get(phase, 0) + 1
            return counts if counts.get("Succeeded") == JOBS else None

        wait_until(f"all {JOBS} jobs Succeeded", phases, timeout=300, interval=2)

    pytorchjobs = custom.list_namespaced_custom_object(
        "kubeflow.org", "v1", namespace, "pytorchjobs"
    )
    owners = [j["metadata"]["ownerReferences"][0]["name"] for j in pytorchjobs["items"]]
    assert sorted(owners) == names, "each job has exactly one PyTorchJob"
    pods = core.list_namespaced_pod(namespace).items
    per_job: dict[str, int] = {}
    for pod in pods:
        job_name = pod.metadata.labels["training.kubeflow.org/job-name"]
        per_job[job_name] = per_job.get(job_name, 0) + 1
    # The sample has 2 workers: a pod started twice (a duplicate admission) would show here.
    assert set(per_job.values()) == {2}, per_job
