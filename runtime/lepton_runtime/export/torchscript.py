"""TorchScript serialization whose size reflects sparsity.

`torch.jit.save` stores tensors uncompressed, so a 90%-zero weight matrix costs as much as a
dense one. We re-pack the archive with DEFLATE: zeros then cost almost nothing, the file is
still a regular TorchScript archive (`torch.jit.load` and Triton's libtorch backend inflate
entries transparently), and the size we report is the size of the file we ship. The optional
`.debug_pkl` records (source ranges for error messages) are dropped.

Traced modules are frozen (`torch.jit.freeze`): parameters become constants of one inlined
forward, so the archive carries no per-submodule classes. The outputs are bit-for-bit those of
the unfrozen module (freezing folds nothing numerically unless asked to), and the code that
goes away is a tenth of an int8 LeptonNet's file.
"""

from __future__ import annotations

import io
import warnings
import zipfile

import torch
from torch import nn


def to_torchscript(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace `model` in eval mode and freeze it (tracing handles FX-quantized and user models
    alike)."""
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, example, check_trace=False)  # type: ignore[no-untyped-call]
        frozen = torch.jit.freeze(traced)
    return frozen  # type: ignore[no-any-return]


def torchscript_bytes(module: torch.jit.ScriptModule) -> bytes:
    """The serialized archive, re-packed with DEFLATE (level 9)."""
    raw = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(module, raw)
    packed = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(raw.getvalue())) as source,
        zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target,
    ):
        for info in source.infolist():
            if info.filename.endswith(".debug_pkl"):
                continue  # source-range debug info: optional for loading, sizeable for small models
            target.writestr(info.filename, source.read(info.filename))
    return packed.getvalue()


def load_torchscript(data: bytes) -> torch.jit.ScriptModule:
    """Load an archive written by `torchscript_bytes` (or any TorchScript file) on the CPU."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")  # type: ignore[no-untyped-call]
    module.eval()
    return module  # type: ignore[no-any-return]
