"""Model families: `leptonnet` (CNN), `mlp`, and user models by import path."""

from lepton_runtime.models.registry import build_model, input_shape, spec_fingerprint

__all__ = ["build_model", "input_shape", "spec_fingerprint"]
