"""The operator on the real control plane: CRDs, admission, reconciliation, status, GC.

kwok plays every kubelet, so pods "run" without doing work: a pod annotation set through
`spec.podMetadata` tells kwok what the container reports (its termination message, or a
failure), standing in for the runtime that cannot run on simulated GPUs.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from e2e.claims import create_bound_claims
from e2e.lepton_operator_process import REPO_ROOT, OperatorProcess
from e2e.waiting import wait_until
from lepton_runtime.contract import CompressSummary, TrainSummary, Trial

pytestmark = pytest.mark.e2e

GROUP, VERSION = "lepton.ai", "v1alpha1"
PLURALS = {
    "LeptonTrainingJob": "leptontrainingjobs",
    "LeptonCompression": "leptoncompressions",
    "LeptonEndpoint": "leptonendpoints",
}
SAMPLES = REPO_ROOT / "samples"
TERMINATION_ANNOTATION = "lepton.ai/e2e-termination-message"
FAIL_ANNOTATION = "lepton.ai/e2e-fail"

TRAIN_SUMMARY = TrainSummary(
    accuracy=0.9912,
    loss=0.031,
    epochs=3,
    steps=375,
    samples_per_second=640.0,
    world_size=2,
    model_uri="file:///mnt/lepton/pvc/artifacts/mnist/train",
)
COMPRESS_SUMMARY = CompressSummary(
    baseline_accuracy=0.9912,
    final_accuracy=0.9885,
    size_bytes_before=1_600_000,
    size_bytes_after=120_000,
    sparsity=0.8,
    latency_ms_before=0.9,
    latency_ms_after=0.5,
    quantization="dynamic-int8",
    trials=[
        Trial(
            index=0,
            sparsity=0.8,
            quantization="dynamic-int8",
            size_bytes=120_000,
            accuracy=0.9885,
            accuracy_drop=0.0027,
            latency_ms=0.5,
            kept=True,
            reason="within the accuracy guard",
        )
    ],
    model_uri="file:///mnt/lepton/pvc/artifacts/mnist/compressed",
    formats=["model.ts"],
)


def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "kubectl"), *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


@pytest.fixture(scope="module")
def crds(kubeconfig_path: Path) -> None:
    kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    for plural in PLURALS.values():
        kubectl("wait", "--for=condition=Established", f"crd/{plural}.{GROUP}", "--timeout=60s")
    # Established comes before discovery and the OpenAPI document list the new kinds.
    wait_until(
        "discovery and OpenAPI serve ltj, lcomp and lep",
        lambda: (
            kubectl("get", "ltj,lcomp,lep", "-A", check=False).returncode == 0
            and kubectl("explain", "lep.spec", check=False).returncode == 0
        ),
    )


@pytest.fixture(scope="module")
def operator(crds: None, kubeconfig_path: Path) -> Iterator[OperatorProcess]:
    with OperatorProcess(kubeconfig_path) as process:
        yield process


@pytest.fixture
def custom(kube_api: ApiClient) -> Any:
    return CustomObjectsApi(kube_api)


@pytest.fixture
def core(kube_api: ApiClient) -> Any:
    return CoreV1Api(kube_api)


@pytest.fixture
def volumes(core: Any, namespace: str) -> Iterator[None]:
    """The claims the samples' pvc:// URIs name, bound to hostPath volumes."""
    created = create_bound_claims(core, namespace)
    yield
    for volume in created:
        core.delete_persistent_volume(volume)


def get(custom: Any, kind: str, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[kind], name
    )
    return result


def create(custom: Any, namespace: str, manifest: dict[str, Any]) -> None:
    manifest["metadata"]["namespace"] = namespace
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[manifest["kind"]], manifest
    )


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for entry in obj.get("status", {}).get("conditions", []):
        if entry["type"] == type_:
            return dict(entry)
    return None


def wait_for_phase(custom: Any, kind: str, namespace: str, name: str, phase: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(custom, kind, namespace, name)
        return obj if obj.get("status", {}).get("phase") == phase else None

    return wait_until(
        f"{kind} {name} reaches {phase}",
        probe,
        describe_state=lambda: get(custom, kind, namespace, name).get("status"),
    )


def events_for(core: Any, namespace: str, name: str) -> list[tuple[str, str]]:
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return [(e.type, e.reason) for e in events.items]


def pipeline() -> list[dict[str, Any]]:
    documents = list(yaml.safe_load_all((SAMPLES / "mnist-pipeline.yaml").read_text()))
    training, compression, endpoint = documents
    # What the runtime would report, handed to kwok (see the module docstring).
    training["spec"]["podMetadata"] = {
        "annotations": {TERMINATION_ANNOTATION: TRAIN_SUMMARY.model_dump_json(by_alias=True)}
    }
    compression["spec"]["podMetadata"] = {
        "annotations": {TERMINATION_ANNOTATION: COMPRESS_SUMMARY.model_dump_json(by_alias=True)}
    }
    return [training, compression, endpoint]


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
                for kind in PLURALS
            ),
        )
        assert snapshot() == before
    operator.start()
