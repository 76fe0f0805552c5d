"""Compression: pruning schedule, quantization, the accuracy guard, and what gets exported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch.ao.nn import quantized as nnq
from torch.ao.nn.intrinsic import quantized as nnqi

from lepton_runtime import compress, train
from lepton_runtime.compress.fold import conv_norm_pairs, fold_batch_norms
from lepton_runtime.compress.prune import (
    apply_sparsity,
    cubic_schedule,
    make_permanent,
    measure_sparsity,
)
from lepton_runtime.compress.quantize import quantize
from lepton_runtime.compress.trials import plan_trials, verdict
from lepton_runtime.contract import (
    AccuracyGuard,
    CompressConfig,
    CompressSummary,
    DatasetSpec,
    Hyperparameters,
    LeptonNetSpec,
    MLPSpec,
    PruningSpec,
    RuntimeOptions,
    TrainSummary,
)
from lepton_runtime.data import load_splits
from lepton_runtime.errors import JobError
from lepton_runtime.export.artifacts import load_float_model, load_scripted, read_card
from lepton_runtime.export.torchscript import load_torchscript, to_torchscript, torchscript_bytes
from lepton_runtime.models import build_model

from .conftest import tiny_train_config

pytestmark = pytest.mark.runtime


def _config(source: str, out: Path, mnist_uri: str, **overrides: object) -> CompressConfig:
    fields: dict[str, object] = {
        "source_model_uri": source,
        "dataset": DatasetSpec(uri=mnist_uri, train_limit=1000, test_limit=400),
        "pruning": PruningSpec(target_sparsity=0.6, steps=2, fine_tune_epochs=0.5),
        "quantization": "static-int8",
        "accuracy_guard": AccuracyGuard(max_accuracy_drop=0.05, max_trials=3),
        "output_uri": str(out),
        "runtime": RuntimeOptions(termination_message_path=str(out.parent / "t"), num_threads=1),
    }
    fields.update(overrides)
    return CompressConfig.model_validate(fields)


def test_unstructured_pruning_reaches_the_target() -> None:
    model = build_model(LeptonNetSpec(width_multiplier=0.25))
    apply_sparsity(model, "l1-unstructured", 0.7)
    apply_sparsity(model, "l1-unstructured", 0.9)  # a second round keeps earlier zeros
    make_permanent(model)
    assert measure_sparsity(model) == pytest.approx(0.9, abs=0.002)


def test_structured_pruning_removes_whole_channels() -> None:
    model = build_model(LeptonNetSpec(width_multiplier=0.5))
    apply_sparsity(model, "l1-structured", 0.5)
    make_permanent(model)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        channel_zero = (conv.weight.flatten(1) == 0).all(1)
        assert channel_zero.float().mean().item() == pytest.approx(0.5, abs=0.07)
    assert measure_sparsity(model, "l1-structured") == pytest.approx(0.5, abs=0.05)


GELU_GROUP = LeptonNetSpec(width_multiplier=0.25, activation="gelu", normalization="group")
"""A variant int8 fusion cannot fuse (no batch norm, no ReLU) and whose norm pools channels."""


def _has(model: torch.nn.Module, kind: type[torch.nn.Module]) -> bool:
    return any(isinstance(m, kind) for m in model.modules())


def test_static_int8_fuses_conv_bn_relu_of_the_default_model() -> None:
    calibration = [torch.rand(4, 1, 28, 28)]
    fused = quantize(build_model(LeptonNetSpec(width_multiplier=0.25)), "static-int8", calibration)
    assert _has(fused, nnqi.ConvReLU2d) and not _has(fused, torch.nn.BatchNorm2d)
    variant = quantize(build_model(GELU_GROUP), "static-int8", calibration)
    # Nothing to fuse: int8 convs, with the group norm and GELU left in float between them.
    assert not _has(variant, nnqi.ConvReLU2d) and _has(variant, nnq.Conv2d)
    assert _has(variant, torch.nn.GroupNorm) and _has(variant, torch.nn.GELU)


def test_separable_model_folds_prunes_and_fuses_every_block() -> None:
    """Depthwise and pointwise halves are conv-bn-relu blocks like any other: every batch norm
    folds, pruning keeps whole depthwise filters, and int8 fuses each block."""
    torch.manual_seed(0)
    model = build_model(LeptonNetSpec(width_multiplier=0.5, convolution="separable"))
    x = torch.rand(8, 1, 28, 28)
    model.train()(x)  # running statistics that are not the initial 0 and 1
    model.eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(conv_norm_pairs(model)) == len(convs) and any(c.groups > 1 for c in convs)
    with torch.no_grad():
        assert torch.allclose(fold_batch_norms(model)(x), model(x), atol=1e-4)
    apply_sparsity(model, "l1-structured", 0.5)
    make_permanent(model)
    assert measure_sparsity(model, "l1-structured") == pytest.approx(0.5, abs=0.07)
    fused = quantize(model, "static-int8", [x])
    assert sum(isinstance(m, nnqi.ConvReLU2d) for m in fused.modules()) == len(convs)
    assert not _has(fused, torch.nn.BatchNorm2d)
    shipped = load_torchscript(torchscript_bytes(to_torchscript(fused, x)))
    assert tuple(shipped(x).shape) == (8, 10) and torch.isfinite(shipped(x)).all()


@pytest.mark.parametrize("method", ["l1-unstructured", "l1-structured"])
def test_variant_prunes_fine_tunes_and_quantizes(method: str) -> None:
    model = build_model(GELU_GROUP)
    x = torch.rand(4, 1, 28, 28)
    apply_sparsity(model, method, 0.5)
    # Masks zero weights but never change shapes, so each group norm still fits its conv.
    loss = torch.nn.functional.cross_entropy(model.train()(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()  # type: ignore[no-untyped-call]
    make_permanent(model)
    assert measure_sparsity(model, method) == pytest.approx(0.5, abs=0.07)
    model.eval()
    for mode in ("static-int8", "dynamic-int8", "fp16"):
        shipped = load_torchscript(torchscript_bytes(to_torchscript(quantize(model, mode, [x]), x)))
        logits = shipped(x)
        assert tuple(logits.shape) == (4, 10) and torch.isfinite(logits).all(), mode


def test_compress_job_on_a_variant(mnist_uri: str, tmp_path: Path) -> None:
    """The whole job on a variant: its card rebuilds it, and prune + int8 export it."""
    trained = train.run(
        tiny_train_config(
            mnist_uri,
            tmp_path,
            model=GELU_GROUP.model_copy(update={"stages": 4, "kernel_size": 5}),
            dataset=DatasetSpec(uri=mnist_uri, train_limit=256, test_limit=100),
            hyperparameters=Hyperparameters(epochs=1, batch_size=32, learning_rate=0.01),
        )
    )
    summary = compress.run(
        _config(
            trained.model_uri,
            tmp_path / "out",
            mnist_uri,
            dataset=DatasetSpec(uri=mnist_uri, train_limit=256, test_limit=100),
            pruning=PruningSpec(target_sparsity=0.5, steps=1, fine_tune_epochs=0.25),
            # The paths are under test, not the guard: an untrained variant passes any guard.
            accuracy_guard=AccuracyGuard(max_accuracy_drop=1.0, max_trials=1),
        )
    )
    assert summary.quantization == "static-int8" and summary.sparsity == pytest.approx(0.5, 0.05)
    assert read_card(str(tmp_path / "out")).spec == read_card(trained.model_uri).spec
    assert tuple(load_scripted(str(tmp_path / "out"))(torch.rand(2, 1, 28, 28)).shape) == (2, 10)


def test_schedule_and_trial_plan_back_off() -> None:
    schedule = cubic_schedule(0.9, 3)
    assert schedule[-1] == pytest.approx(0.9) and schedule == sorted(schedule)
    plans = plan_trials(
        PruningSpec(target_sparsity=0.9), "static-int8", AccuracyGuard(max_trials=4)
    )
    assert [p.sparsity for p in plans] == [0.9, 0.85, 0.775, 0.775]
    assert [p.quantization for p in plans] == ["static-int8"] * 3 + ["none"]
    relative = AccuracyGuard(max_accuracy_drop=0.01, mode="relative")
    assert verdict(0.9, 0.895, relative)[0] and not verdict(0.9, 0.89, relative)[0]


def test_compress_prunes_quantizes_and_shrinks(
    trained: tuple[str, TrainSummary], mnist_uri: str, tmp_path: Path
) -> None:
    source, _ = trained
    config = _config(source, tmp_path / "out", mnist_uri)
    summary = compress.run(config)
    kept = [t for t in summary.trials if t.kept]
    assert len(kept) == 1 and kept[0] == summary.trials[-1]
    assert summary.sparsity == pytest.approx(kept[0].sparsity)
    assert summary.sparsity >= 0.4  # the guard backs off 0.6 -> 0.4 at most with 3 trials
    assert summary.baseline_accuracy - summary.final_accuracy <= 0.05 + 1e-9
    # Each technique shrinks the file by what it implies, measured against the other alone:
    # int8 stores a byte per weight instead of four, and zeros cost almost nothing once deflated.
    int8_only = compress.run(
        _config(source, tmp_path / "int8", mnist_uri, pruning=PruningSpec(method="none"))
    )
    assert int8_only.sparsity < 0.01
    assert int8_only.size_bytes_after < summary.size_bytes_before / 3
    assert summary.size_bytes_after < int8_only.size_bytes_after * (1 - summary.sparsity / 4)
    written = tmp_path / "out" / "model.ts"
    assert written.stat().st_size == summary.size_bytes_after  # the size is the shipped file
    card = read_card(str(tmp_path / "out"))
    assert card.quantization == "static-int8" and card.files == ["model.ts"]
    # The shipped model still reads digits as the float model does (on held-out digits, not
    # noise, where a classifier's argmax means nothing).
    scripted = load_scripted(str(tmp_path / "out"))
    float_model, _ = load_float_model(source)
    _, test = load_splits(config.dataset)
    with torch.no_grad():
        agree = scripted(test.images).argmax(1) == float_model(test.images).argmax(1)
    assert agree.float().mean().item() > 0.8


def test_static_int8_exports_onnx_runtime_int8_held_to_the_guard(
    trained: tuple[str, TrainSummary], mnist_uri: str, tmp_path: Path
) -> None:
    """ONNX has no encoding of PyTorch's int8 kernels: model.onnx is ONNX Runtime's own static
    int8 of the same pruned model, and the guard measures it too."""
    source, _ = trained
    config = _config(
        source,
        tmp_path / "out",
        mnist_uri,
        pruning=PruningSpec(method="l1-structured", target_sparsity=0.3, steps=1),
        export_formats=["torchscript", "onnx"],
    )
    summary = compress.run(config)
    assert summary.formats == ["model.ts", "model.onnx"]
    (kept,) = [t for t in summary.trials if t.kept]
    assert kept.onnx_accuracy is not None
    assert summary.baseline_accuracy - min(kept.accuracy, kept.onnx_accuracy) <= 0.05 + 1e-9
    assert kept.accuracy_drop == pytest.approx(
        summary.baseline_accuracy - min(kept.accuracy, kept.onnx_accuracy)
    )
    onnx_path = tmp_path / "out" / "model.onnx"
    model = onnx.load(str(onnx_path))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops  # QDQ around int8 convs
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 4  # the convolutions' and the classifier's weights
    # It reads the held-out digits as the TorchScript int8 does, at the accuracy reported.
    _, test = load_splits(config.dataset)
    session = onnxruntime.InferenceSession(str(onnx_path))
    (logits,) = session.run(None, {"INPUT__0": test.images.numpy()})
    predictions = torch.from_numpy(logits).argmax(1)
    accuracy = (predictions == test.labels).float().mean().item()
    assert accuracy == pytest.approx(kept.onnx_accuracy, abs=1e-6)
    with torch.no_grad():
        scripted = load_scripted(str(tmp_path / "out"))(test.images).argmax(1)
    assert (scripted == predictions).float().mean().item() > 0.9


def test_no_trial_meeting_the_guard_fails_and_exports_nothing(
    trained: tuple[str, TrainSummary], mnist_uri: str, tmp_path: Path
) -> None:
    source, _ = trained
    config = _config(
        source,
        tmp_path / "out",
        mnist_uri,
        pruning=PruningSpec(target_sparsity=0.99, steps=1, fine_tune_epochs=0),
        accuracy_guard=AccuracyGuard(max_accuracy_drop=0.0, max_trials=1),
    )
    with pytest.raises(JobError, match="no trial met the accuracy guard"):
        compress.run(config)
    assert not (tmp_path / "out").exists()


def test_dynamic_int8_mlp_and_onnx_export(mnist_uri: str, tmp_path: Path) -> None:
    summary = train.run(
        tiny_train_config(
            mnist_uri,
            tmp_path,
            model=MLPSpec(hidden_sizes=[128]),
            dataset=DatasetSpec(uri=mnist_uri, train_limit=1000, test_limit=300),
        )
    )
    quantized = compress.run(
        _config(
            summary.model_uri,
            tmp_path / "int8",
            mnist_uri,
            quantization="dynamic-int8",
            pruning=PruningSpec(method="none"),
        )
    )
    assert quantized.quantization == "dynamic-int8"
    assert quantized.size_bytes_after < quantized.size_bytes_before / 3
    pruned = compress.run(
        _config(
            summary.model_uri,
            tmp_path / "onnx",
            mnist_uri,
            quantization="none",
            export_formats=["torchscript", "onnx"],
        )
    )
    assert pruned.formats == ["model.ts", "model.onnx"]
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    (onnx_logits,) = session.run(None, {"INPUT__0": x})
    ts_logits = load_scripted(str(tmp_path / "onnx"))(torch.from_numpy(x)).detach().numpy()
    assert np.allclose(onnx_logits, ts_logits, atol=1e-4)


def test_structured_compression_and_fp16(
    trained: tuple[str, TrainSummary], mnist_uri: str, tmp_path: Path
) -> None:
    source, _ = trained
    summary = compress.run(
        _config(
            source,
            tmp_path / "out",
            mnist_uri,
            pruning=PruningSpec(method="l1-structured", target_sparsity=0.25, steps=1),
            quantization="fp16",
            # What is under test is the structured masks and the fp16 export, not the guard
            # (the tests above are about it): any drop passes, so the property holds by
            # construction. Removing 25% of every conv's channels costs this net about half its
            # accuracy even after a fine-tuning epoch, and how much depends on the machine.
            accuracy_guard=AccuracyGuard(max_accuracy_drop=1.0, max_trials=1),
        )
    )
    assert summary.quantization == "fp16"
    assert summary.sparsity == pytest.approx(0.25, abs=0.06)
    scripted = load_scripted(str(tmp_path / "out"))
    assert scripted(torch.rand(2, 1, 28, 28)).dtype == torch.float32


def test_cli_reports_guard_failure(
    trained: tuple[str, TrainSummary], mnist_uri: str, tmp_path: Path
) -> None:
    config = _config(
        trained[0],
        tmp_path / "out",
        mnist_uri,
        pruning=PruningSpec(target_sparsity=0.99, steps=1, fine_tune_epochs=0),
        accuracy_guard=AccuracyGuard(max_accuracy_drop=0.0, max_trials=1),
    )
    (tmp_path / "c.json").write_text(config.to_wire())
    result = subprocess.run(
        [sys.executable, "-m", "lepton_runtime", "compress", "--config", str(tmp_path / "c.json")],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1
    message = (tmp_path / "t").read_text()
    assert message.startswith("no trial met the accuracy guard") and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_compress_fine_tunes_with_ddp_under_torchrun(
    trained: tuple[str, TrainSummary], mnist_uri: str, tmp_path: Path
) -> None:
    config = _config(
        trained[0],
        tmp_path / "out",
        mnist_uri,
        pruning=PruningSpec(target_sparsity=0.5, steps=2, fine_tune_epochs=0.5),
        accuracy_guard=AccuracyGuard(max_accuracy_drop=0.2, max_trials=1),
    )
    (tmp_path / "c.json").write_text(config.to_wire())
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    result = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "lepton_runtime",
            "compress",
            "--config",
            str(tmp_path / "c.json"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = CompressSummary.model_validate_json((tmp_path / "t").read_text())
    assert summary.sparsity == pytest.approx(0.5, abs=0.01)
    assert (tmp_path / "out" / "model.ts").stat().st_size == summary.size_bytes_after
