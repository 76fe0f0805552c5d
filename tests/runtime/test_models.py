"""Model families and the registry."""

from __future__ import annotations

import pytest
import torch

from lepton_runtime.contract import LeptonNetSpec, MLPSpec, UserModelSpec
from lepton_runtime.errors import JobError
from lepton_runtime.models import build_model, input_shape, spec_fingerprint

pytestmark = pytest.mark.runtime


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_leptonnet_multipliers_scale_the_network() -> None:
    small = build_model(LeptonNetSpec(width_multiplier=0.25, depth_multiplier=0.5))
    base = build_model(LeptonNetSpec())
    deep = build_model(LeptonNetSpec(depth_multiplier=2.0))
    assert _params(small) < _params(base) < _params(deep)
    x = torch.rand(3, *input_shape(LeptonNetSpec()))
    assert tuple(base.eval()(x).shape) == (3, 10)


def test_mlp_and_user_models_build() -> None:
    mlp = build_model(MLPSpec(hidden_sizes=[16, 8], num_classes=5))
    assert tuple(mlp(torch.rand(2, 1, 28, 28)).shape) == (2, 5)
    user = build_model(UserModelSpec(factory="helpers_models:small_mlp", kwargs={"hidden": 4}))
    assert tuple(user(torch.rand(2, 1, 28, 28)).shape) == (2, 10)


def test_missing_user_model_is_a_runtime_failure() -> None:
    with pytest.raises(JobError, match="cannot import"):
        build_model(UserModelSpec(factory="no_such_module:factory"))


def test_fingerprint_tells_architectures_apart() -> None:
    assert spec_fingerprint(LeptonNetSpec()) == spec_fingerprint(LeptonNetSpec())
    assert spec_fingerprint(LeptonNetSpec()) != spec_fingerprint(LeptonNetSpec(width_multiplier=2))
