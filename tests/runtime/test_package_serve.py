"""Triton model repositories (parsed with Triton's own protobuf) and real local serving."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import text_format
from numpy.typing import NDArray
from tritonclient.grpc import model_config_pb2

from lepton_runtime import package
from lepton_runtime.contract import (
    DatasetSpec,
    DynamicBatching,
    InstanceGroup,
    PackageConfig,
    RuntimeOptions,
    TrainSummary,
)
from lepton_runtime.data import load_splits
from lepton_runtime.errors import JobError
from lepton_runtime.export.artifacts import load_scripted
from lepton_runtime.serve.local import LocalTritonServer
from tests.live_processes import live_processes

pytestmark = pytest.mark.runtime

Images = NDArray[np.float32]


def _parse(path: str) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(Path(path).read_text(), config)
    return config


@pytest.mark.parametrize(
    ("backend", "files", "platform"),
    [
        ("pytorch_libtorch", {"model.pt"}, "pytorch_libtorch"),
        ("onnxruntime", {"model.onnx"}, "onnxruntime_onnx"),
        ("python", {"model.py", "model.onnx", "model.pt"}, ""),
    ],
)
def test_repository_layout_and_config_parse(
    backend: str, files: set[str], platform: str, onnx_artifact: str, tmp_path: Path
) -> None:
    summary = package.run(
        PackageConfig.model_validate(
            {
                "modelUri": onnx_artifact,
                "modelName": "mnist",
                "version": 3,
                "backend": backend,
                "maxBatchSize": 32,
                "dynamicBatching": {
                    "preferredBatchSizes": [8, 16],
                    "maxQueueDelayMicroseconds": 500,
                },
                "instanceGroup": {"count": 2, "kind": "cpu"},
                "repository": str(tmp_path),
            }
        )
    )
    assert {p.name for p in (tmp_path / "mnist" / "3").iterdir()} == files
    config = _parse(summary.config_path)
    assert config.name == "mnist" and config.max_batch_size == 32
    assert config.platform == platform
    assert config.backend == ("python" if backend == "python" else "")
    assert list(config.input[0].dims) == [1, 28, 28]
    assert config.input[0].data_type == model_config_pb2.TYPE_FP32
    assert list(config.output[0].dims) == [10]
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].count == 2
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert config.model_warmup[0].inputs["INPUT__0"].zero_data


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_unbatched_gpu_config_parses(trained: tuple[str, TrainSummary], tmp_path: Path) -> None:
    summary = package.run(
        PackageConfig(
            model_uri=trained[0],
            backend="pytorch_libtorch",
            max_batch_size=0,
            dynamic_batching=DynamicBatching(enabled=False),
            instance_group=InstanceGroup(kind="gpu"),
            repository=str(tmp_path),
        )
    )
    config = _parse(summary.config_path)
    assert list(config.input[0].dims) == [-1, 1, 28, 28]
    assert not config.HasField("dynamic_batching")
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    libtorch = torch.jit.load(str(tmp_path / "model" / "1" / "model.pt"))  # type: ignore[no-untyped-call]
    assert tuple(libtorch(torch.rand(2, 1, 28, 28)).shape) == (2, 10)


def test_package_refuses_missing_format(trained: tuple[str, TrainSummary], tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"model\.onnx"):
        package.run(
            PackageConfig(model_uri=trained[0], backend="onnxruntime", repository=str(tmp_path))
        )


def test_real_triton_serves_correct_predictions(
    trained: tuple[str, TrainSummary], mnist_uri: str, tmp_path: Path
) -> None:
    uri, _ = trained
    package.run(
        PackageConfig(
            model_uri=uri,
            model_name="mnist",
            backend="python",
            dynamic_batching=DynamicBatching(preferred_batch_sizes=[8]),
            repository=str(tmp_path / "repo"),
            runtime=RuntimeOptions(termination_message_path=str(tmp_path / "t")),
        )
    )
    _, test = load_splits(DatasetSpec(uri=mnist_uri, test_limit=32))
    images = test.images.numpy()
    expected = load_scripted(uri)(test.images).argmax(1).numpy()
    with LocalTritonServer(tmp_path / "repo") as server:
        ready = urllib.request.urlopen(f"http://{server.url}/v2/health/ready")
        assert ready.status == 200

        http = httpclient.InferenceServerClient(server.url)
        http_input = httpclient.InferInput("INPUT__0", list(images.shape), "FP32")
        http_input.set_data_from_numpy(images)
        http_logits = http.infer("mnist", [http_input]).as_numpy("OUTPUT__0")
        assert np.array_equal(http_logits.argmax(1), expected)

        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        assert grpc.is_model_ready("mnist")
        for index in range(4):  # single-sample requests, as clients usually send them
            grpc_input = grpcclient.InferInput("INPUT__0", [1, 1, 28, 28], "FP32")
            grpc_input.set_data_from_numpy(images[index : index + 1])
            logits = grpc.infer("mnist", [grpc_input]).as_numpy("OUTPUT__0")
            assert int(logits.argmax()) == int(expected[index])

        metrics = urllib.request.urlopen(server.metrics_url).read().decode()
        success = [
            line
            for line in metrics.splitlines()
            if line.startswith("nv_inference_request_success{")
        ]
        assert success and float(success[0].split()[-1]) >= 5


def _infer(grpc: grpcclient.InferenceServerClient, images: Images) -> Images:
    """The served model's logits for `images`, as one request."""
    request = grpcclient.InferInput("INPUT__0", list(images.shape), "FP32")
    request.set_data_from_numpy(images)
    return grpc.infer("mnist", [request]).as_numpy("OUTPUT__0")  # type: ignore[no-any-return]


def test_real_triton_runs_an_onnx_file_with_onnx_runtime_in_the_python_backend(
    onnx_artifact: str, mnist_uri: str, tmp_path: Path
) -> None:
    """The python backend serves model.onnx when a model has one: the answers are ONNX
    Runtime's, a batch and single images alike."""
    package.run(
        PackageConfig(
            model_uri=onnx_artifact,
            model_name="mnist",
            backend="python",
            repository=str(tmp_path / "repo"),
            runtime=RuntimeOptions(termination_message_path=str(tmp_path / "t")),
        )
    )
    # Were torch to serve, this model would not load.
    (tmp_path / "repo" / "mnist" / "1" / "model.pt").write_bytes(b"not a TorchScript archive")
    _, test = load_splits(DatasetSpec(uri=mnist_uri, test_limit=16))
    images = test.images.numpy()
    session = onnxruntime.InferenceSession(str(Path(onnx_artifact) / "model.onnx"))
    (expected,) = session.run(None, {"INPUT__0": images})
    with LocalTritonServer(tmp_path / "repo") as server:
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        assert np.allclose(_infer(grpc, images), expected, atol=1e-5)
        single = _infer(grpc, images[3:4])
        assert np.allclose(single, expected[3:4], atol=1e-5)


def test_a_named_torchscript_format_makes_the_python_backend_run_torch(
    onnx_artifact: str, mnist_uri: str, tmp_path: Path
) -> None:
    """modelFormat torchscript (what a tuning run may choose) serves the TorchScript of a
    model that has an ONNX file as well."""
    summary = package.run(
        PackageConfig(
            model_uri=onnx_artifact,
            model_name="mnist",
            backend="python",
            model_format="torchscript",
            repository=str(tmp_path / "repo"),
            runtime=RuntimeOptions(termination_message_path=str(tmp_path / "t")),
        )
    )
    parsed = _parse(summary.config_path)
    assert parsed.parameters["lepton_model_format"].string_value == "torchscript"
    # Were ONNX Runtime to serve, this model would not load.
    (tmp_path / "repo" / "mnist" / "1" / "model.onnx").write_bytes(b"not an ONNX model")
    _, test = load_splits(DatasetSpec(uri=mnist_uri, test_limit=16))
    images = test.images.numpy()
    with torch.inference_mode():
        expected = load_scripted(onnx_artifact)(test.images).numpy()
    with LocalTritonServer(tmp_path / "repo") as server:
        logits = _infer(grpcclient.InferenceServerClient(server.grpc_url), images)
    assert np.allclose(logits, expected, atol=1e-4)


def test_a_named_format_the_model_lacks_is_refused_before_serving(
    trained: tuple[str, TrainSummary], tmp_path: Path
) -> None:
    with pytest.raises(
        JobError, match=r"modelFormat onnx: the python backend can run \['torchscript'\]"
    ):
        package.run(
            PackageConfig(
                model_uri=trained[0],
                backend="python",
                model_format="onnx",
                repository=str(tmp_path),
            )
        )
    with pytest.raises(ValueError, match="modelFormat chooses the file the python backend runs"):
        PackageConfig(
            model_uri=trained[0],
            backend="pytorch_libtorch",
            model_format="torchscript",
            repository=str(tmp_path),
        )


def _live_members(group: int) -> set[int]:
    """Live processes of a process group."""
    return {int(entry.name) for entry, fields in live_processes() if int(fields[2]) == group}


def test_stop_kills_the_stubs_of_a_server_that_died(
    trained: tuple[str, TrainSummary], tmp_path: Path
) -> None:
    """A server killed by a signal cannot stop its python-backend stubs: stop() does."""
    package.run(
        PackageConfig(
            model_uri=trained[0],
            model_name="mnist",
            backend="python",
            repository=str(tmp_path / "repo"),
            runtime=RuntimeOptions(termination_message_path=str(tmp_path / "t")),
        )
    )
    server = LocalTritonServer(tmp_path / "repo").start()
    group = server.pid
    assert group is not None
    try:
        assert _live_members(group) - {group}, "the model's stub runs in the server's group"
        os.kill(group, signal.SIGKILL)
    finally:
        server.stop()
    deadline = time.monotonic() + 10
    while _live_members(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _live_members(group)
