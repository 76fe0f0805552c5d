"""Triton python-backend model (copied into the repository as `<name>/<version>/model.py`).

What it runs depends on what its version holds:
- `model.onnx`: ONNX Runtime. On the CPU it serves the same network faster than TorchScript
  (docs/design-notes.md, "ONNX Runtime in the python backend"), and a static-int8 model's
  ONNX file is ONNX Runtime's own int8 (QDQ) quantization of it. On a GPU instance that the
  installed ONNX Runtime cannot use, the TorchScript beside it serves instead.
- `model.pt` (TorchScript): torch. With only torch (or onnxruntime) and numpy, neither path
  needs anything of Lepton inside the Triton image.
- `model.lpc` + `model.json`, a compressed model with weight sharing: the compact file is what
  is served, so the model is rebuilt from the card's spec and decoded at load, which needs the
  `lepton_runtime` package (pure Python) in the image as well.
config.pbtxt may name the file to run (parameter `lepton_model_format`: onnx or torchscript),
which is how an endpoint's tuning measures both engines and serves the faster.
Each engine is imported only when its file is served: a model instance's stub process starts
faster without torch's import when it serves ONNX.
All requests of a dynamic batch run as one forward pass, which is what makes batching pay.
"""

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]
from numpy.typing import NDArray

INPUT_NAME = "INPUT__0"
OUTPUT_NAME = "OUTPUT__0"

FORMAT_PARAMETER = "lepton_model_format"  # export/triton_config.py writes it
FORMAT_FILE = {"onnx": "model.onnx", "torchscript": "model.pt"}

Batch = NDArray[np.float32]
Forward = Callable[[Batch], Batch]


def _named_format(model_config: str, version: Path) -> str | None:
    """The format config.pbtxt names, checked against the version's files (None: unnamed)."""
    parameters = json.loads(model_config).get("parameters", {})
    named = parameters.get(FORMAT_PARAMETER, {}).get("string_value")
    if named is None:
        return None
    if named not in FORMAT_FILE:
        raise ValueError(
            f"parameter {FORMAT_PARAMETER} is {named!r}: it must be one of {sorted(FORMAT_FILE)}"
        )
    if not (version / FORMAT_FILE[named]).exists():
        raise FileNotFoundError(
            f"parameter {FORMAT_PARAMETER} names {named}, but {version} has no "
            f"{FORMAT_FILE[named]}: name a format the model was exported in"
        )
    return str(named)


def _onnx_serves(version: Path, gpu: bool) -> bool:
    """ONNX Runtime serves when the version has model.onnx, unless the instance is on a GPU
    that this ONNX Runtime cannot use and the TorchScript, which torch can put there, is
    there too."""
    if not (version / "model.onnx").exists():
        return False
    if not gpu or not (version / "model.pt").exists():
        return True
    import onnxruntime  # noqa: PLC0415

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _onnx_forward(path: Path, threads: int, gpu: bool, device_id: int) -> Forward:
    import onnxruntime  # noqa: PLC0415

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    providers: list[object] = ["CPUExecutionProvider"]
    if gpu and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
    session = onnxruntime.InferenceSession(str(path), options, providers=providers)

    def forward(batch: Batch) -> Batch:
        (logits,) = session.run(None, {INPUT_NAME: batch})
        return logits  # type: ignore[no-any-return]

    return forward


def _torch_forward(version: Path, threads: int, gpu: bool, device_id: int) -> Forward:
    import torch  # noqa: PLC0415

    device = torch.device(f"cuda:{device_id}" if gpu and torch.cuda.is_available() else "cpu")
    torch.set_num_threads(threads)
    if (version / "model.pt").exists():
        model = torch.jit.load(str(version / "model.pt"), map_location=device).eval()  # type: ignore[no-untyped-call]
    else:
        from lepton_runtime.export.artifacts import load_compact_model  # noqa: PLC0415

        model = load_compact_model(str(version)).to(device)

    def forward(batch: Batch) -> Batch:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()  # type: ignore[no-any-return]

    return forward


class TritonPythonModel:
    """The class name and methods are the python backend's protocol."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the named format, else model.onnx, model.pt or model.lpc, on the instance's
        device."""
        gpu = args.get("model_instance_kind") == "GPU"
        device_id = int(args.get("model_instance_device_id", "0"))
        threads = int(os.environ.get("LEPTON_TORCH_THREADS", "1"))
        version = Path(args["model_repository"]) / args["model_version"]
        named = _named_format(args.get("model_config", "{}"), version)
        if named == "onnx" or (named is None and _onnx_serves(version, gpu)):
            self.forward = _onnx_forward(version / "model.onnx", threads, gpu, device_id)
        else:
            self.forward = _torch_forward(version, threads, gpu, device_id)

    def execute(self, requests: list[object]) -> list[object]:
        """One forward pass over all requests, split back per request."""
        arrays = [
            pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy()
            for request in requests
        ]
        sizes = [len(array) for array in arrays]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        logits = self.forward(batch)
        responses = []
        start = 0
        for size in sizes:
            tensor = pb_utils.Tensor(OUTPUT_NAME, logits[start : start + size])
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += size
        return responses
