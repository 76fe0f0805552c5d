"""Admission across an operator restart: the new process rebuilds its view and the
reservations of what was admitted before its first decision, so no gang is admitted twice.

A module of its own: the other admission tests share one operator process for their module,
and two operators deciding at once (no peering) is exactly what this must not depend on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import create
from e2e.test_admission import A100, assert_exactly_what_fits, settle, training_job

pytestmark = pytest.mark.e2e


def test_a_restart_during_a_burst_admits_no_gang_twice(
    crds: None, kubeconfig_path: Path, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    names = [f"burst-{i}" for i in range(6)]
    jobs = [training_job(n, 4, 8, gpu_type=A100, keep_running=True) for n in names]
    first = OperatorProcess(kubeconfig_path, log_name="lepton-operator-burst").start()
    try:
        for job in jobs[:3]:
            create(custom, namespace, job)
    finally:
        first.stop()  # mid-burst: some jobs may be decided, some not even seen
    for job in jobs[3:]:
        create(custom, namespace, job)
    with OperatorProcess(kubeconfig_path, log_name="lepton-operator-burst"):
        # The new process rebuilds its view and reservations before its first decision.
        settle(custom, core, namespace, names, 1)
        assert_exactly_what_fits(custom, core, namespace, names, 1, 4)
