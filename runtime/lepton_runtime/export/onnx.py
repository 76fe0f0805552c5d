"""ONNX export for the onnxruntime backend, and for the python backend, which runs an ONNX file
through ONNX Runtime when its version holds one.

Float models export as they are. PyTorch's quantized kernels have no portable ONNX encoding, so
a static-int8 model's ONNX file is quantized by ONNX Runtime instead: from the same float
model (pruned, fine-tuned) the TorchScript int8 came from, calibrated on the same batches, as
QDQ (QuantizeLinear / DequantizeLinear around int8 convolutions and matmuls, which ONNX
Runtime fuses into integer kernels). It is its own quantization, so the compression measures
its accuracy too.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
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


class _Calibration:
    """onnxruntime.quantization's CalibrationDataReader protocol over our batches."""

    def __init__(self, batches: Sequence[torch.Tensor]) -> None:
        self._feeds: Iterator[dict[str, NDArray[np.float32]]] = iter(
            [{INPUT_NAME: batch.numpy().astype(np.float32)} for batch in batches]
        )

    def get_next(self) -> dict[str, NDArray[np.float32]] | None:
        return next(self._feeds, None)


def static_int8_onnx_bytes(
    model: nn.Module, example: torch.Tensor, calibration: Sequence[torch.Tensor]
) -> bytes:
    """`model` (float) exported to ONNX and statically quantized by ONNX Runtime: int8 weights
    and uint8 activations (calibrated on `calibration`), one scale per tensor."""
    from onnxruntime.quantization import (  # noqa: PLC0415 (only compression needs it)
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="lepton-onnx-int8-") as scratch:
        work = Path(scratch)
        (work / "float.onnx").write_bytes(onnx_bytes(model, example))
        # Shape inference and graph folding first, as onnxruntime recommends before
        # quantizing: batch norms fold into the convolutions they follow.
        quant_pre_process(str(work / "float.onnx"), str(work / "prepared.onnx"))
        quantize_static(
            str(work / "prepared.onnx"),
            str(work / "int8.onnx"),
            _Calibration(calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # Per channel lost accuracy on pruned LeptonNets: 97.2% against 97.8% per tensor
            # on the bench's (50% unstructured; float 98.2%), 93.3% against 95.3% on the
            # tests' (30% structured).
            per_channel=False,
        )
        return (work / "int8.onnx").read_bytes()


def onnx_session(data: bytes, threads: int = 1) -> object:
    """An ONNX Runtime CPU session over a serialized model, `threads` intra-op threads."""
    import onnxruntime  # noqa: PLC0415

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


class OnnxRuntimeModule(nn.Module):
    """A serialized ONNX model run by ONNX Runtime behind nn.Module's call, so the compression
    measures its accuracy with the same code as the TorchScript's."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.session = onnx_session(data, threads=torch.get_num_threads())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feed = {INPUT_NAME: x.detach().cpu().numpy().astype(np.float32, copy=False)}
        (logits,) = self.session.run(None, feed)  # type: ignore[attr-defined]
        return torch.from_numpy(logits)
