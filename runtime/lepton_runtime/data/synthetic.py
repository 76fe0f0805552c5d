"""A learnable stand-in for MNIST that needs no files: `synthetic://mnist?n=512&seed=0`.

Every class has a fixed random prototype image; samples are the prototype plus noise and a
small shift, so a model trained on it reaches high accuracy quickly and smoke tests can assert
real learning without real data.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
from numpy.typing import NDArray


def parse_synthetic_uri(uri: str) -> tuple[int, int, int]:
    """(samples, classes, seed) from a synthetic URI."""
    parsed = urlparse(uri)
    if parsed.netloc != "mnist":
        raise ValueError(f"unknown synthetic dataset {parsed.netloc!r} (only 'mnist')")
    query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    return int(query.get("n", 512)), int(query.get("classes", 10)), int(query.get("seed", 0))


def make_synthetic(
    samples: int, classes: int, seed: int, offset: int = 0
) -> tuple[NDArray[Any], NDArray[Any]]:
    """uint8 images [samples, 28, 28] and int64 labels; `offset` separates train from test."""
    prototypes = np.random.default_rng(seed).random((classes, 28, 28)) > 0.7
    rng = np.random.default_rng(seed + 1 + offset)
    labels = rng.integers(0, classes, size=samples)
    images = prototypes[labels].astype(np.float32) * 0.8
    images += rng.normal(0.0, 0.25, size=images.shape).astype(np.float32)
    shifts = rng.integers(-1, 2, size=(samples, 2))
    for i, (dy, dx) in enumerate(shifts):
        images[i] = np.roll(images[i], (int(dy), int(dx)), axis=(0, 1))
    pixels = np.clip(images * 255.0, 0, 255).astype(np.uint8)
    return pixels, labels.astype(np.int64)
