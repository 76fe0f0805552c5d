"""Build a model from its contract spec.

The spec (not the class) is what we store next to weights and checkpoints: it is enough to
rebuild the exact architecture, and its fingerprint tells a checkpoint of a different model
apart before loading fails with an unreadable shape error.
"""

from __future__ import annotations

import hashlib
import importlib

from torch import nn

from lepton_runtime.contract import LeptonNetSpec, MLPSpec, ModelSpec, UserModelSpec
from lepton_runtime.errors import JobError
from lepton_runtime.models.leptonnet import LeptonNet
from lepton_runtime.models.mlp import MLP


def _import_factory(spec: UserModelSpec) -> nn.Module:
    module_name, _, attribute = spec.factory.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise JobError(f"cannot import model factory {spec.factory}: {error}") from error
    model = factory(**spec.kwargs)
    if not isinstance(model, nn.Module):
        raise JobError(f"model factory {spec.factory} returned {type(model).__name__}")
    return model


def build_model(spec: ModelSpec) -> nn.Module:
    """A freshly initialised model for `spec`."""
    if isinstance(spec, LeptonNetSpec):
        return LeptonNet(
            width_multiplier=spec.width_multiplier,
            depth_multiplier=spec.depth_multiplier,
            num_classes=spec.num_classes,
            in_channels=spec.in_channels,
            dropout=spec.dropout,
            stages=spec.stages,
            blocks_per_stage=spec.blocks_per_stage,
            kernel_size=spec.kernel_size,
            activation=spec.activation,
            normalization=spec.normalization,
            convolution=spec.convolution,
        )
    if isinstance(spec, MLPSpec):
        return MLP(spec.input_size, list(spec.hidden_sizes), spec.num_classes)
    return _import_factory(spec)


def input_shape(spec: ModelSpec) -> list[int]:
    """Shape of one input sample (without the batch dimension)."""
    if isinstance(spec, LeptonNetSpec):
        return [spec.in_channels, 28, 28]
    if isinstance(spec, MLPSpec) and spec.input_size != 784:
        return [spec.input_size]
    return [1, 28, 28]


# LeptonNetSpec fields added after checkpoints were first fingerprinted. At their defaults they
# describe the original network, so they stay out of the hash: a checkpoint written before
# they existed still resumes, and any other value gives a new fingerprint.
_LATER_LEPTONNET_FIELDS = (
    "stages",
    "blocks_per_stage",
    "kernel_size",
    "activation",
    "normalization",
    "convolution",
)


def _default_later_fields(spec: ModelSpec) -> set[str]:
    if not isinstance(spec, LeptonNetSpec):
        return set()
    fields = LeptonNetSpec.model_fields
    return {n for n in _LATER_LEPTONNET_FIELDS if getattr(spec, n) == fields[n].default}


def spec_fingerprint(spec: ModelSpec) -> str:
    """A short stable hash of the architecture-defining spec."""
    dumped = spec.model_dump_json(exclude=_default_later_fields(spec))
    return hashlib.sha256(dumped.encode()).hexdigest()[:16]
