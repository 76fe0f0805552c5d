"""Checkpoints that survive a killed worker.

One file, `<dir>/checkpoint.pt`, replaced atomically (temp file + rename) every N steps, so a
restart resumes from a complete checkpoint and loses at most N steps. Each checkpoint carries
the model spec's fingerprint: resuming a different model fails with a clear reason instead of
a shape-mismatch stack trace.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lepton_runtime.errors import JobError
from lepton_runtime.storage import atomic_local_file

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainState:
    """Everything needed to continue a run exactly where it stopped."""

    fingerprint: str
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    loss_history: list[float] = field(default_factory=list)
    accuracy_history: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)


def checkpoint_path(directory: str) -> Path:
    """Where the checkpoint of a run lives."""
    return Path(directory) / CHECKPOINT_NAME


def save_checkpoint(directory: str, state: TrainState) -> Path:
    """Write the checkpoint atomically; returns its path."""
    buffer = io.BytesIO()
    torch.save(state.__dict__, buffer)
    path = checkpoint_path(directory)
    with atomic_local_file(path) as handle:
        handle.write(buffer.getvalue())
    return path


def load_checkpoint(directory: str, fingerprint: str) -> TrainState | None:
    """The saved state, None when there is none; JobError if unusable."""
    path = checkpoint_path(directory)
    if not path.exists():
        return None
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        state = TrainState(**raw)
    except Exception as error:
        raise JobError(f"checkpoint {path} cannot be read: {error}") from error
    if state.fingerprint != fingerprint:
        raise JobError(
            f"checkpoint {path} belongs to a different model "
            f"(fingerprint {state.fingerprint}, expected {fingerprint}); "
            "use a new checkpoint dir or set checkpoint.resume=false"
        )
    return state
