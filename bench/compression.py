"""Compression benchmark: prune only, int8 only, and both, on the trained LeptonNet.

    python -m bench.compression      (after python -m bench.training, or it trains first)

Sizes are the shipped, DEFLATE-packed TorchScript files; latency is batch 1 on the CPU;
accuracy on the 2,000 held-out real digits.
"""

from __future__ import annotations

from typing import Any

from bench.common import cache_dir, mnist_uri, report, run_train_cli
from bench.training import EPOCHS, _config
from lepton_runtime import compress
from lepton_runtime.contract import CompressConfig, CompressSummary


def source_model(uri: str) -> str:
    """The trained model of bench.training, trained now if missing."""
    model_dir = cache_dir() / "leptonnet-mnist"
    if not (model_dir / "model.json").exists():
        run_train_cli(
            _config(uri, EPOCHS, str(model_dir), 64, True), cache_dir() / "train-for-compression"
        )
    return str(model_dir)


def _compress(
    source: str, uri: str, name: str, pruning: dict[str, Any], quantization: str
) -> CompressSummary:
    out = cache_dir() / "compressed" / name
    config = CompressConfig.model_validate(
        {
            "sourceModelUri": source,
            "dataset": {"uri": uri},
            "pruning": pruning,
            "quantization": quantization,
            "accuracyGuard": {"maxAccuracyDrop": 0.005, "mode": "absolute", "maxTrials": 4},
            "outputUri": str(out),
            "runtime": {"terminationMessagePath": str(out.parent / f"{name}.termination")},
        }
    )
    return compress.run(config)


def _figures(summary: CompressSummary) -> dict[str, Any]:
    return {
        "size_bytes_before": summary.size_bytes_before,
        "size_bytes_after": summary.size_bytes_after,
        "size_ratio": summary.size_bytes_before / summary.size_bytes_after,
        "accuracy": summary.final_accuracy,
        "accuracy_drop_points": (summary.baseline_accuracy - summary.final_accuracy) * 100,
        "latency_ms_before": summary.latency_ms_before,
        "latency_ms_after": summary.latency_ms_after,
        "latency_speedup": summary.latency_ms_before / summary.latency_ms_after,
        "sparsity": summary.sparsity,
        "quantization": summary.quantization,
        "trials_run": len(summary.trials),
        "model_uri": summary.model_uri,
    }


def main() -> None:
    """Run and report."""
    uri = mnist_uri()
    source = source_model(uri)
    pruning = {
        "method": "l1-unstructured",
        "targetSparsity": 0.9,
        "steps": 4,
        "fineTuneEpochs": 2,
        "learningRate": 0.001,
    }
    best = _compress(source, uri, "best", pruning, "static-int8")
    prune_only = _compress(source, uri, "prune-only", pruning, "none")
    int8_only = _compress(source, uri, "int8-only", {"method": "none"}, "static-int8")
    report(
        "compression",
        {
            "baseline_accuracy": best.baseline_accuracy,
            "baseline_size_bytes": best.size_bytes_before,
            "trials": [t.model_dump(mode="json") for t in best.trials],
            "best": _figures(best),
            "prune_only": _figures(prune_only),
            "int8_only": _figures(int8_only),
            "source_model_uri": source,
            "size_note": "shipped model.ts: DEFLATE-packed TorchScript, debug info dropped",
        },
    )


if __name__ == "__main__":
    main()
