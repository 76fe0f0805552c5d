"""Tuning on the real local Triton: candidates measured under load, the choice left as the
model's config.pbtxt and served; a budget nothing meets; a model that fails to load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from lepton_runtime import package
from lepton_runtime.contract import PackageConfig, TrainSummary, TuningRequest
from lepton_runtime.errors import JobError
from lepton_runtime.export.artifacts import read_card
from lepton_runtime.serve.local import LocalTritonServer
from lepton_runtime.tune.runner import tune

pytestmark = pytest.mark.runtime

# Small enough for two busy cores: 2 x 2 batch sizes/instances, short measurements.
SPACE = {
    "maxBatchSizes": [1, 8],
    "maxQueueDelaysMicroseconds": [100],
    "instanceCounts": [1, 2],
}


def _package(uri: str, repository: Path, tuning: dict[str, object] | None) -> PackageConfig:
    return PackageConfig.model_validate(
        {
            "modelUri": uri,
            "modelName": "mnist",
            "backend": "python",
            "repository": str(repository),
            "tuning": tuning,
            "runtime": {"terminationMessagePath": str(repository / "t")},
        }
    )


def _served_config(repository: Path) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    text_format.Parse((repository / "mnist" / "config.pbtxt").read_text(), config)
    return config


def test_tuning_measures_chooses_and_leaves_the_choice_served(
    trained: tuple[str, TrainSummary], tmp_path: Path
) -> None:
    request = {
        "latencyBudgetMs": 10_000,
        "concurrency": [4],
        "space": SPACE,
        "secondsPerCandidate": 0.4,
    }
    summary = package.run(_package(trained[0], tmp_path, request))
    result = summary.tuning
    assert result is not None
    assert result.grid_size == 4
    assert 1 <= len(result.candidates) <= result.grid_size
    assert result.budget_met and result.chosen.within_budget
    assert all(m.throughput > 0 and m.p99_ms >= m.p50_ms > 0 for m in result.candidates)
    assert result.chosen.throughput == max(m.throughput for m in result.candidates)
    served = _served_config(tmp_path)
    assert served.max_batch_size == result.chosen.settings.max_batch_size
    assert served.instance_group[0].count == result.chosen.settings.instances
    assert served.dynamic_batching.max_queue_delay_microseconds == 100
    with LocalTritonServer(tmp_path) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        request_input = grpcclient.InferInput("INPUT__0", [1, 1, 28, 28], "FP32")
        request_input.set_data_from_numpy(np.zeros((1, 1, 28, 28), dtype=np.float32))
        logits = client.infer("mnist", [request_input]).as_numpy("OUTPUT__0")
    assert logits.shape == (1, 10)


def test_tuning_measures_each_format_of_a_model_that_has_two_and_serves_the_choice(
    onnx_artifact: str, tmp_path: Path
) -> None:
    request = {
        "latencyBudgetMs": 10_000,
        "concurrency": [4],
        "space": {"maxBatchSizes": [8], "maxQueueDelaysMicroseconds": [100], "instanceCounts": [1]},
        "secondsPerCandidate": 0.4,
    }
    result = package.run(_package(onnx_artifact, tmp_path, request)).tuning
    assert result is not None
    assert result.grid_size == 2  # one config, two formats
    assert {m.settings.model_format for m in result.candidates} == {"onnx", "torchscript"}
    assert result.candidates[0].settings.model_format == "onnx"  # the space's first
    served = _served_config(tmp_path)
    chosen_format = result.chosen.settings.model_format
    assert served.parameters["lepton_model_format"].string_value == chosen_format


def test_a_listed_format_the_model_lacks_fails_tuning_naming_the_field(
    trained: tuple[str, TrainSummary], tmp_path: Path
) -> None:
    request = {"latencyBudgetMs": 5, "space": {**SPACE, "modelFormats": ["onnx"]}}
    with pytest.raises(JobError, match=r"tuning.space.modelFormats \['onnx'\]: the model has only"):
        package.run(_package(trained[0], tmp_path, request))


def test_a_budget_no_candidate_meets_serves_the_fastest_and_says_so(
    trained: tuple[str, TrainSummary], tmp_path: Path
) -> None:
    space = {**SPACE, "instanceCounts": [1]}
    request = {
        "latencyBudgetMs": 0.001,
        "concurrency": [4],
        "space": space,
        "secondsPerCandidate": 0.3,
    }
    result = package.run(_package(trained[0], tmp_path, request)).tuning
    assert result is not None
    assert not result.budget_met
    assert not any(m.within_budget for m in result.candidates)
    assert result.chosen.throughput == max(m.throughput for m in result.candidates)
    assert result.best_p99_ms == min(m.p99_ms for m in result.candidates) > 0.001


def test_a_model_that_fails_to_load_fails_tuning_with_tritons_reason(
    trained: tuple[str, TrainSummary], tmp_path: Path
) -> None:
    package.run(_package(trained[0], tmp_path, None))
    (tmp_path / "mnist" / "1" / "model.pt").write_bytes(b"not a TorchScript archive")
    spec = package.model_spec(_package(trained[0], tmp_path, None), read_card(trained[0]))
    request = TuningRequest.model_validate({"latencyBudgetMs": 5, "space": SPACE})
    with pytest.raises(
        JobError, match=r"(?s)model mnist failed to load: .*\(with maxBatchSize \d+"
    ) as failed:
        tune(str(tmp_path), spec, request)
    assert "PytorchStreamReader" in str(failed.value)  # the stub's own reason, through Triton


def test_tuning_is_refused_for_a_backend_the_runtimes_triton_lacks(
    trained: tuple[str, TrainSummary], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="set backend to python or drop tuning"):
        PackageConfig.model_validate(
            {
                "modelUri": trained[0],
                "backend": "pytorch_libtorch",
                "repository": str(tmp_path),
                "tuning": {"latencyBudgetMs": 5},
            }
        )
