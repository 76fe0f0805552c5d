"""LeptonSearch on the real control plane: trials are admitted LeptonTrainingJobs, at most
`parallelTrials` at once, the best one ends in the search's status (and a compression takes
its model from there), and a restarted operator goes on from the trial table without losing or
repeating a trial.

kwok plays the kubelets: every trial's pods report the same summary (TRAIN_SUMMARY, with the
measurements a search reads), so the trials tie on accuracy and the first one is the best.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import (
    GROUP,
    PLURALS,
    SAMPLES,
    TERMINATION_ANNOTATION,
    TRAIN_SUMMARY,
    VERSION,
    create,
    kubectl,
    pipeline,
    wait_for_phase,
)
from e2e.waiting import wait_until

pytestmark = pytest.mark.e2e
LTJ = PLURALS["LeptonTrainingJob"]


def _search(name: str, trials: int, parallel: int) -> dict[str, Any]:
    search: dict[str, Any] = yaml.safe_load((SAMPLES / "mnist-search.yaml").read_text())
    search["metadata"] = {"name": name}
    summary = TRAIN_SUMMARY.model_copy(
        update={"parameters": 90_000, "latency_ms": 0.8, "size_bytes": 360_000}
    )
    search["spec"]["template"]["podMetadata"] = {
        "annotations": {TERMINATION_ANNOTATION: summary.model_dump_json(by_alias=True)}
    }
    search["spec"]["algorithm"] = {"name": "random", "seed": 3}
    search["spec"]["budget"] = {"maxTrials": trials, "parallelTrials": parallel}
    return search


def _trials(custom: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    listed = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, LTJ, label_selector=f"lepton.ai/search={name}"
    )
    return list(listed["items"])


class _MostUnfinished:
    """Samples, in the background, the most trials that were unfinished at one time."""

    def __init__(self, custom: Any, namespace: str, name: str) -> None:
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(custom, namespace, name), daemon=True
        )

    def _run(self, custom: Any, namespace: str, name: str) -> None:
        while not self._stop.wait(0.2):
            unfinished = [
                trial
                for trial in _trials(custom, namespace, name)
                if (trial.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            ]
            self.most = max(self.most, len(unfinished))

    def __enter__(self) -> _MostUnfinished:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_search_runs_its_trials_within_budget_and_reports_the_best(
    operator: OperatorProcess, custom: Any, namespace: str, volumes: None
) -> None:
    with _MostUnfinished(custom, namespace, "digits") as sampled:
        create(custom, namespace, _search("digits", trials=5, parallel=2))
        search = wait_for_phase(custom, "LeptonSearch", namespace, "digits", "Succeeded")
    status = search["status"]
    trials = _trials(custom, namespace, "digits")
    assert sorted(t["metadata"]["name"] for t in trials) == [f"digits-00{n}" for n in range(5)]
    assert 1 <= sampled.most <= 2
    assert status["completedTrials"] == 5
    assert status["bestTrial"] == "digits-000"  # all tie on accuracy: the first wins
    assert status["results"]["modelURI"] == "pvc://artifacts/mnist-search/digits-000"
    assert status["results"]["accuracy"] == pytest.approx(TRAIN_SUMMARY.accuracy)
    # The same accuracy and latency everywhere: no trial beats another, all are on the front.
    assert status["paretoFront"] == [f"digits-00{n}" for n in range(5)]
    first = next(t for t in trials if t["metadata"]["name"] == "digits-000")
    assert first["metadata"]["ownerReferences"][0]["kind"] == "LeptonSearch"
    assert first["spec"]["output"]["uri"] == "pvc://artifacts/mnist-search/digits-000"
    row = status["trials"][0]
    width = float(row["params"]["model.parameters.widthMultiplier"])
    assert first["spec"]["model"]["parameters"]["widthMultiplier"] == pytest.approx(width)
    assert row["metrics"]["parameters"] == 90_000 and row["feasible"] is True
    listed = kubectl("get", "ltj", "-n", namespace, "-l", "lepton.ai/search=digits").stdout
    assert listed.count("Succeeded") == 5

    # search -> compress: the compression takes the best trial's model from the search.
    compression = pipeline()[1]
    compression["metadata"] = {"name": "digits-compressed"}
    compression["spec"]["source"] = {"searchRef": {"name": "digits"}}
    create(custom, namespace, compression)
    compressed = wait_for_phase(
        custom, "LeptonCompression", namespace, "digits-compressed", "Succeeded"
    )
    assert compressed["status"]["sourceModelURI"] == status["results"]["modelURI"]


def test_a_restarted_operator_goes_on_from_the_trial_table(
    operator: OperatorProcess,
    kubeconfig_path: Path,
    custom: Any,
    namespace: str,
    volumes: None,
) -> None:
    create(custom, namespace, _search("resumed", trials=6, parallel=3))
    wait_until("the first trials exist", lambda: len(_trials(custom, namespace, "resumed")) >= 3)
    operator.stop()
    with OperatorProcess(kubeconfig_path, log_name="lepton-operator-search-restarted"):
        wait_for_phase(custom, "LeptonSearch", namespace, "resumed", "Succeeded")
    operator.start()
    names = sorted(t["metadata"]["name"] for t in _trials(custom, namespace, "resumed"))
    assert names == [f"resumed-00{n}" for n in range(6)]
    search = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS["LeptonSearch"], "resumed"
    )
    rows = search["status"]["trials"]
    assert [row["name"] for row in rows] == names
    assert all(row["state"] == "Completed" for row in rows)


def test_the_api_server_refuses_a_search_that_changes_its_space_once_started(
    operator: OperatorProcess, custom: Any, namespace: str, volumes: None
) -> None:
    create(custom, namespace, _search("frozen", trials=1, parallel=1))
    wait_until(
        "the search started",
        lambda: (
            custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS["LeptonSearch"], "frozen"
            )
            .get("status", {})
            .get("phase")
            not in (None, "Pending")
        ),
    )
    changed = kubectl(
        "patch", "lsearch", "frozen", "-n", namespace, "--type=json",
        "-p", '[{"op": "replace", "path": "/spec/space/0/max", "value": 0.5}]',
        check=False,
    )  # fmt: skip
    assert changed.returncode != 0
    assert "cannot change once the search has started" in changed.stderr
    raised = kubectl(
        "patch", "lsearch", "frozen", "-n", namespace, "--type=merge",
        "-p", '{"spec": {"budget": {"maxTrials": 2}}}',
    )  # fmt: skip
    assert raised.returncode == 0
    wait_until(
        "the raised budget ran a second trial",
        lambda: len(_trials(custom, namespace, "frozen")) == 2,
    )


def test_a_trial_name_someone_else_holds_fails_that_trial_with_the_fix(
    operator: OperatorProcess, custom: Any, namespace: str, volumes: None
) -> None:
    squatter = pipeline()[0]
    squatter["metadata"] = {"name": "clash-000"}
    create(custom, namespace, squatter)
    create(custom, namespace, _search("clash", trials=1, parallel=1))
    search = wait_for_phase(custom, "LeptonSearch", namespace, "clash", "Failed")
    assert search["status"]["trials"][0]["state"] == "Failed"
    assert "already exists and is not this search's" in search["status"]["message"]
    untouched = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, LTJ, "clash-000")
    assert "ownerReferences" not in untouched["metadata"]


def test_hyperband_trials_wait_at_a_rung_and_the_best_goes_on_from_its_checkpoints(
    operator: OperatorProcess, custom: Any, namespace: str, volumes: None
) -> None:
    """Rungs of 1, 3 and 9 epochs, eta 3, under maxEpochs 15; every trial ties on accuracy.
    The first two trials wait at the first rung; once the third has finished it, the earliest
    of the tie goes on, and (no trial being left to start) on to its full 9 epochs in new
    jobs. The other two are pruned: 11 epochs trained, where the best so far going on at once
    trained both first trials in full."""
    search = _search("halving", trials=3, parallel=2)
    search["spec"]["template"]["hyperparameters"]["epochs"] = 9
    search["spec"]["algorithm"] = {"name": "hyperband", "eta": 3, "minEpochs": 1, "seed": 3}
    search["spec"]["budget"]["maxEpochs"] = 15
    with _MostUnfinished(custom, namespace, "halving") as sampled:
        create(custom, namespace, search)
        status = wait_for_phase(custom, "LeptonSearch", namespace, "halving", "Succeeded")["status"]
    assert 1 <= sampled.most <= 2
    rows = status["trials"]
    states = sorted(row["state"] for row in rows)
    assert states == ["Completed", "Pruned", "Pruned"], rows
    assert status["epochsTrained"] == 11
    jobs = {job["metadata"]["name"]: job for job in _trials(custom, namespace, "halving")}
    for row in rows:
        ladder = [rung["epochs"] for rung in row["rungs"]]
        assert ladder == [1, 3, 9][: len(ladder)]
        names = [row["name"], *(f"{row['name']}-r{k}" for k in range(1, len(ladder)))]
        # One job per finished rung, none beyond: a stopped trial has nothing left running.
        assert sorted(n for n in jobs if n.startswith(row["name"])) == sorted(names)
        for rung, name in enumerate(names):
            job = jobs[name]
            assert job["status"]["phase"] == "Succeeded"
            assert job["metadata"]["labels"]["lepton.ai/rung"] == str(rung)
            hyper = job["spec"]["hyperparameters"]
            assert (hyper["epochs"], hyper["scheduleEpochs"]) == (ladder[rung], 9)
            # Every rung writes where the trial's first did: the next one resumes from there.
            assert job["spec"]["output"]["uri"] == f"pvc://artifacts/mnist-search/{row['name']}"
        if row["state"] == "Pruned":
            assert ladder == [1]
            assert row["message"] == (
                "pruned after 1 epochs: not among the best 1/3 of the trials there"
            )
    best = next(row for row in rows if row["name"] == status["bestTrial"])
    assert best["state"] == "Completed" and best["rungs"][-1]["epochs"] == 9
