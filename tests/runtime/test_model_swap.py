"""A model swapped under load on the real local Triton (explicit model control): the new
version is loaded beside the serving one, then the old one unloaded; no request fails."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from lepton_runtime import package
from lepton_runtime.contract import PackageConfig, TrainSummary
from lepton_runtime.errors import JobError
from lepton_runtime.serve.local import LocalTritonServer

pytestmark = pytest.mark.runtime


def _package(model_uri: str, repository: Path) -> None:
    package.run(
        PackageConfig.model_validate(
            {
                "modelUri": model_uri,
                "modelName": "mnist",
                "backend": "python",
                "repository": str(repository),
                "runtime": {"terminationMessagePath": str(repository / "t")},
            }
        )
    )


def test_a_client_hammering_through_a_version_swap_sees_no_failure(
    trained: tuple[str, TrainSummary], tmp_path: Path
) -> None:
    _package(trained[0], tmp_path)
    versions: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer(url: str) -> None:
        client = grpcclient.InferenceServerClient(url)
        request = grpcclient.InferInput("INPUT__0", [1, 1, 28, 28], "FP32")
        request.set_data_from_numpy(np.zeros((1, 1, 28, 28), dtype=np.float32))
        while not stop.is_set():
            try:
                versions.append(client.infer("mnist", [request]).get_response().model_version)
            except Exception as error:  # any failure at all is what this test counts
                failures.append(repr(error))

    with LocalTritonServer(tmp_path, explicit_model_control=True) as server:
        server.load("mnist")
        client = threading.Thread(target=hammer, args=(server.grpc_url,))
        client.start()
        try:
            while len(versions) < 50 and client.is_alive():
                time.sleep(0.05)
            shutil.copytree(tmp_path / "mnist" / "1", tmp_path / "mnist" / "2")
            server.load("mnist")  # version 2 up, then version 1 unloaded (latest policy)
            answered = len(versions)
            while len(versions) < answered + 50 and client.is_alive():
                time.sleep(0.05)
        finally:
            stop.set()
            client.join(timeout=30)
    assert not failures, f"{len(failures)} of {len(failures) + len(versions)}: {failures[:3]}"
    assert versions[0] == "1" and versions[-1] == "2"
    assert set(versions) == {"1", "2"}


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(
    trained: tuple[str, TrainSummary], tmp_path: Path
) -> None:
    _package(trained[0], tmp_path)
    with LocalTritonServer(tmp_path, explicit_model_control=True) as server:
        server.load("mnist")
        broken = tmp_path / "mnist" / "2"
        shutil.copytree(tmp_path / "mnist" / "1", broken)
        (broken / "model.pt").write_bytes(b"not a TorchScript archive")
        with pytest.raises(JobError, match="model mnist failed to load"):
            server.load("mnist")
        client = grpcclient.InferenceServerClient(server.grpc_url)
        request = grpcclient.InferInput("INPUT__0", [1, 1, 28, 28], "FP32")
        request.set_data_from_numpy(np.zeros((1, 1, 28, 28), dtype=np.float32))
        assert client.infer("mnist", [request]).get_response().model_version == "1"
