"""Builders: rendered children against golden YAML, and the rules behind them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lepton_operator.api.compression import LeptonCompression
from lepton_operator.api.endpoint import LeptonEndpoint
from lepton_operator.api.training import LeptonTrainingJob
from lepton_operator.builders.endpoint import ResolvedEndpointSource, render_endpoint_children
from lepton_operator.builders.jobs import (
    ResolvedModelSource,
    render_compression_children,
    render_training_children,
)
from lepton_operator.builders.runtime_config import StorageLayout, render_compress_config
from lepton_operator.scheduling.placement import Placement, requested_placement
from lepton_operator.settings import OperatorSettings
from lepton_runtime.contract import RuntimeOptions
from tests.factories import make_compression, make_endpoint, make_training_job
from tests.golden import assert_matches_golden

SETTINGS = OperatorSettings(runtime_image="registry.local/lepton/runtime:test")
A100 = requested_placement(
    "a100", "NVIDIA-A100-SXM4-80GB", 8, "lepton.ai/node-pool", "nvidia.com/gpu.product"
)


def _training(spec: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    job = LeptonTrainingJob.model_validate(make_training_job(spec=spec))
    return render_training_children(job, A100, SETTINGS)


def _by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


def test_training_job_matches_golden() -> None:
    manifests = _training(
        {
            "resources": {"workers": 4, "gpusPerWorker": 8, "gpuType": "NVIDIA-A100-SXM4-80GB"},
            "scheduling": {"nodePool": "a100", "priorityClassName": "training"},
            "runPolicy": {"activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 600},
        }
    )
    assert_matches_golden("training-job", manifests)


def test_compression_matches_golden() -> None:
    compression = LeptonCompression.model_validate(make_compression())
    source = ResolvedModelSource(
        model_uri="pvc://artifacts/mnist",
        dataset=LeptonTrainingJob.model_validate(make_training_job()).spec.dataset,
        seed=7,
    )
    manifests = render_compression_children(compression, source, Placement(pool=None), SETTINGS)
    assert_matches_golden("compression", manifests)


def test_codebook_compression_passes_its_bits_and_steps_to_the_runtime() -> None:
    compression = LeptonCompression.model_validate(
        make_compression(
            spec={"quantization": "codebook", "codebook": {"bits": 4, "fineTuneSteps": 50}}
        )
    )
    config = render_compress_config(
        compression.spec,
        source_model_uri="pvc://artifacts/mnist",
        dataset=LeptonTrainingJob.model_validate(make_training_job()).spec.dataset,
        layout=StorageLayout("/mnt"),
        runtime=RuntimeOptions(),
    )
    assert config.quantization == "codebook"
    assert (config.codebook.bits, config.codebook.fine_tune_steps) == (4, 50)
    # Without a codebook section the runtime's defaults apply.
    default = LeptonCompression.model_validate(make_compression(spec={"quantization": "codebook"}))
    assert default.spec.codebook is None


def test_endpoint_with_autoscaling_matches_golden() -> None:
    endpoint = LeptonEndpoint.model_validate(
        make_endpoint(
            spec={
                "autoscaling": {
                    "minReplicas": 2,
                    "maxReplicas": 6,
                    "metric": "queue-time",
                    "target": 2000,
                }
            }
        )
    )
    source = ResolvedEndpointSource("pvc://artifacts/mnist-compressed")
    manifests = render_endpoint_children(endpoint, source, Placement(pool=None), SETTINGS)
    assert_matches_golden("endpoint-autoscaling", manifests)


def test_master_plus_workers_and_gpus_per_worker() -> None:
    job = _by_kind(_training({"resources": {"workers": 4, "gpusPerWorker": 8}}))["PyTorchJob"]
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1
    assert replicas["Worker"]["replicas"] == 3
    assert job["spec"]["nprocPerNode"] == "8"
    container = replicas["Worker"]["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8


def test_single_worker_has_only_a_master() -> None:
    job = _by_kind(_training({"resources": {"workers": 1}}))["PyTorchJob"]
    assert list(job["spec"]["pytorchReplicaSpecs"]) == ["Master"]


def test_elastic_job_uses_workers_and_an_elastic_policy() -> None:
    job = _by_kind(
        _training({"resources": {"workers": 2}, "elastic": {"minWorkers": 1, "maxWorkers": 4}})
    )["PyTorchJob"]
    assert list(job["spec"]["pytorchReplicaSpecs"]) == ["Worker"]
    assert job["spec"]["elasticPolicy"]["minReplicas"] == 1
    assert job["spec"]["elasticPolicy"]["maxReplicas"] == 4


def test_children_are_owned_labelled_and_deterministic() -> None:
    first, second = _training(), _training()
    assert first == second
    for manifest in first:
        meta = manifest["metadata"]
        assert meta["ownerReferences"][0]["controller"] is True
        assert meta["ownerReferences"][0]["kind"] == "LeptonTrainingJob"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "lepton-operator"
        assert meta["labels"]["lepton.ai/trainingjob"] == "mnist"


def test_rendered_contract_points_at_the_mounted_claims() -> None:
    manifests = _by_kind(_training())
    config = json.loads(manifests["ConfigMap"]["data"]["config.json"])
    assert config["dataset"]["uri"] == "file:///mnt/lepton/pvc/datasets/mnist"
    assert config["outputUri"] == "file:///mnt/lepton/pvc/artifacts/mnist"
    assert config["checkpoint"]["dir"] == "/mnt/lepton/pvc/artifacts/mnist/checkpoints"
    pod = manifests["PyTorchJob"]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"datasets", "artifacts"}


def test_s3_credentials_come_only_from_the_secret() -> None:
    manifests = _by_kind(
        _training({"dataset": {"uri": "s3://data/mnist", "secretRef": {"name": "s3-creds"}}})
    )
    pod = manifests["PyTorchJob"]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert "s3-creds" not in manifests["ConfigMap"]["data"]["config.json"]


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    pod = _by_kind(_training())["PyTorchJob"]["spec"]["pytorchReplicaSpecs"]["Master"]["template"][
        "spec"
    ]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]


def test_user_code_runs_its_own_image_and_command_without_a_contract() -> None:
    manifests = _training(
        {
            "model": {
                "name": None,
                "image": "registry.local/me/train:1",
                "command": ["python", "train.py"],
            }
        }
    )
    assert [m["kind"] for m in manifests] == ["PyTorchJob"]
    container = manifests[0]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"][
        "containers"
    ][0]
    assert container["image"] == "registry.local/me/train:1"
    assert container["command"] == ["python", "train.py"]


def test_queue_name_creates_the_job_suspended_for_kueue() -> None:
    job = _by_kind(_training({"scheduling": {"queueName": "team-a"}}))["PyTorchJob"]
    assert job["spec"]["runPolicy"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"


@pytest.mark.parametrize(
    ("spec", "kinds", "replicas"),
    [
        ({}, ["ConfigMap", "Deployment", "Service"], 1),
        ({"replicas": 3}, ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"], 3),
        (
            {"autoscaling": {"minReplicas": 1, "maxReplicas": 3}},
            ["ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"],
            None,
        ),
    ],
)
def test_endpoint_children_follow_replicas_and_autoscaling(
    spec: dict[str, Any], kinds: list[str], replicas: int | None
) -> None:
    endpoint = LeptonEndpoint.model_validate(make_endpoint(spec=spec))
    manifests = render_endpoint_children(
        endpoint, ResolvedEndpointSource("pvc://artifacts/m"), Placement(pool=None), SETTINGS
    )
    assert [m["kind"] for m in manifests] == kinds
    deployment = _by_kind(manifests)["Deployment"]
    assert deployment["spec"].get("replicas") == replicas
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_endpoint_probes_wait_for_the_model_to_load() -> None:
    endpoint = LeptonEndpoint.model_validate(make_endpoint())
    manifests = render_endpoint_children(
        endpoint, ResolvedEndpointSource("pvc://artifacts/m"), Placement(pool=None), SETTINGS
    )
    triton = _by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/models/mnist/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert {p["containerPort"] for p in triton["ports"]} == {8000, 8001, 8002}


def test_gpu_endpoint_gets_gpu_limits_tolerations_and_instance_kind() -> None:
    endpoint = LeptonEndpoint.model_validate(
        make_endpoint(spec={"resources": {"gpus": 1, "gpuType": "NVIDIA-H100-80GB-HBM3"}})
    )
    placement = requested_placement(
        "auto", "NVIDIA-H100-80GB-HBM3", 1, "lepton.ai/node-pool", "nvidia.com/gpu.product"
    )
    manifests = _by_kind(
        render_endpoint_children(endpoint, ResolvedEndpointSource("s3://m/x"), placement, SETTINGS)
    )
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    package = json.loads(manifests["ConfigMap"]["data"]["config.json"])
    assert package["instanceGroup"]["kind"] == "gpu"


def test_storage_layout_maps_claims_both_ways() -> None:
    layout = StorageLayout("/mnt/lepton/pvc")
    runtime_uri = layout.to_runtime_uri("pvc://artifacts/a/b")
    assert runtime_uri == "file:///mnt/lepton/pvc/artifacts/a/b"
    assert layout.to_user_uri(runtime_uri) == "pvc://artifacts/a/b"
    assert layout.to_runtime_uri("s3://bucket/x") == "s3://bucket/x"
    assert layout.to_local_path("s3://bucket/x") is None


def test_pod_metadata_reaches_the_pods_without_overriding_lepton_labels() -> None:
    manifests = _by_kind(
        _training(
            {
                "podMetadata": {
                    "labels": {"team": "vision", "lepton.ai/trainingjob": "spoofed"},
                    "annotations": {"sidecar.istio.io/inject": "false"},
                }
            }
        )
    )
    template = manifests["PyTorchJob"]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    assert template["metadata"]["labels"]["team"] == "vision"
    assert template["metadata"]["labels"]["lepton.ai/trainingjob"] == "mnist"
    assert template["metadata"]["annotations"] == {
        "sidecar.istio.io/inject": "false",
        "lepton.ai/owner": "LeptonTrainingJob/mnist",  # the pod watch reports to its owner
    }
