"""ONNX export for the onnxruntime backend (float models only: ONNX has no portable encoding
of PyTorch's quantized conv packing)."""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

INPUT_NAME = "INPUT__0"
OUTPUT_NAME = "OUTPUT__0"


def onnx_bytes(model: nn.Module, example: torch.Tensor) -> bytes:
    """Serialize `model` to ONNX with a dynamic batch dimension."""
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,  # type: ignore[arg-type]
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()
