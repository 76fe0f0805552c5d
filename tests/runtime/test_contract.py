"""The contract: camelCase wire format, validation with readable reasons, no torch import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from lepton_runtime.contract import (
    CompressConfig,
    MLPSpec,
    PackageConfig,
    TrainConfig,
    TrainSummary,
    UserModelSpec,
)


def test_train_config_round_trips_camel_case() -> None:
    wire = {
        "model": {"name": "leptonnet", "widthMultiplier": 0.5, "numClasses": 10},
        "dataset": {"uri": "s3://bucket/mnist", "trainLimit": 100},
        "hyperparameters": {"epochs": 3, "batchSize": 16, "learningRate": 0.1, "optimizer": "sgd"},
        "checkpoint": {"dir": "/ckpt", "everySteps": 5},
        "outputUri": "s3://bucket/out",
        "runtime": {"terminationMessagePath": "/tmp/t", "metricsPort": 9090},
    }
    config = TrainConfig.model_validate(wire)
    assert config.hyperparameters.batch_size == 16
    assert config.model.name == "leptonnet"
    again = json.loads(config.to_wire())
    assert again["hyperparameters"]["learningRate"] == 0.1
    assert again["outputUri"] == "s3://bucket/out"
    assert TrainConfig.model_validate(again) == config


def test_python_names_are_accepted_too() -> None:
    config = TrainConfig(dataset={"uri": "synthetic://mnist"}, output_uri="/tmp/out")
    assert config.model.name == "leptonnet"
    assert isinstance(MLPSpec(hidden_sizes=[8]).hidden_sizes, list)


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"model": {"name": "resnet9000"}}, "model"),
        ({"outputUri": "not a uri"}, "outputUri"),
        ({"hyperparameters": {"optimizer": "lion"}}, "optimizer"),
        ({"hyperparameters": {"epochs": 0}}, "epochs"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_train_configs_are_rejected(patch: dict[str, object], fragment: str) -> None:
    wire: dict[str, object] = {"dataset": {"uri": "synthetic://mnist"}, "outputUri": "/tmp/o"}
    wire.update(patch)
    with pytest.raises(ValidationError) as error:
        TrainConfig.model_validate(wire)
    assert fragment in str(error.value)


def test_user_model_factory_must_be_an_import_path() -> None:
    assert UserModelSpec(factory="pkg.mod:make").factory == "pkg.mod:make"
    with pytest.raises(ValidationError):
        UserModelSpec(factory="pkg.mod.make")


@pytest.mark.parametrize(
    ("quantization", "accepted"),
    [("none", True), ("codebook", True), ("static-int8", True), ("dynamic-int8", False),
     ("fp16", False)],
)  # fmt: skip
def test_onnx_export_needs_a_float_or_static_int8_model(quantization: str, accepted: bool) -> None:
    fields = {
        "sourceModelUri": "/m",
        "dataset": {"uri": "synthetic://mnist"},
        "outputUri": "/o",
        "quantization": quantization,
        "exportFormats": ["onnx"],
    }
    if accepted:
        assert CompressConfig.model_validate(fields).export_formats == ["onnx"]
        return
    with pytest.raises(ValidationError, match=f"onnx needs .* static-int8 .*{quantization}"):
        CompressConfig.model_validate(fields)


def test_preferred_batch_sizes_cannot_exceed_max_batch_size() -> None:
    with pytest.raises(ValidationError, match="preferredBatchSizes"):
        PackageConfig.model_validate(
            {
                "modelUri": "/m",
                "repository": "/r",
                "maxBatchSize": 8,
                "dynamicBatching": {"preferredBatchSizes": [4, 16]},
            }
        )


def test_summaries_serialize_camel_case() -> None:
    summary = TrainSummary(
        accuracy=0.9,
        loss=0.1,
        epochs=1,
        steps=10,
        samples_per_second=5.0,
        world_size=1,
        model_uri="/m",
    )
    assert "samplesPerSecond" in summary.to_wire()


def test_contract_imports_without_torch() -> None:
    code = "import sys, lepton_runtime.contract; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_every_field_is_documented() -> None:
    for model in (TrainConfig, CompressConfig, PackageConfig):
        schema = model.model_json_schema(by_alias=True)
        for name, prop in schema["properties"].items():
            assert "description" in prop or "$ref" in prop or "anyOf" in prop or "oneOf" in prop, (
                f"{model.__name__}.{name}"
            )
