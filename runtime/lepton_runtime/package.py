"""`package`: turn a model directory into a Triton model repository.

    <repository>/<name>/config.pbtxt
    <repository>/<name>/<version>/model.pt     (pytorch_libtorch; TorchScript)
    <repository>/<name>/<version>/model.onnx   (onnxruntime)
    <repository>/<name>/<version>/model.py + model.onnx + model.pt
                                              (python, models with an ONNX file: runs it with
                                              ONNX Runtime)
    <repository>/<name>/<version>/model.py + model.pt   (python, others: runs the TorchScript)
    <repository>/<name>/<version>/model.py + model.lpc + model.json
                                              (python, codebook models: decodes the compact file)

Files are written atomically and config.pbtxt last, so Triton polling the repository never
sees a version directory without its model.
"""

from __future__ import annotations

from pathlib import Path

from lepton_runtime import storage
from lepton_runtime.contract import ExportFormat, PackageConfig, PackageSummary
from lepton_runtime.errors import JobError
from lepton_runtime.export.artifacts import (
    CARD,
    ONNX,
    TORCHSCRIPT,
    ModelCard,
    model_from_compact,
    read_card,
)
from lepton_runtime.export.compact import COMPACT
from lepton_runtime.export.triton_config import TritonModelSpec, render_config

PYTHON_MODEL_SOURCE = Path(__file__).parent / "export" / "triton_python_model.py"


def _version_files(config: PackageConfig, card: ModelCard) -> dict[str, bytes]:
    """The files of the version directory, by name.

    The python backend serves a codebook model's compact file itself; it is decoded here
    first, so a corrupt file fails this step with its name, not Triton's model load later.
    """
    if config.backend == "python" and COMPACT in card.files:
        path = storage.join(config.model_uri, COMPACT)
        compact = storage.read_bytes(path)
        model_from_compact(card, compact, path)
        return {
            COMPACT: compact,
            CARD: card.model_dump_json(by_alias=True).encode(),
            "model.py": PYTHON_MODEL_SOURCE.read_bytes(),
        }
    if config.backend == "python":
        # model.py runs the ONNX file when there is one: ONNX Runtime serves the same network
        # faster than TorchScript on the CPU (docs/runtime.md). The TorchScript goes along
        # for a GPU instance that the image's ONNX Runtime cannot use.
        shipped = [name for name in (ONNX, TORCHSCRIPT) if name in card.files]
        if not shipped:
            raise JobError(
                f"backend python needs {TORCHSCRIPT} or {ONNX}, but {config.model_uri} has "
                f"{card.files}"
            )
        files = {_REPOSITORY_NAME[name]: _read(config, name) for name in shipped}
        return files | {"model.py": PYTHON_MODEL_SOURCE.read_bytes()}
    needed = ONNX if config.backend == "onnxruntime" else TORCHSCRIPT
    if needed not in card.files:
        raise JobError(
            f"backend {config.backend} needs {needed}, but {config.model_uri} has {card.files}"
        )
    return {_REPOSITORY_NAME[needed]: _read(config, needed)}


_REPOSITORY_NAME = {ONNX: "model.onnx", TORCHSCRIPT: "model.pt"}
"""What Triton's backends call each artifact file in a version directory."""
_ARTIFACT_OF_FORMAT: dict[ExportFormat, str] = {"onnx": ONNX, "torchscript": TORCHSCRIPT}


def runnable_formats(config: PackageConfig, card: ModelCard) -> list[ExportFormat]:
    """The formats the python backend's model.py can be told to run for `card`'s model (none
    for a compact model, which it decodes, or for another backend)."""
    if config.backend != "python" or COMPACT in card.files:
        return []
    return [fmt for fmt, name in _ARTIFACT_OF_FORMAT.items() if name in card.files]


def _read(config: PackageConfig, name: str) -> bytes:
    return storage.read_bytes(storage.join(config.model_uri, name))


def model_spec(config: PackageConfig, card: ModelCard) -> TritonModelSpec:
    """What config.pbtxt says about the model `config` packages."""
    return TritonModelSpec(
        name=config.model_name,
        backend=config.backend,
        input_shape=card.input_shape,
        num_classes=card.num_classes,
        max_batch_size=config.max_batch_size,
        dynamic_batching=config.dynamic_batching,
        instance_group=config.instance_group,
        warmup=config.warmup,
        model_format=config.model_format,
    )


def run(config: PackageConfig) -> PackageSummary:
    """Write the repository entry for one model version."""
    card = read_card(config.model_uri)
    files = _version_files(config, card)
    formats = runnable_formats(config, card)
    if config.model_format is not None and config.model_format not in formats:
        raise JobError(
            f"modelFormat {config.model_format}: the python backend can run "
            f"{formats or 'only the compact file'} of {config.model_uri}; name one of those "
            "or drop modelFormat"
        )
    model_dir = Path(config.repository) / config.model_name
    version_dir = model_dir / str(config.version)
    for name, data in files.items():
        storage.write_bytes(str(version_dir / name), data)
    spec = model_spec(config, card)
    config_path = model_dir / "config.pbtxt"
    storage.write_bytes(str(config_path), render_config(spec).encode())
    tuning = None
    if config.tuning is not None:
        from lepton_runtime.tune.runner import tune  # noqa: PLC0415 (tritonclient, numpy)

        tuning = tune(config.repository, spec, config.tuning, formats=formats)
    return PackageSummary(
        repository=config.repository,
        model_name=config.model_name,
        version=config.version,
        backend=config.backend,
        config_path=str(config_path),
        tuning=tuning,
    )
