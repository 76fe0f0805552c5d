"""Overrides applied to the manifests before they are validated: the same pipeline, smaller.

They patch the documents, not the parsed models, so an override goes through exactly the
validation a user's own edit would; nothing here can produce a spec the cluster would reject.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from lepton_cli.manifests import Manifest

FAST_DATASET = {"uri": "synthetic://mnist?n=2048&seed=0", "format": "synthetic"}
FAST_HYPERPARAMETERS = {"epochs": 1, "batchSize": 32, "learningRate": 0.01}
FAST_PRUNING = {"targetSparsity": 0.5, "steps": 1, "fineTuneEpochs": 0.5}
FAST_GUARD = {"maxAccuracyDrop": 5, "mode": "absolute", "maxTrials": 3}
FAST_MODEL = {"name": "leptonnet", "parameters": {"widthMultiplier": 0.25, "depthMultiplier": 0.5}}
FAST_SEARCH_TRIALS = 4
FAST_SEARCH_EPOCHS = 2  # hyperband needs a rung above its first
# Tuning still walks a real space on the real Triton, a smaller one and briefly.
FAST_TUNING = {"secondsPerCandidate": 0.3}
FAST_TUNING_SPACE = {"maxBatchSizes": [1, 8, 32], "instanceCounts": [1]}


@dataclass(frozen=True)
class Overrides:
    """What to change; None keeps the manifest's value."""

    fast: bool = False
    """Synthetic data, a tiny model, one epoch, one pruning step: seconds, not minutes."""
    epochs: int | None = None
    """Training epochs."""


def _spec(body: dict[str, Any]) -> dict[str, Any]:
    spec = body.setdefault("spec", {})
    assert isinstance(spec, dict)
    return spec


def _section(spec: dict[str, Any], name: str) -> dict[str, Any]:
    section = spec.setdefault(name, {})
    assert isinstance(section, dict)
    return section


def _fast(kind: str, spec: dict[str, Any]) -> None:
    if kind == "LeptonTrainingJob":
        spec["dataset"] = dict(FAST_DATASET)
        spec["model"] = copy.deepcopy(FAST_MODEL)
        _section(spec, "hyperparameters").update(FAST_HYPERPARAMETERS)
    elif kind == "LeptonCompression":
        # A model trained for seconds is fragile: prune it less, and let the guard be lenient
        # (it still decides; the full pipeline keeps the manifest's guard).
        _section(spec, "pruning").update(FAST_PRUNING)
        _section(spec, "accuracyGuard").update(FAST_GUARD)
        if "evaluation" in spec:
            spec["evaluation"] = {"dataset": dict(FAST_DATASET)}
    elif kind == "LeptonEndpoint" and isinstance(spec.get("tuning"), dict):
        spec["tuning"].update(FAST_TUNING)
        _section(spec["tuning"], "space").update(FAST_TUNING_SPACE)
    elif kind == "LeptonSearch":
        # Every trial fast, and a few of them (each trial's own values of the space stay).
        template = _section(spec, "template")
        _fast("LeptonTrainingJob", template)
        _section(template, "hyperparameters")["epochs"] = FAST_SEARCH_EPOCHS
        budget = _section(spec, "budget")
        budget.pop("maxEpochsPerTrial", None)
        trials = min(int(budget.get("maxTrials", FAST_SEARCH_TRIALS)), FAST_SEARCH_TRIALS)
        budget["maxTrials"] = trials
        budget["parallelTrials"] = min(int(budget.get("parallelTrials", 2)), trials)
        if isinstance(spec.get("algorithm"), dict):
            spec["algorithm"]["minEpochs"] = 1


def apply_overrides(manifests: list[Manifest], overrides: Overrides) -> list[Manifest]:
    """Patched copies of the manifests (the originals are left alone)."""
    patched: list[Manifest] = []
    for manifest in manifests:
        body = copy.deepcopy(manifest.body)
        if isinstance(body.get("spec"), dict):
            spec = _spec(body)
            if overrides.fast:
                _fast(manifest.kind, spec)
            if overrides.epochs is not None and manifest.kind == "LeptonTrainingJob":
                _section(spec, "hyperparameters")["epochs"] = overrides.epochs
            if overrides.epochs is not None and manifest.kind == "LeptonSearch":
                template = _section(spec, "template")
                _section(template, "hyperparameters")["epochs"] = overrides.epochs
        patched.append(Manifest(manifest.path, manifest.index, body))
    return patched
