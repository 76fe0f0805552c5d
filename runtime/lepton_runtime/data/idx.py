"""The IDX file format of MNIST (big-endian header, then raw values), optionally gzipped.

Reading validates the header against the payload length, so a truncated or corrupt file is
reported as such instead of turning into garbage tensors.
"""

from __future__ import annotations

import gzip
import struct
from typing import Any

import numpy as np
from numpy.typing import NDArray

_DTYPES: dict[int, np.dtype[np.generic]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxError(ValueError):
    """The bytes are not a valid IDX file."""


def decode_idx(data: bytes) -> NDArray[Any]:
    """Parse IDX bytes (gzipped or not) into an array of the declared shape."""
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise IdxError(f"corrupt gzip stream: {error}") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxError("bad magic number (not an IDX file)")
    code, ndim = data[2], data[3]
    if code not in _DTYPES or ndim == 0:
        raise IdxError(f"unsupported IDX type code 0x{code:02x} or rank {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError("truncated header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _DTYPES[code]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise IdxError(f"payload is {len(data) - header} bytes, header promises {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def encode_idx(array: NDArray[Any]) -> bytes:
    """Serialize a uint8 or int8 array as IDX."""
    code = _CODES.get(array.dtype)
    if code is None:
        raise IdxError(f"cannot encode dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()
