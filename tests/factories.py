"""Factories for Lepton manifests: a valid default, changed only where a test says so.

    make_training_job(name="a", spec={"resources": {"workers": 4}})

`spec` overrides are merged deeply into the default spec, so a test names only what matters.
"""

from __future__ import annotations

import copy
from typing import Any

from lepton_operator.api.base import GROUP_VERSION

Manifest = dict[str, Any]


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of base with overrides merged in; a value of None removes the key."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _manifest(kind: str, name: str, namespace: str, spec: Manifest) -> Manifest:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1},
        "spec": spec,
    }


def make_training_job(
    name: str = "mnist", namespace: str = "default", spec: Manifest | None = None
) -> Manifest:
    default = {
        "model": {"name": "leptonnet"},
        "dataset": {"uri": "pvc://datasets/mnist"},
        "output": {"uri": f"pvc://artifacts/{name}"},
        "resources": {"workers": 2, "gpusPerWorker": 1},
    }
    return _manifest("LeptonTrainingJob", name, namespace, deep_merge(default, spec or {}))


def make_compression(
    name: str = "mnist-compressed", namespace: str = "default", spec: Manifest | None = None
) -> Manifest:
    default = {
        "source": {"trainingJobRef": {"name": "mnist"}},
        "output": {"uri": f"pvc://artifacts/{name}"},
    }
    return _manifest("LeptonCompression", name, namespace, deep_merge(default, spec or {}))


def make_endpoint(
    name: str = "mnist", namespace: str = "default", spec: Manifest | None = None
) -> Manifest:
    default = {"source": {"compressionRef": {"name": "mnist-compressed"}}}
    return _manifest("LeptonEndpoint", name, namespace, deep_merge(default, spec or {}))


def make_search(
    name: str = "mnist-search", namespace: str = "default", spec: Manifest | None = None
) -> Manifest:
    default = {
        "template": {
            "model": {"name": "leptonnet"},
            "dataset": {"uri": "pvc://datasets/mnist"},
            "output": {"uri": f"pvc://artifacts/{name}"},
            "hyperparameters": {"epochs": 3},
            "resources": {"workers": 1, "gpusPerWorker": 1},
        },
        "space": [
            {"name": "model.parameters.widthMultiplier", "type": "float", "min": 0.25, "max": 1.0},
            {
                "name": "model.parameters.activation",
                "type": "categorical",
                "values": ["relu", "gelu"],
            },
            {
                "name": "hyperparameters.learningRate",
                "type": "float",
                "min": 1e-4,
                "max": 1e-2,
                "log": True,
            },
        ],
        "budget": {"maxTrials": 4, "parallelTrials": 2},
    }
    return _manifest("LeptonSearch", name, namespace, deep_merge(default, spec or {}))
