"""Reading and writing artifacts by URI, always atomically.

Local paths (and `file://`) are written to a temporary file in the same directory and moved
into place with `os.replace`, so a crash never leaves a half-written file where a good one was.
Remote URIs (`s3://`, ...) go through fsspec; object stores already make a PUT atomic.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

import fsspec


def local_path(uri: str) -> Path | None:
    """The local path behind `file://` URIs and plain paths; None for remote URIs."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.netloc + parsed.path if parsed.netloc else parsed.path)
    return None


def join(uri: str, name: str) -> str:
    """Append a file name to a directory URI."""
    return uri.rstrip("/") + "/" + name


@contextmanager
def atomic_local_file(path: Path) -> Iterator[IO[bytes]]:
    """A file that appears at `path` only once it is completely written and flushed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp_name).chmod(0o644)  # mkstemp's 0600 would hide artifacts from other users
        Path(tmp_name).replace(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_bytes(uri: str, data: bytes) -> None:
    """Write `data` to a local path atomically or to a remote URI through fsspec."""
    path = local_path(uri)
    if path is not None:
        with atomic_local_file(path) as handle:
            handle.write(data)
        return
    with fsspec.open(uri, "wb") as handle:
        handle.write(data)


def read_bytes(uri: str) -> bytes:
    """Read a whole file from a local path or any fsspec URI."""
    path = local_path(uri)
    if path is not None:
        return path.read_bytes()
    with fsspec.open(uri, "rb") as handle:
        data: bytes = handle.read()
        return data
