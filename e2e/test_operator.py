"""The operator on the real control plane: CRDs, admission, reconciliation, status, GC.

kwok plays every kubelet (see e2e/lepton_resources.py for how tests tell it what a pod reports).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import (
    FAIL_ANNOTATION,
    GROUP,
    PLURALS,
    SAMPLES,
    TERMINATION_ANNOTATION,
    VERSION,
    condition,
    create,
    events_for,
    get,
    kubectl,
    pipeline,
    wait_for_phase,
)
from e2e.waiting import wait_until

pytestmark = pytest.mark.e2e


# --------------------------------------------------------------------------- admission


def test_crds_are_served_with_explain_and_category(crds: None) -> None:
    explained = kubectl("explain", "ltj.spec.model.name").stdout
    assert "built-in model" in explained
    assert kubectl("get", "lepton", "-A").returncode == 0
    assert "leptonendpoints" in kubectl("api-resources", "--categories=lepton").stdout


@pytest.mark.parametrize("path", sorted((SAMPLES / "invalid").glob("*.yaml")), ids=lambda p: p.name)
def test_apiserver_rejects_invalid_samples_with_the_promised_message(
    crds: None, path: Path
) -> None:
    expected = next(
        line.split(":", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.startswith("# expect:")
    )
    result = kubectl("create", "--dry-run=server", "-f", str(path), check=False)
    assert result.returncode != 0, f"{path.name} was accepted"
    assert expected in result.stderr, result.stderr


def test_valid_samples_are_accepted_and_defaulted(crds: None, custom: Any, namespace: str) -> None:
    result = kubectl("create", "-n", namespace, "-f", str(SAMPLES / "training-job.yaml"))
    assert result.returncode == 0
    job = get(custom, "LeptonTrainingJob", namespace, "mnist-leptonnet")
    assert job["spec"]["runPolicy"]["backoffLimit"] == 3
    assert job["spec"]["model"]["parameters"]["numClasses"] == 10


def test_model_is_frozen_once_the_job_runs(crds: None, custom: Any, namespace: str) -> None:
    kubectl("create", "-n", namespace, "-f", str(SAMPLES / "training-job.yaml"))
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURALS["LeptonTrainingJob"],
        "mnist-leptonnet",
        {"status": {"phase": "Running"}},
    )
    with pytest.raises(ApiException) as rejected:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURALS["LeptonTrainingJob"],
            "mnist-leptonnet",
            {"spec": {"model": {"name": "mlp"}}},
        )
    assert "cannot change once the job has started" in str(rejected.value.body)


# --------------------------------------------------------------------------- reconciliation


def test_mnist_pipeline_reaches_succeeded_and_available(
    operator: OperatorProcess, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    for manifest in pipeline():
        create(custom, namespace, manifest)

    training = wait_for_phase(custom, "LeptonTrainingJob", namespace, "mnist", "Succeeded")
    assert training["status"]["results"]["accuracy"] == pytest.approx(0.9912)
    assert training["status"]["results"]["modelURI"] == "pvc://artifacts/mnist/train"
    assert condition(training, "Succeeded")["status"] == "True"  # type: ignore[index]
    pytorchjob = custom.get_namespaced_custom_object(
        "kubeflow.org", "v1", namespace, "pytorchjobs", "mnist"
    )
    owner = pytorchjob["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["controller"]) == ("LeptonTrainingJob", True)

    compression = wait_for_phase(
        custom, "LeptonCompression", namespace, "mnist-compressed", "Succeeded"
    )
    results = compression["status"]["results"]
    assert results["sizeRatio"] == pytest.approx(1_600_000 / 120_000, rel=1e-3)
    assert compression["status"]["sourceModelURI"] == "pvc://artifacts/mnist/train"
    config = json.loads(
        core.read_namespaced_config_map("mnist-compressed-compress-config", namespace).data[
            "config.json"
        ]
    )
    assert config["sourceModelUri"] == "file:///mnt/lepton/pvc/artifacts/mnist/train"

    endpoint = wait_for_phase(custom, "LeptonEndpoint", namespace, "mnist", "Available")
    assert endpoint["status"]["url"] == f"http://mnist.{namespace}.svc.cluster.local:8000"
    assert condition(endpoint, "Available")["status"] == "True"  # type: ignore[index]
    assert core.read_namespaced_service("mnist", namespace).spec.ports[0].port == 8000
    kubectl("wait", "-n", namespace, "--for=condition=Available", "lep/mnist", "--timeout=30s")
    assert ("Normal", "Succeeded") in events_for(core, namespace, "mnist-compressed")
    assert "lepton_phase_transitions_total" in operator.metrics()


TRICKY_NAMES = {
    "dotted": "mnist.v2.run",
    "label-length": "m" * 63,
    "over-a-label": "n" * 64 + ".x",
    "longest": ".".join(["a" * 63] * 3) + "." + "b" * 61,  # 253 characters
}


@pytest.mark.parametrize("name", TRICKY_NAMES.values(), ids=TRICKY_NAMES.keys())
def test_names_the_api_server_accepts_give_valid_children_and_succeed(
    operator: OperatorProcess, custom: Any, namespace: str, volumes: None, name: str
) -> None:
    job = pipeline()[0]
    job["metadata"] = {"name": name}
    create(custom, namespace, job)
    finished = wait_for_phase(custom, "LeptonTrainingJob", namespace, name, "Succeeded")
    assert finished["status"]["results"]["accuracy"] == pytest.approx(0.9912)
    jobs = custom.list_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs")
    (pytorchjob,) = jobs["items"]
    assert pytorchjob["metadata"]["ownerReferences"][0]["name"] == name
    assert len(pytorchjob["metadata"]["name"]) <= 51


def test_failing_worker_fails_the_job_with_an_event(
    operator: OperatorProcess, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    training = pipeline()[0]
    training["spec"]["runPolicy"] = {"backoffLimit": 0}
    training["spec"]["podMetadata"] = {
        "annotations": {FAIL_ANNOTATION: "true", TERMINATION_ANNOTATION: "loss became NaN"}
    }
    create(custom, namespace, training)
    failed = wait_for_phase(custom, "LeptonTrainingJob", namespace, "mnist", "Failed")
    assert condition(failed, "Failed")["status"] == "True"  # type: ignore[index]
    wait_until(
        "a Warning event for the failure",
        lambda: ("Warning", "Failed") in events_for(core, namespace, "mnist"),
    )


def test_missing_source_waits_with_a_reason_and_recovers(
    operator: OperatorProcess, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    training, compression, _ = pipeline()
    create(custom, namespace, compression)

    def blocked() -> dict[str, Any] | None:
        ready = condition(get(custom, "LeptonCompression", namespace, "mnist-compressed"), "Ready")
        return ready if ready and ready["reason"] == "SourceNotFound" else None

    ready = wait_until("compression reports SourceNotFound", blocked)
    assert ready["status"] == "False"
    assert "trainingJobRef.name" in ready["message"]
    assert ("Normal", "Pending") in events_for(core, namespace, "mnist-compressed")

    create(custom, namespace, training)  # the fix: the source appears and succeeds
    wait_for_phase(custom, "LeptonCompression", namespace, "mnist-compressed", "Succeeded")


def test_missing_claim_is_reported_and_recovers(
    operator: OperatorProcess, custom: Any, core: Any, namespace: str
) -> None:
    create(custom, namespace, pipeline()[0])

    def reason() -> str | None:
        ready = condition(get(custom, "LeptonTrainingJob", namespace, "mnist"), "Ready")
        return ready["message"] if ready and ready["reason"] == "VolumeNotFound" else None

    message: str = wait_until("VolumeNotFound", reason)
    assert "PersistentVolumeClaim 'datasets'" in message
    for claim in ("datasets", "artifacts"):
        core.create_namespaced_persistent_volume_claim(
            namespace,
            {
                "metadata": {"name": claim},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
    wait_until(
        "the PyTorchJob once the claims exist",
        lambda: custom.list_namespaced_custom_object(
            "kubeflow.org", "v1", namespace, "pytorchjobs"
        )["items"],
    )


def test_deleting_a_resource_garbage_collects_its_children(
    operator: OperatorProcess, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    training = pipeline()[0]
    training["spec"]["podMetadata"] = {"annotations": {"lepton.ai/e2e-run-duration": "600s"}}
    create(custom, namespace, training)
    wait_until(
        "the PyTorchJob",
        lambda: custom.list_namespaced_custom_object(
            "kubeflow.org", "v1", namespace, "pytorchjobs"
        )["items"],
    )
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS["LeptonTrainingJob"], "mnist"
    )
    wait_until(
        "PyTorchJob and ConfigMap garbage-collected",
        lambda: (
            not custom.list_namespaced_custom_object(
                "kubeflow.org", "v1", namespace, "pytorchjobs"
            )["items"]
            and not core.list_namespaced_config_map(
                namespace, label_selector="lepton.ai/trainingjob=mnist"
            ).items
        ),
    )


def test_restarting_the_operator_changes_nothing(
    crds: None,
    operator: OperatorProcess,
    kubeconfig_path: Path,
    custom: Any,
    core: Any,
    namespace: str,
    volumes: None,
) -> None:
    for manifest in pipeline():
        create(custom, namespace, manifest)
    wait_for_phase(custom, "LeptonEndpoint", namespace, "mnist", "Available")

    def snapshot() -> dict[str, Any]:
        children = {
            f"ConfigMap/{c.metadata.name}": c.metadata.resource_version
            for c in core.list_namespaced_config_map(
                namespace, label_selector="app.kubernetes.io/managed-by=lepton-operator"
            ).items
        }
        for job in custom.list_namespaced_custom_object(
            "kubeflow.org", "v1", namespace, "pytorchjobs"
        )["items"]:
            children[f"PyTorchJob/{job['metadata']['name']}"] = job["metadata"]["resourceVersion"]
        statuses = {
            kind: get(custom, kind, namespace, name)["status"]
            for kind, name in (
                ("LeptonTrainingJob", "mnist"),
                ("LeptonCompression", "mnist-compressed"),
                ("LeptonEndpoint", "mnist"),
            )
        }
        return {"children": children, "statuses": statuses}

    before = snapshot()
    operator.stop()
    with OperatorProcess(kubeconfig_path, log_name="lepton-operator-restarted") as restarted:
        wait_until(
            "the restarted operator resumed all three resources",
            lambda: all(
                f'lepton_reconcile_duration_seconds_count{{kind="{kind}"}}' in restarted.metrics()
                for kind in ("LeptonTrainingJob", "LeptonCompression", "LeptonEndpoint")
            ),
        )
        assert snapshot() == before
    operator.start()
