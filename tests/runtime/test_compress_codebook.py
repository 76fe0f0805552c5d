"""Weight sharing end to end on real digits: the guarded job, model.lpc, packaging and Triton."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
import tritonclient.http as httpclient

from lepton_runtime import compress, package, train
from lepton_runtime.compress.trials import TrialPlan, plan_trials
from lepton_runtime.contract import (
    AccuracyGuard,
    CodebookSpec,
    CompressConfig,
    CompressSummary,
    DatasetSpec,
    MLPSpec,
    PackageConfig,
    PruningSpec,
    TrainSummary,
)
from lepton_runtime.data import load_splits
from lepton_runtime.errors import JobError
from lepton_runtime.export.artifacts import load_compact_model, load_scripted, read_card
from lepton_runtime.serve.local import LocalTritonServer
from lepton_runtime.train.loop import evaluate

from .conftest import tiny_train_config
from .test_compress import _config

pytestmark = pytest.mark.runtime

BITS = 4


@pytest.fixture(scope="module")
def shared(
    trained: tuple[str, TrainSummary], mnist_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> CompressSummary:
    """The trained model pruned to 70% and shared at 4 bits: model.lpc, model.ts, model.onnx."""
    out = tmp_path_factory.mktemp("codebook") / "model"
    return compress.run(
        _config(
            trained[0],
            out,
            mnist_uri,
            pruning=PruningSpec(target_sparsity=0.7, steps=2, fine_tune_epochs=0.5),
            quantization="codebook",
            codebook=CodebookSpec(bits=BITS, fine_tune_steps=40),
            export_formats=["torchscript", "onnx"],  # a codebook model decodes to float32
        )
    )


def test_the_kept_trial_is_the_compact_file_and_is_what_was_measured(
    shared: CompressSummary, mnist_uri: str
) -> None:
    out = Path(shared.model_uri)
    kept = next(t for t in shared.trials if t.kept)
    assert kept.quantization == "codebook" and kept.codebook_bits == BITS
    assert sorted(shared.formats) == ["model.lpc", "model.onnx", "model.ts"]
    assert shared.file_sizes == {name: (out / name).stat().st_size for name in shared.formats}
    # The reported size is the file the python backend serves.
    assert shared.size_bytes_after == shared.file_sizes["model.lpc"] == kept.size_bytes
    assert shared.size_bytes_before / shared.size_bytes_after > 8  # float32 -> 4-bit, 70% zeros
    card = read_card(str(out))
    assert card.quantization == "codebook" and card.codebook_bits == BITS
    # Accuracy was measured on the model decoded from model.lpc, on the same test split.
    _, test = load_splits(DatasetSpec(uri=mnist_uri, train_limit=1000, test_limit=400))
    served = load_compact_model(str(out))
    assert evaluate(served, test) == pytest.approx(shared.final_accuracy, abs=1e-9)
    # model.ts (pytorch_libtorch) and model.onnx (onnxruntime) hold the same decoded weights.
    dense = load_scripted(str(out))
    onnx = onnxruntime.InferenceSession(str(out / "model.onnx"))
    with torch.no_grad():
        expected = served(test.images)
        assert torch.allclose(dense(test.images), expected, atol=1e-4)
    (onnx_logits,) = onnx.run(None, {onnx.get_inputs()[0].name: test.images.numpy()})
    assert np.allclose(onnx_logits, expected.numpy(), atol=1e-4)


def test_every_layer_shares_at_most_2_to_the_bits_values(shared: CompressSummary) -> None:
    served = load_compact_model(shared.model_uri)
    layers = [m for m in served.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert layers
    for layer in layers:
        values = torch.unique(layer.weight.detach())
        assert len(values[values != 0]) <= 2**BITS
    assert shared.parameters and shared.nonzero_parameters
    zeros = shared.parameters - shared.nonzero_parameters
    assert zeros / shared.parameters == pytest.approx(shared.sparsity, abs=0.02)


def test_codebook_trials_back_off_sparsity_and_bits_then_quantization() -> None:
    plans = plan_trials(
        PruningSpec(target_sparsity=0.96),
        "codebook",
        AccuracyGuard(max_trials=4),
        CodebookSpec(bits=4),
    )
    assert plans == [
        TrialPlan(0.96, "codebook", 4),
        TrialPlan(0.94, "codebook", 5),
        TrialPlan(0.91, "codebook", 6),
        TrialPlan(0.91, "none"),
    ]
    widest = plan_trials(
        PruningSpec(target_sparsity=0.5),
        "codebook",
        AccuracyGuard(max_trials=3),
        CodebookSpec(bits=8),
    )
    assert [plan.codebook_bits for plan in widest] == [8, 8, None]


def test_codebook_bits_out_of_range_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"codebook\.bits|bits"):
        CodebookSpec.model_validate({"bits": 9})
    with pytest.raises(ValueError, match="bits"):
        CompressConfig.model_validate(
            {
                "sourceModelUri": "file:///m",
                "dataset": {"uri": "file:///d"},
                "quantization": "codebook",
                "codebook": {"bits": 1},
                "outputUri": "file:///o",
            }
        )


def test_a_sparsity_structured_pruning_cannot_reach_fails_before_training(
    trained: tuple[str, TrainSummary], mnist_uri: str, tmp_path: Path
) -> None:
    config = _config(
        trained[0],
        tmp_path / "out",
        mnist_uri,
        pruning=PruningSpec(method="l1-structured", target_sparsity=0.99),
    )
    with pytest.raises(JobError, match=r"pruning\.targetSparsity 0\.99 cannot be reached"):
        compress.run(config)
    assert not (tmp_path / "out").exists()


def test_structured_pruning_of_a_model_without_convs_names_the_field(
    mnist_uri: str, tmp_path: Path
) -> None:
    mlp = train.run(
        tiny_train_config(mnist_uri, tmp_path, model=MLPSpec(hidden_sizes=[32]))
    ).model_uri
    config = _config(mlp, tmp_path / "out", mnist_uri, pruning=PruningSpec(method="l1-structured"))
    with pytest.raises(
        JobError, match=r"targetSparsity 0\.8 cannot be reached .* no weights to prune"
    ):
        compress.run(config)


def _package(model_uri: str, repository: Path) -> None:
    package.run(
        PackageConfig(
            model_uri=model_uri, model_name="digits", backend="python", repository=str(repository)
        )
    )


def test_python_backend_repository_holds_the_compact_file(
    shared: CompressSummary, tmp_path: Path
) -> None:
    _package(shared.model_uri, tmp_path)
    version = tmp_path / "digits" / "1"
    assert {p.name for p in version.iterdir()} == {"model.py", "model.lpc", "model.json"}
    assert (version / "model.lpc").stat().st_size == shared.size_bytes_after
    assert json.loads((version / "model.json").read_text())["quantization"] == "codebook"


def test_a_corrupt_compact_file_fails_packaging_naming_it_and_keeps_the_old_version(
    shared: CompressSummary, tmp_path: Path
) -> None:
    repository = tmp_path / "repo"
    _package(shared.model_uri, repository)
    served = repository / "digits" / "1" / "model.lpc"
    good = served.read_bytes()
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.json", "model.lpc", "model.ts"):
        (broken / name).write_bytes((Path(shared.model_uri) / name).read_bytes())
    data = bytearray(good)
    data[len(data) // 2] ^= 0xFF
    (broken / "model.lpc").write_bytes(bytes(data))
    with pytest.raises(JobError, match=r"broken/model\.lpc is corrupt: checksum"):
        _package(str(broken), repository)
    assert served.read_bytes() == good
    (broken / "model.lpc").write_bytes(good[:100])
    with pytest.raises(JobError, match=r"broken/model\.lpc is truncated"):
        load_compact_model(str(broken))


def test_real_triton_serves_the_compact_file(
    shared: CompressSummary, mnist_uri: str, tmp_path: Path
) -> None:
    _package(shared.model_uri, tmp_path / "repo")
    _, test = load_splits(DatasetSpec(uri=mnist_uri, test_limit=64))
    images = test.images.numpy()
    with torch.no_grad():
        expected = load_compact_model(shared.model_uri)(test.images).numpy()
    with LocalTritonServer(tmp_path / "repo") as server:
        client = httpclient.InferenceServerClient(server.url)
        request = httpclient.InferInput("INPUT__0", list(images.shape), "FP32")
        request.set_data_from_numpy(images)
        logits = client.infer("digits", [request]).as_numpy("OUTPUT__0")
    assert np.array_equal(logits.argmax(1), expected.argmax(1))
    assert np.allclose(logits, expected, atol=1e-4)
