"""Load the train and test splits behind a dataset URI into memory.

MNIST-sized data fits in memory many times over, and in-memory tensors make DDP sharding,
augmentation and evaluation trivial. Files are looked up under the URI with the standard names
(`train-images-idx3-ubyte`, optionally `.gz`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from lepton_runtime import storage
from lepton_runtime.contract import DatasetSpec
from lepton_runtime.data.idx import IdxError, decode_idx
from lepton_runtime.data.synthetic import make_synthetic, parse_synthetic_uri
from lepton_runtime.errors import JobError

FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class Split:
    """Images as float32 [N, 1, H, W] in [0, 1] and int64 labels [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, limit: int | None) -> Split:
        """The first `limit` samples (all of them for None)."""
        if limit is None or limit >= len(self):
            return self
        return Split(self.images[:limit], self.labels[:limit])


def _to_split(pixels: NDArray[Any], labels: NDArray[Any]) -> Split:
    images = torch.from_numpy(pixels.astype(np.float32) / 255.0).unsqueeze(1)
    return Split(images, torch.from_numpy(labels.astype(np.int64)))


def _read_idx_file(base: str, name: str) -> NDArray[Any]:
    errors: list[str] = []
    for candidate in (name, name + ".gz"):
        uri = storage.join(base, candidate)
        try:
            data = storage.read_bytes(uri)
        except FileNotFoundError:
            errors.append(f"{candidate} not found")
            continue
        except OSError as error:
            raise JobError(f"dataset file {uri} cannot be read: {error}") from error
        try:
            return decode_idx(data)
        except IdxError as error:
            raise JobError(f"dataset file {uri} is corrupt: {error}") from error
    raise JobError(f"dataset {base}: {name} (or .gz) not found")


def _load_split(base: str, split: str) -> Split:
    images = _read_idx_file(base, FILES[(split, "images")])
    labels = _read_idx_file(base, FILES[(split, "labels")])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise JobError(
            f"dataset {base} {split}: images {images.shape} do not match labels {labels.shape}"
        )
    return _to_split(images, labels)


def load_splits(spec: DatasetSpec) -> tuple[Split, Split]:
    """(train, test) for the dataset spec; JobError with a one-line reason on bad data."""
    if spec.uri.startswith("synthetic://"):
        try:
            samples, classes, seed = parse_synthetic_uri(spec.uri)
        except ValueError as error:
            raise JobError(f"dataset {spec.uri}: {error}") from error
        train = _to_split(*make_synthetic(samples, classes, seed))
        test = _to_split(*make_synthetic(max(samples // 4, 64), classes, seed, offset=1))
    else:
        train, test = _load_split(spec.uri, "train"), _load_split(spec.uri, "test")
    return train.head(spec.train_limit), test.head(spec.test_limit)
