"""Compression benchmark: each technique alone and combined, on the trained LeptonNet.

    python -m bench.compression      (after python -m bench.training, or it trains first)

Every entry is one guarded job (at most half a point lost, 4 trials backing off):
prune_only, int8_only, codebook_only (weight sharing alone), sparse_int8 (pruning + static
int8) and sparse_codebook (pruning + weight sharing: Deep Compression's recipe). `best` is
the smallest served file among them within half a point. Sizes are of the file that is served:
model.lpc for codebook entries, the DEFLATE-packed TorchScript otherwise; the baseline is the
float model's packed TorchScript. `parameter_ratio` is all conv/linear weights over the
non-zero ones, the ratio pruning papers report beside the size ratio. Latency is batch 1 on
the CPU; accuracy on the 2,000 held-out real digits.
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


MAX_DROP_POINTS = 0.5
PRUNING = {
    "method": "l1-unstructured",
    "targetSparsity": 0.9,
    "steps": 4,
    "fineTuneEpochs": 2,
    "learningRate": 0.001,
}
DEEP_PRUNING = {**PRUNING, "targetSparsity": 0.95, "steps": 6}
"""Pruning for weight sharing: the bitmask and the few surviving indices are the file."""
CODEBOOK_BITS = 4


def _compress(
    source: str,
    uri: str,
    name: str,
    pruning: dict[str, Any],
    quantization: str,
    *,
    codebook: dict[str, Any] | None = None,
) -> CompressSummary:
    out = cache_dir() / "compressed" / name
    config = CompressConfig.model_validate(
        {
            "sourceModelUri": source,
            "dataset": {"uri": uri},
            "pruning": pruning,
            "quantization": quantization,
            "codebook": codebook or {},
            "accuracyGuard": {
                "maxAccuracyDrop": MAX_DROP_POINTS / 100,
                "mode": "absolute",
                "maxTrials": 4,
            },
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
        "parameters": summary.parameters,
        "nonzero_parameters": summary.nonzero_parameters,
        "parameter_ratio": (summary.parameters or 0) / max(summary.nonzero_parameters or 0, 1),
        "quantization": summary.quantization,
        "codebook_bits": summary.codebook_bits,
        "file_sizes": summary.file_sizes,
        "trials_run": len(summary.trials),
        "model_uri": summary.model_uri,
    }


def main() -> None:
    """Run and report."""
    uri = mnist_uri()
    source = source_model(uri)
    codebook = {"bits": CODEBOOK_BITS}
    runs = {
        "sparse_codebook": _compress(
            source, uri, "sparse-codebook", DEEP_PRUNING, "codebook", codebook=codebook
        ),
        "sparse_int8": _compress(source, uri, "sparse-int8", PRUNING, "static-int8"),
        "codebook_only": _compress(
            source, uri, "codebook-only", {"method": "none"}, "codebook", codebook=codebook
        ),
        "prune_only": _compress(source, uri, "prune-only", PRUNING, "none"),
        "int8_only": _compress(source, uri, "int8-only", {"method": "none"}, "static-int8"),
    }
    figures = {name: _figures(summary) for name, summary in runs.items()}
    within = [
        name
        for name, entry in figures.items()
        if entry["accuracy_drop_points"] <= MAX_DROP_POINTS + 1e-9
    ]
    best = min(within, key=lambda name: figures[name]["size_bytes_after"])
    report(
        "compression",
        {
            "baseline_accuracy": runs[best].baseline_accuracy,
            "baseline_size_bytes": runs[best].size_bytes_before,
            "best_entry": best,
            "best": figures[best],
            "trials": [t.model_dump(mode="json") for t in runs[best].trials],
            **figures,
            "source_model_uri": source,
            "size_note": "served file: model.lpc (xz-coded sparse codebooks) for codebook "
            "entries, DEFLATE-packed TorchScript without debug info otherwise",
        },
    )


if __name__ == "__main__":
    main()
