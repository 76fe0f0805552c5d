"""`package`: turn a model directory into a Triton model repository.

    <repository>/<name>/config.pbtxt
    <repository>/<name>/<version>/model.pt     (pytorch_libtorch; TorchScript)
    <repository>/<name>/<version>/model.onnx   (onnxruntime)
    <repository>/<name>/<version>/model.py + model.pt   (python: runs the TorchScript)

Files are written atomically and config.pbtxt last, so Triton polling the repository never
sees a version directory without its model.
"""

from __future__ import annotations

from pathlib import Path

from lepton_runtime import storage
from lepton_runtime.contract import PackageConfig, PackageSummary
from lepton_runtime.errors import JobError
from lepton_runtime.export.artifacts import ONNX, TORCHSCRIPT, read_card
from lepton_runtime.export.triton_config import TritonModelSpec, render_config

PYTHON_MODEL_SOURCE = Path(__file__).parent / "export" / "triton_python_model.py"


def run(config: PackageConfig) -> PackageSummary:
    """Write the repository entry for one model version."""
    card = read_card(config.model_uri)
    needed = ONNX if config.backend == "onnxruntime" else TORCHSCRIPT
    if needed not in card.files:
        raise JobError(
            f"backend {config.backend} needs {needed}, but {config.model_uri} has {card.files}"
        )
    model_bytes = storage.read_bytes(storage.join(config.model_uri, needed))
    model_dir = Path(config.repository) / config.model_name
    version_dir = model_dir / str(config.version)
    files: dict[str, bytes] = {"model.onnx" if needed == ONNX else "model.pt": model_bytes}
    if config.backend == "python":
        files["model.py"] = PYTHON_MODEL_SOURCE.read_bytes()
    for name, data in files.items():
        storage.write_bytes(str(version_dir / name), data)
    spec = TritonModelSpec(
        name=config.model_name,
        backend=config.backend,
        input_shape=card.input_shape,
        num_classes=card.num_classes,
        max_batch_size=config.max_batch_size,
        dynamic_batching=config.dynamic_batching,
        instance_group=config.instance_group,
        warmup=config.warmup,
    )
    config_path = model_dir / "config.pbtxt"
    storage.write_bytes(str(config_path), render_config(spec).encode())
    return PackageSummary(
        repository=config.repository,
        model_name=config.model_name,
        version=config.version,
        backend=config.backend,
        config_path=str(config_path),
    )
