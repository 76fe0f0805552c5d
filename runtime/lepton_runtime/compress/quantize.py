"""Post-training quantization.

- dynamic-int8: Linear weights int8, activations quantized on the fly (no calibration).
- static-int8: FX graph mode PTQ: conv-bn-relu fused, observers calibrated on training batches,
  int8 kernels for conv and linear (x86/fbgemm on CPU).
- fp16: half-precision weights behind a float32 interface.

We use `torch.ao.quantization`, which works with the installed torch; torchao is not
installed (its int8 CPU path needs matching torch nightlies), see docs/runtime.md.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable

import torch
from torch import nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

ENGINE = "x86"


class HalfPrecision(nn.Module):
    """Runs the wrapped model in fp16 but keeps the float32 input/output contract."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()  # type: ignore[no-any-return]


def quantize(model: nn.Module, mode: str, calibration: Iterable[torch.Tensor]) -> nn.Module:
    """A quantized copy of `model` (eval mode); the input model is left untouched."""
    model = copy.deepcopy(model).eval()
    if mode == "none":
        return model
    if mode == "fp16":
        return HalfPrecision(model).eval()
    torch.backends.quantized.engine = ENGINE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode == "dynamic-int8":
            return torch.ao.quantization.quantize_dynamic(  # type: ignore[no-any-return,no-untyped-call]
                model, {nn.Linear}, dtype=torch.qint8
            )
        batches = list(calibration)
        prepared = prepare_fx(
            model, get_default_qconfig_mapping(ENGINE), example_inputs=(batches[0],)
        )
        with torch.no_grad():
            for batch in batches:
                prepared(batch)
        return convert_fx(prepared).eval()
