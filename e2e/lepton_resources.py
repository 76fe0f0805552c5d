"""Shared by the operator's e2e tests: fixtures for the CRDs and a running operator, and
small helpers to create Lepton resources and wait for their status.

kwok plays every kubelet, so pods "run" without doing work: a pod annotation set through
`spec.podMetadata` tells kwok what the container reports (its termination message, or a
failure), standing in for the runtime that cannot run on simulated GPUs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi

from e2e.claims import create_bound_claims
from e2e.lepton_operator_process import REPO_ROOT, OperatorProcess
from e2e.waiting import DEFAULT_TIMEOUT_SECONDS, wait_until
from lepton_runtime.contract import CompressSummary, TrainSummary, Trial

GROUP, VERSION = "lepton.ai", "v1alpha1"
PLURALS = {
    "LeptonTrainingJob": "leptontrainingjobs",
    "LeptonCompression": "leptoncompressions",
    "LeptonEndpoint": "leptonendpoints",
    "LeptonSearch": "leptonsearches",
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
    install_crds()


def crd_established(crd: str) -> bool:
    """Is crd/<plural>.<group> Established? (`kubectl wait` fails at once on a CRD it cannot
    read yet, NotFound: callers retry.)"""
    answer = kubectl(
        "wait", "--for=condition=Established", f"crd/{crd}", "--timeout=10s", check=False
    )  # fmt: skip
    return answer.returncode == 0


def install_crds() -> None:
    """Apply Lepton's CRDs and wait until kubectl can get and explain the kinds."""
    kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    for plural in PLURALS.values():
        # `kubectl wait` fails at once on a CRD it cannot read (NotFound); once, in a clean-clone
        # run, it failed so for the second cluster of the fault tests. Retried until Established.
        crd = f"{plural}.{GROUP}"
        wait_until(f"crd/{crd} Established", partial(crd_established, crd), 120)
    # Established comes before discovery and the OpenAPI document list the new kinds.
    wait_until(
        "discovery and OpenAPI serve ltj, lcomp, lep and lsearch",
        lambda: (
            kubectl("get", "ltj,lcomp,lep,lsearch", "-A", check=False).returncode == 0
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


def wait_for_phase(
    custom: Any,
    kind: str,
    namespace: str,
    name: str,
    phase: str,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(custom, kind, namespace, name)
        return obj if obj.get("status", {}).get("phase") == phase else None

    return wait_until(
        f"{kind} {name} reaches {phase}",
        probe,
        timeout,
        describe_state=lambda: get(custom, kind, namespace, name).get("status"),
    )


def wait_for_ready_reason(
    custom: Any, kind: str, namespace: str, name: str, reason: str, mentioning: str = ""
) -> dict[str, Any]:
    """The resource's Ready condition, once its reason is `reason` (and its message mentions
    `mentioning`)."""

    def probe() -> dict[str, Any] | None:
        ready = condition(get(custom, kind, namespace, name), "Ready")
        if ready is None or ready["reason"] != reason or mentioning not in ready["message"]:
            return None
        return ready

    return wait_until(
        f"{kind} {name} reports {reason}",
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
