"""Compression: `run(CompressConfig) -> CompressSummary` — prune, fine-tune, quantize, guard."""

from lepton_runtime.compress.runner import run

__all__ = ["run"]
