"""Datasets: IDX parsing, the npm-converted real digits, synthetic data, remote URIs."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from lepton_runtime.contract import DatasetSpec
from lepton_runtime.data import load_splits
from lepton_runtime.data.idx import IdxError, decode_idx, encode_idx
from lepton_runtime.errors import JobError

pytestmark = pytest.mark.runtime


def test_idx_round_trip_plain_and_gzipped() -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    encoded = encode_idx(array)
    assert np.array_equal(decode_idx(encoded), array)
    assert np.array_equal(decode_idx(gzip.compress(encoded)), array)


@pytest.mark.parametrize(
    "data", [b"", b"\x01\x02\x08\x01", encode_idx(np.zeros((4, 4), np.uint8))[:-3], b"\x1f\x8bjunk"]
)
def test_corrupt_idx_is_rejected(data: bytes) -> None:
    with pytest.raises(IdxError):
        decode_idx(data)


def test_real_mnist_split(mnist_uri: str) -> None:
    train, test = load_splits(DatasetSpec(uri=mnist_uri))
    assert (len(train), len(test)) == (8000, 2000)
    assert tuple(train.images.shape[1:]) == (1, 28, 28)
    assert float(train.images.min()) >= 0.0 and float(train.images.max()) <= 1.0
    counts = np.bincount(test.labels.numpy(), minlength=10)
    assert counts.min() > 150  # every digit is well represented in the held-out split
    assert 0.08 < float(train.images.mean()) < 0.2  # real MNIST ink density, not noise


def test_synthetic_dataset_is_deterministic() -> None:
    first, _ = load_splits(DatasetSpec(uri="synthetic://mnist?n=64&seed=3"))
    second, _ = load_splits(DatasetSpec(uri="synthetic://mnist?n=64&seed=3"))
    assert len(first) == 64
    assert bool((first.images == second.images).all())


def test_missing_dataset_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="train-images-idx3-ubyte"):
        load_splits(DatasetSpec(uri=f"file://{tmp_path}"))


def test_corrupt_dataset_says_corrupt(tmp_path: Path, mnist_uri: str) -> None:
    source = Path(mnist_uri.removeprefix("file://"))
    for item in source.iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(JobError, match="corrupt"):
        load_splits(DatasetSpec(uri=f"file://{tmp_path}"))


@pytest.fixture
def http_dataset(tmp_path: Path, mnist_uri: str) -> Iterator[str]:
    """The test split served over HTTP, gzipped like the original MNIST mirrors."""
    source = Path(mnist_uri.removeprefix("file://"))
    for item in source.iterdir():
        (tmp_path / (item.name + ".gz")).write_bytes(gzip.compress(item.read_bytes()))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_dataset_with_gzip(http_dataset: str, mnist_uri: str) -> None:
    remote_train, remote_test = load_splits(DatasetSpec(uri=http_dataset, train_limit=100))
    local_train, _ = load_splits(DatasetSpec(uri=mnist_uri, train_limit=100))
    assert len(remote_test) == 2000
    assert bool((remote_train.images == local_train.images).all())
