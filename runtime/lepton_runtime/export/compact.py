"""model.lpc: a compact file for pruned + weight-shared models (Deep Compression's storage).

    header   20 bytes, little-endian: magic b"LPC1", format version (u16), reserved (u16, 0),
             payload length (u64), CRC-32 of the header's first 16 bytes + the payload (u32)
    payload  xz (LZMA2, stdlib `lzma`) of:
               manifest length (u32) + manifest (JSON: name, layout, shape, dtype per tensor)
               + each tensor's bytes, in state-dict order

A weight with a codebook is stored as its float32 centroids, a bitmask of its non-zero
positions (1 bit per weight) and the `bits`-wide indices of the non-zero weights, packed
LSB-first; every other tensor (biases, batch-norm statistics, counters) as its raw bytes in its
own dtype: float32 stays float32, because float16 would not give back the weights written and
these tensors are a few kilobytes. So reading returns exactly the state dict written. Tensor
bytes are in the machine's order: little-endian on every platform the runtime targets.

xz entropy-codes the whole payload (the skewed centroid usage and the bitmask of a sparse
layer compress further). It is in the standard library, so reading a model needs nothing a
runtime image could lack; Brotli (quality 11) was 1-7% smaller on these payloads, but it is
only here as a transitive dependency of Triton's client.

The checksum is checked before anything is decoded, so a corrupt or truncated file fails with
a JobError naming it, never with a model of wrong weights. Writes are atomic (temp file +
rename): a failed write leaves the old file in place.
"""

from __future__ import annotations

import json
import lzma
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, Protocol

import numpy as np
import torch
from pydantic import BaseModel, Field, ValidationError

from lepton_runtime import storage
from lepton_runtime.errors import JobError

COMPACT = "model.lpc"
MAGIC = b"LPC1"
VERSION = 1
HEADER = struct.Struct("<4sHHQI")
_MANIFEST_LENGTH = struct.Struct("<I")
_CENTROID_DTYPE = torch.float32
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
"""Dtypes a dense tensor may have, by the name stored in the manifest."""


class SharedWeight(Protocol):
    """A layer's codebook (compress.codebook.Codebook): weight = centroids[indices], 0 at -1."""

    @property
    def bits(self) -> int: ...

    @property
    def centroids(self) -> torch.Tensor: ...

    @property
    def indices(self) -> torch.Tensor: ...


class Entry(BaseModel):
    """One tensor of the manifest; its byte sizes follow from these fields."""

    name: str
    layout: Literal["dense", "codebook"]
    shape: list[Annotated[int, Field(ge=0)]]
    dtype: str = "float32"
    """Dense tensors: a key of DTYPES; codebook weights are float32."""
    bits: int = Field(0, ge=0, le=8)
    """Codebook weights: width of one packed index."""
    centroids: int = Field(0, ge=0, le=256)
    """Codebook weights: number of centroids."""
    nonzero: int = Field(0, ge=0)
    """Codebook weights: number of non-zero weights (set bits of the mask)."""


class Manifest(BaseModel):
    """The tensors of the file, in state-dict order."""

    entries: list[Entry]


def _numel(shape: list[int]) -> int:
    count = 1
    for side in shape:
        count *= side
    return count


def _sizes(entry: Entry) -> list[int]:
    """Byte sizes of the entry's parts: [raw] or [centroids, mask, packed indices]."""
    numel = _numel(entry.shape)
    if entry.layout == "dense":
        return [numel * torch.empty(0, dtype=DTYPES[entry.dtype]).element_size()]
    return [4 * entry.centroids, (numel + 7) // 8, (entry.nonzero * entry.bits + 7) // 8]


def _raw(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _tensor(data: bytes, dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
    if not data:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)


def _pack(values: np.ndarray, bits: int) -> bytes:  # type: ignore[type-arg]
    """Each uint8 value's low `bits` bits, LSB-first, in one bit stream."""
    planes = np.unpackbits(values.astype(np.uint8)[:, None], axis=1, bitorder="little")
    return np.packbits(planes[:, :bits].reshape(-1), bitorder="little").tobytes()


def _unpack(data: bytes, bits: int, count: int) -> np.ndarray:  # type: ignore[type-arg]
    stream = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    planes = stream[: count * bits].reshape(count, bits)
    return np.packbits(planes, axis=1, bitorder="little").reshape(-1)


def _codebook_entry(name: str, weight: torch.Tensor, codebook: SharedWeight) -> tuple[Entry, bytes]:
    centroids = codebook.centroids.detach().cpu()
    indices = codebook.indices.detach().cpu()
    bits = codebook.bits
    if not 1 <= bits <= 8 or centroids.dtype != _CENTROID_DTYPE or centroids.dim() != 1:
        raise ValueError(f"{name}: need 1..8 bits and 1-D float32 centroids")
    if len(centroids) > 2**bits or indices.shape != weight.shape:
        raise ValueError(f"{name}: {len(centroids)} centroids for {bits} bits, or shape mismatch")
    if indices.numel() and (int(indices.min()) < -1 or int(indices.max()) >= len(centroids)):
        raise ValueError(f"{name}: indices outside the codebook")
    padded = torch.cat([centroids.new_zeros(1), centroids])
    if weight.dtype != torch.float32 or not torch.equal(weight.cpu(), padded[indices + 1]):
        raise ValueError(f"{name}: the state dict's weight is not its codebook's centroids")
    flat = indices.reshape(-1)
    mask = (flat >= 0).numpy()
    packed = _pack(flat[flat >= 0].numpy(), bits)
    entry = Entry(
        name=name,
        layout="codebook",
        shape=list(weight.shape),
        bits=bits,
        centroids=len(centroids),
        nonzero=int(mask.sum()),
    )
    return entry, _raw(centroids) + np.packbits(mask, bitorder="little").tobytes() + packed


def _dense_entry(name: str, tensor: torch.Tensor) -> tuple[Entry, bytes]:
    dtype = str(tensor.dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise ValueError(f"{name}: dtype {tensor.dtype} cannot be stored")
    return Entry(name=name, layout="dense", shape=list(tensor.shape), dtype=dtype), _raw(tensor)


def encode_compact(
    state_dict: Mapping[str, torch.Tensor], codebooks: Mapping[str, SharedWeight]
) -> bytes:
    """The file's bytes; ValueError if a codebook does not reproduce its weight exactly."""
    unknown = sorted(set(codebooks) - set(state_dict))
    if unknown:
        raise ValueError(f"codebooks for tensors not in the state dict: {unknown}")
    entries: list[Entry] = []
    blobs: list[bytes] = []
    for name, tensor in state_dict.items():
        if name in codebooks:
            entry, blob = _codebook_entry(name, tensor, codebooks[name])
        else:
            entry, blob = _dense_entry(name, tensor)
        entries.append(entry)
        blobs.append(blob)
    manifest = Manifest(entries=entries).model_dump_json().encode()
    body = _MANIFEST_LENGTH.pack(len(manifest)) + manifest + b"".join(blobs)
    payload = lzma.compress(body, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
    prefix = HEADER.pack(MAGIC, VERSION, 0, len(payload), 0)[:-4]
    return prefix + struct.pack("<I", zlib.crc32(prefix + payload)) + payload


def write_compact(
    path: str | Path, state_dict: Mapping[str, torch.Tensor], codebooks: Mapping[str, SharedWeight]
) -> int:
    """Write the compact file atomically (a local path or any storage URI); returns its size."""
    data = encode_compact(state_dict, codebooks)
    if isinstance(path, Path):
        with storage.atomic_local_file(path) as handle:
            handle.write(data)
    else:
        storage.write_bytes(path, data)
    return len(data)


def _body(data: bytes, where: str) -> bytes:
    """The checked, decompressed payload; JobError naming `where` on anything wrong."""
    if len(data) < HEADER.size:
        raise JobError(
            f"compact model {where} is truncated: {len(data)} bytes, the header alone is "
            f"{HEADER.size}"
        )
    magic, version, reserved, length, checksum = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise JobError(f"{where} is not a compact model file (magic {magic!r}, want {MAGIC!r})")
    if version != VERSION:
        raise JobError(f"compact model {where} has format version {version}; this reads {VERSION}")
    payload = data[HEADER.size :]
    if len(payload) < length:
        raise JobError(
            f"compact model {where} is truncated: payload {len(payload)} of {length} bytes"
        )
    if len(payload) > length:
        raise JobError(f"compact model {where} is corrupt: {len(payload) - length} trailing bytes")
    if reserved != 0 or zlib.crc32(data[: HEADER.size - 4] + payload) != checksum:
        raise JobError(f"compact model {where} is corrupt: checksum mismatch")
    try:
        return lzma.decompress(payload, format=lzma.FORMAT_XZ)
    except lzma.LZMAError as error:
        raise JobError(f"compact model {where} is corrupt: {error}") from error


def decode_compact(data: bytes, where: str = "<bytes>") -> dict[str, torch.Tensor]:
    """The state dict of a compact file's bytes; JobError naming `where` if they are bad."""
    body = _body(data, where)
    try:
        (size,) = _MANIFEST_LENGTH.unpack_from(body)
        manifest = Manifest.model_validate(json.loads(body[4 : 4 + size]))
        return _tensors(manifest, memoryview(body)[4 + size :])
    except (struct.error, ValueError, KeyError, RuntimeError, ValidationError) as error:
        raise JobError(f"compact model {where} is corrupt: {error}") from error


def _tensors(manifest: Manifest, blob: memoryview) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    offset = 0
    for entry in manifest.entries:
        parts: list[bytes] = []
        for size in _sizes(entry):
            if offset + size > len(blob):
                raise ValueError(f"{entry.name} runs past the end of the payload")
            parts.append(bytes(blob[offset : offset + size]))
            offset += size
        if entry.layout == "dense":
            state[entry.name] = _tensor(parts[0], DTYPES[entry.dtype], entry.shape)
        else:
            state[entry.name] = _codebook_weight(entry, *parts)
    if offset != len(blob):
        raise ValueError(f"{len(blob) - offset} bytes after the last tensor")
    return state


def _codebook_weight(entry: Entry, centroids: bytes, mask: bytes, packed: bytes) -> torch.Tensor:
    numel = _numel(entry.shape)
    kept = np.unpackbits(np.frombuffer(mask, dtype=np.uint8), bitorder="little")[:numel]
    if int(kept.sum()) != entry.nonzero:
        raise ValueError(f"{entry.name}: mask has {int(kept.sum())} weights, not {entry.nonzero}")
    indices = _unpack(packed, entry.bits, entry.nonzero)
    if indices.size and int(indices.max()) >= entry.centroids:
        raise ValueError(f"{entry.name}: index {int(indices.max())} past {entry.centroids}")
    values = _tensor(centroids, _CENTROID_DTYPE, [entry.centroids])
    weight = torch.zeros(numel, dtype=_CENTROID_DTYPE)
    weight[torch.from_numpy(kept.astype(bool))] = values[torch.from_numpy(indices.astype(np.int64))]
    return weight.reshape(entry.shape)


def read_compact(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict written by `write_compact`; JobError naming the file if it is bad."""
    try:
        data = path.read_bytes() if isinstance(path, Path) else storage.read_bytes(path)
    except FileNotFoundError as error:
        raise JobError(f"no compact model at {path}") from error
    return decode_compact(data, str(path))
