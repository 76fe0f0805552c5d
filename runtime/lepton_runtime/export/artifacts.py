"""A model directory: what `train` and `compress` write and `compress`/`package` read.

    model.pt    state dict of the float model (to fine-tune or re-export it)   [train only]
    model.lpc   compact pruned + weight-shared weights (export/compact.py)  [codebook only]
    model.ts    TorchScript, DEFLATE-packed (what Triton's libtorch/python backends run; of a
                codebook model, its decoded dense weights)
    model.onnx  ONNX (optional; float models only)
    model.json  the model card: spec, input shape, quantization, metrics, files

The card is written last, so a directory with a card is a complete artifact; every file is
written atomically so a crash never replaces a good artifact with a partial one.
"""

from __future__ import annotations

import io
import json
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from torch import nn

from lepton_runtime import storage
from lepton_runtime.contract import ModelSpec
from lepton_runtime.errors import JobError
from lepton_runtime.export.compact import COMPACT, decode_compact
from lepton_runtime.export.onnx import onnx_bytes
from lepton_runtime.export.torchscript import (
    load_torchscript,
    to_torchscript,
    torchscript_bytes,
)
from lepton_runtime.models import build_model, input_shape

CARD = "model.json"
STATE_DICT = "model.pt"
TORCHSCRIPT = "model.ts"
ONNX = "model.onnx"


class ModelCard(BaseModel):
    """What a consumer needs to know about an artifact without loading it."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, use_attribute_docstrings=True
    )

    spec: ModelSpec = Field(discriminator="name")
    """The architecture: enough to rebuild the float model for model.pt."""
    input_shape: list[int]
    """One sample's shape without the batch dimension (Triton's dims)."""
    num_classes: int
    """Width of the logits output."""
    quantization: str = "none"
    """Quantization of model.ts (none, dynamic-int8, static-int8, fp16, codebook)."""
    codebook_bits: int | None = None
    """Index width of model.lpc's shared weights (codebook only)."""
    sparsity: float = 0.0
    """Fraction of zero weights among the prunable ones."""
    metrics: dict[str, float] = Field(default_factory=dict)
    """Accuracy and friends, measured when the artifact was written."""
    files: list[str] = Field(default_factory=list)
    """Files of the directory besides model.json."""
    file_sizes: dict[str, int] = Field(default_factory=dict)
    """Bytes of each of those files."""


def example_input(card: ModelCard, batch: int = 2) -> torch.Tensor:
    """A batch of random inputs of the card's shape (for tracing and warmup)."""
    return torch.rand(batch, *card.input_shape)


def make_card(spec: ModelSpec, model: nn.Module, **extra: Any) -> ModelCard:
    """A card for `model` built from `spec`; num_classes measured from a forward pass."""
    shape = input_shape(spec)
    model.eval()
    with torch.no_grad():
        classes = int(model(torch.rand(1, *shape)).shape[-1])
    return ModelCard(spec=spec, input_shape=shape, num_classes=classes, **extra)


def write_artifacts(
    uri: str,
    card: ModelCard,
    model: nn.Module,
    *,
    state_dict: bool = True,
    formats: tuple[str, ...] = ("torchscript",),
    packed_torchscript: bytes | None = None,
    compact: bytes | None = None,
    onnx_model: bytes | None = None,
) -> ModelCard:
    """Write the model directory; returns the card with its files and their sizes.

    `compact` is a codebook model's model.lpc, written besides the requested formats;
    `onnx_model` an ONNX file made apart (a static-int8 model's, quantized by ONNX Runtime).
    """
    written: dict[str, bytes] = {}
    if state_dict:
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        written[STATE_DICT] = buffer.getvalue()
    if compact is not None:
        written[COMPACT] = compact
    if "torchscript" in formats:
        if packed_torchscript is None:
            packed_torchscript = torchscript_bytes(to_torchscript(model, example_input(card)))
        written[TORCHSCRIPT] = packed_torchscript
    if "onnx" in formats:
        if onnx_model is None and card.quantization not in ("none", "fp16", "codebook"):
            raise JobError(f"onnx export does not support {card.quantization} models")
        written[ONNX] = onnx_model or onnx_bytes(model, example_input(card))
    for name, data in written.items():
        storage.write_bytes(storage.join(uri, name), data)
    card = card.model_copy(
        update={
            "files": list(written),
            "file_sizes": {name: len(data) for name, data in written.items()},
        }
    )
    storage.write_bytes(storage.join(uri, CARD), card.model_dump_json(by_alias=True).encode())
    return card


def read_card(uri: str) -> ModelCard:
    """The model card of an artifact directory; JobError if it is missing or invalid."""
    try:
        raw = json.loads(storage.read_bytes(storage.join(uri, CARD)))
        return ModelCard.model_validate(raw)
    except FileNotFoundError as error:
        raise JobError(f"no model artifact at {uri} ({CARD} missing)") from error
    except ValueError as error:
        raise JobError(f"model card at {uri} is invalid: {error}") from error


def load_float_model(uri: str) -> tuple[nn.Module, ModelCard]:
    """Rebuild the float model from the card's spec and the state dict."""
    card = read_card(uri)
    model = build_model(card.spec)
    try:
        state = torch.load(
            io.BytesIO(storage.read_bytes(storage.join(uri, STATE_DICT))),
            map_location="cpu",
            weights_only=True,
        )
        model.load_state_dict(state)
    except FileNotFoundError as error:
        raise JobError(f"{uri} has no {STATE_DICT} (compressed artifacts lack one)") from error
    except (RuntimeError, ValueError) as error:
        raise JobError(f"{uri}/{STATE_DICT} does not fit the model spec: {error}") from error
    model.eval()
    return model, card


def model_from_compact(card: ModelCard, data: bytes, where: str = "<bytes>") -> nn.Module:
    """The card's architecture with the weights of a model.lpc's bytes (eval mode)."""
    model = build_model(card.spec)
    try:
        model.load_state_dict(decode_compact(data, where))
    except RuntimeError as error:
        raise JobError(
            f"compact model {where} does not fit its card's model spec: {error}"
        ) from error
    return model.eval()


def load_compact_model(uri: str) -> nn.Module:
    """The model of an artifact directory with a model.lpc (the python backend's loader)."""
    card = read_card(uri)
    path = storage.join(uri, COMPACT)
    if COMPACT not in card.files:
        raise JobError(f"{uri} has no {COMPACT} (its files: {card.files})")
    try:
        data = storage.read_bytes(path)
    except FileNotFoundError as error:
        raise JobError(f"{path} is missing, though its card lists it") from error
    return model_from_compact(card, data, path)


def load_scripted(uri: str) -> torch.jit.ScriptModule:
    """The TorchScript module of an artifact directory."""
    return load_torchscript(storage.read_bytes(storage.join(uri, TORCHSCRIPT)))
