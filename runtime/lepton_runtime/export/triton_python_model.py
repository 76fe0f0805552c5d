"""Triton python-backend model (copied into the repository as `<name>/<version>/model.py`).

It runs `model.pt` (TorchScript) when the version has one, with only torch and numpy: that
path needs nothing of Lepton inside the Triton image. A compressed model with weight sharing
comes as `model.lpc` + `model.json` instead: the compact file is what is served, so the model
is rebuilt from the card's spec and decoded at load, which needs the `lepton_runtime` package
(pure Python) in the image as well.
All requests of a dynamic batch run as one forward pass, which is what makes batching pay.
"""

import json
import os
from pathlib import Path

import numpy as np
import torch
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

INPUT_NAME = "INPUT__0"
OUTPUT_NAME = "OUTPUT__0"


class TritonPythonModel:
    """The class name and methods are the python backend's protocol."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load model.pt (or model.lpc) on the instance's device."""
        json.loads(args["model_config"])
        gpu = args.get("model_instance_kind") == "GPU" and torch.cuda.is_available()
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if gpu else "cpu")
        torch.set_num_threads(int(os.environ.get("LEPTON_TORCH_THREADS", "1")))
        version = Path(args["model_repository"]) / args["model_version"]
        if (version / "model.pt").exists():
            self.model = torch.jit.load(str(version / "model.pt"), map_location=self.device).eval()  # type: ignore[no-untyped-call]
        else:
            from lepton_runtime.export.artifacts import load_compact_model  # noqa: PLC0415

            self.model = load_compact_model(str(version)).to(self.device)

    def execute(self, requests: list[object]) -> list[object]:
        """One forward pass over all requests, split back per request."""
        arrays = [
            pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy()
            for request in requests
        ]
        sizes = [len(array) for array in arrays]
        with torch.inference_mode():
            batch = torch.from_numpy(np.concatenate(arrays)).to(self.device)
            logits = self.model(batch).float().cpu().numpy()
        responses = []
        start = 0
        for size in sizes:
            tensor = pb_utils.Tensor(OUTPUT_NAME, logits[start : start + size])
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += size
        return responses
