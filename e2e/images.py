"""The real node's images, built without a registry or a Docker daemon, cached outside the tree.

    python -m e2e.images           # build what is missing (minutes, once per input change)
    python -m e2e.images --list    # print the cache, build nothing

One OCI layout holds three tags that share their layers:

- ``base``: Debian bookworm (minbase, python3.11) from ``mmdebstrap``; sleeps forever. The
  pod sandbox image (containerd's ``sandbox_image`` must be an image it has), and the image of
  the training operator's init container, which waits for the master's name with ``nslookup``
  (here a two-line script over glibc's resolver, ``getent hosts``).
- ``runtime``: + the Lepton package with its ``[runtime]`` extra in ``/opt/lepton``, installed
  from ``requirements.lock`` by the locked uv, as ``images/runtime/Dockerfile`` installs it.
- ``triton``: + a ``tritonserver`` on PATH: the server from the ``nvidia-pytriton`` wheel (which
  the runtime extra carries) with its python backend, for ``LeptonEndpoint.spec.triton.image``.
- ``operator``: ``base`` + the package without extras (no torch), as
  ``images/operator/Dockerfile`` installs it; ``lepton-operator`` is its command.

Layers are packed with ``umoci``. The layout lands in ``$LEPTON_CACHE/images/lepton-<key>``,
where the key hashes every input (lock, pyproject, the packages' sources, this recipe); a layout
with the current key is not rebuilt, older ones are deleted. ``e2e.node`` imports it into the
node's containerd.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from e2e import build

REPO = Path(__file__).resolve().parent.parent
# Bump when the recipe below changes in a way the hashed inputs do not show.
RECIPE_VERSION = "3"
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# libpython: the python backend's stub links libpython3.11.so.1.0.
DEBIAN_PACKAGES = ("python3.11", "libpython3.11")
VENV = "/opt/lepton"
TRITON_ROOT = "/opt/tritonserver"
# What the images are called inside containerd (pods name them with imagePullPolicy: Never).
IMAGE_NAMES = {
    "base": "docker.io/lepton/base:0.1.0",
    "runtime": "docker.io/lepton/runtime:0.1.0",
    "triton": "docker.io/lepton/tritonserver-local:0.1.0",
    "operator": "docker.io/lepton/operator:0.1.0",
}
INPUTS = ("requirements.lock", "pyproject.toml", "README.md", "operator", "runtime")
RUNTIME_ENV = (
    f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONUNBUFFERED=1",
    "HOME=/tmp",
    "MPLCONFIGDIR=/tmp/matplotlib",
)


class ImageError(RuntimeError):
    """An image could not be built; the message names the step and its log."""


def images_dir() -> Path:
    return build.cache_dir() / "images"


def _tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", *INPUTS],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    return sorted(REPO / name.decode() for name in listed.stdout.split(b"\0") if name)


def input_key() -> str:
    """Hash of what goes into the images: a change to any of them means a rebuild."""
    digest = hashlib.sha256(f"recipe {RECIPE_VERSION}\n".encode())
    for path in _tracked_files():
        if path.is_file():
            digest.update(str(path.relative_to(REPO)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def layout_path(key: str | None = None) -> Path:
    return images_dir() / f"lepton-{key or input_key()}"


def _run(args: list[str], log: Path, *, cwd: Path | None = None) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(args)}\n")
        out.flush()
        result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise ImageError(f"`{' '.join(args[:3])} ...` failed; full log: {log}\n{tail}")


def _require_tools() -> None:
    missing = [tool for tool in ("mmdebstrap", "umoci", "unshare") if shutil.which(tool) is None]
    if missing:
        raise ImageError(
            f"{', '.join(missing)} not found: install the real node's Debian packages "
            "(`make node-deps`, as root)"
        )


@contextlib.contextmanager
def _chroot_mounts(rootfs: Path) -> Iterator[list[str]]:
    """A prefix that runs a command in `rootfs` with what an install needs mounted for it only.

    `unshare -m` gives the command its own mount table, so nothing stays mounted on the host
    or lands in a layer: the uv cache (wheels are not downloaded twice), /proc, /dev, the
    host's resolver and CA bundle (uv reaches the package registry as the host does).
    """
    (rootfs / "uvcache").mkdir(exist_ok=True)
    (rootfs / "tmp" / "build-ca.crt").touch()
    uv_cache = subprocess.run(
        [str(_uv()), "cache", "dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    mounts = [
        f"mount --bind {uv_cache} {rootfs}/uvcache",
        f"mount -t proc proc {rootfs}/proc",
        f"mount --bind /dev {rootfs}/dev",
        f"mount --bind /etc/resolv.conf {rootfs}/etc/resolv.conf",
        f"mount --bind /etc/ssl/certs/ca-certificates.crt {rootfs}/tmp/build-ca.crt",
    ]
    try:
        yield ["unshare", "-m", "sh", "-ec", " && ".join(mounts) + f' && chroot {rootfs} "$@"', "-"]
    finally:
        (rootfs / "uvcache").rmdir()
        (rootfs / "tmp" / "build-ca.crt").unlink()


def _uv() -> Path:
    uv = sorted((build.cache_dir() / "tools").glob("uv-*/bin/uv"))
    if not uv:
        raise ImageError("the locked uv is not in the cache: run `make setup` first")
    return uv[-1]


_NSLOOKUP = """#!/bin/sh
# What the training operator's init container calls: succeed once the name resolves.
exec getent hosts "$1"
"""


def _install_base(rootfs: Path) -> None:
    script = rootfs / "usr" / "local" / "bin" / "nslookup"
    script.write_text(_NSLOOKUP)
    script.chmod(0o755)


def install_arguments(extras: str) -> list[str]:
    """`uv pip install` arguments, as the Dockerfiles give them: the package (with `extras`,
    e.g. "[runtime]"), every version from the lock as constraints, build tools too."""
    lock = "/tmp/src/requirements.lock"
    return ["-c", lock, "-b", lock, f"/tmp/src{extras}"]


def _install_lepton(rootfs: Path, log: Path, extras: str) -> None:
    """The Lepton package into a virtualenv at /opt/lepton, by the locked uv, as uid 1000."""
    shutil.copy(_uv(), rootfs / "tmp" / "uv")
    (rootfs / "etc" / "resolv.conf").touch()
    # The inputs the key hashes, and nothing else of the work tree (no venv, no caches).
    for path in _tracked_files():
        if path.is_file():
            copy = rootfs / "tmp" / "src" / path.relative_to(REPO)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
    with _chroot_mounts(rootfs) as chroot:
        _run([*chroot, "python3.11", "-m", "venv", "--without-pip", VENV], log)
        _run([*chroot, "env", "SSL_CERT_FILE=/tmp/build-ca.crt", "UV_CACHE_DIR=/uvcache",
              "UV_LINK_MODE=copy", "UV_PYTHON_DOWNLOADS=never", "/tmp/uv", "pip", "install",
              "--quiet", "--python", f"{VENV}/bin/python",
              *install_arguments(extras)], log)  # fmt: skip
        # An /etc/passwd entry for uid 1000: torch calls getpass.getuser().
        _run([*chroot, "sh", "-c", "groupadd --gid 1000 lepton && useradd --uid 1000 "
              "--gid 1000 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin lepton"],
             log)  # fmt: skip
    (rootfs / "tmp" / "uv").unlink()
    shutil.rmtree(rootfs / "tmp" / "src")


_TRITON_WRAPPER = """#!/bin/sh
# The server from the nvidia-pytriton wheel, with its python backend laid out for Python 3.11.
export LD_LIBRARY_PATH="{site}/nvidia_pytriton.libs${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
# The backend's stub embeds the system interpreter: point it at the image's packages.
export PYTHONPATH="{site}${{PYTHONPATH:+:$PYTHONPATH}}"
exec {root}/bin/tritonserver --backend-directory={backends} "$@"
"""


def _install_triton(rootfs: Path, log: Path) -> None:
    sites = sorted((rootfs / VENV.lstrip("/") / "lib").glob("python3.*/site-packages"))
    if not sites:
        raise ImageError(f"no site-packages under {VENV} in {rootfs}")
    site = sites[0]
    wheel_root = site / "pytriton" / "tritonserver"
    if not (wheel_root / "bin" / "tritonserver").exists():
        raise ImageError(f"nvidia-pytriton's tritonserver is missing under {wheel_root}")
    backends = rootfs / TRITON_ROOT.lstrip("/") / "backends"
    python_backend = backends / "python"
    shutil.copytree(wheel_root / "backends" / "python", python_backend, symlinks=True)
    stub = wheel_root / "python_backend_stubs" / "3.11" / "triton_python_backend_stub"
    shutil.copy(stub, python_backend / "triton_python_backend_stub")
    inside_root = "/" + str(wheel_root.relative_to(rootfs))
    wrapper = rootfs / "usr" / "local" / "bin" / "tritonserver"
    wrapper.write_text(
        _TRITON_WRAPPER.format(
            root=inside_root,
            site="/" + str(site.relative_to(rootfs)),
            backends=TRITON_ROOT + "/backends",
        )
    )
    wrapper.chmod(0o755)
    with log.open("a") as out:
        out.write(f"\ntriton: {inside_root} behind /usr/local/bin/tritonserver\n")


def _configure(layout: Path, tag: str, log: Path, *, cmd: tuple[str, ...], user: str) -> None:
    args = ["umoci", "config", "--image", f"{layout}:{tag}", f"--config.user={user}",
            "--config.workingdir=/tmp", *(f"--config.env={env}" for env in RUNTIME_ENV),
            *(f"--config.cmd={part}" for part in cmd)]  # fmt: skip
    _run(args, log)


def _add_operator(layout: Path, bundle: Path, log: Path) -> None:
    """The operator's image grows from `base` in a bundle of its own: no torch in it."""
    _run(["umoci", "unpack", "--image", f"{layout}:base", str(bundle)], log)
    _install_lepton(bundle / "rootfs", log, "")
    _run(["umoci", "repack", "--image", f"{layout}:operator", str(bundle)], log)
    _configure(layout, "operator", log, cmd=("lepton-operator",), user="1000:1000")
    shutil.rmtree(bundle)


def build_images(key: str) -> Path:
    """Build the layout for `key` (see the module docstring); returns its path."""
    _require_tools()
    target = layout_path(key)
    work = images_dir() / f"building-{key}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = images_dir() / f"build-{key}.log"
    log.write_text("")
    layout, bundle = work / "layout", work / "bundle"
    _run(["umoci", "init", "--layout", str(layout)], log)
    _run(["umoci", "new", "--image", f"{layout}:empty"], log)
    _run(["umoci", "unpack", "--image", f"{layout}:empty", str(bundle)], log)
    rootfs = bundle / "rootfs"
    _run(["mmdebstrap", "--variant=minbase", "--mode=root", "--quiet",
          f"--include={','.join(DEBIAN_PACKAGES)}", SUITE, str(rootfs), *MIRRORS], log)  # fmt: skip

    stages: tuple[tuple[str, Callable[[], None], tuple[str, ...], str], ...] = (
        ("base", lambda: _install_base(rootfs), ("sleep", "infinity"), "65535:65535"),
        ("runtime", lambda: _install_lepton(rootfs, log, "[runtime]"),
         ("python", "-m", "lepton_runtime", "--help"), "1000:1000"),
        ("triton", lambda: _install_triton(rootfs, log), ("tritonserver", "--help"), "1000:1000"),
    )  # fmt: skip
    for tag, install, cmd, user in stages:
        install()
        # Each repack is the diff since the last one (--refresh-bundle): the tags share layers.
        _run(["umoci", "repack", "--refresh-bundle", "--image", f"{layout}:{tag}", str(bundle)],
             log)  # fmt: skip
        _configure(layout, tag, log, cmd=cmd, user=user)
    _add_operator(layout, work / "bundle-operator", log)
    _run(["umoci", "rm", "--image", f"{layout}:empty"], log)
    _run(["umoci", "gc", "--layout", str(layout)], log)
    for stale in images_dir().glob("lepton-*"):
        shutil.rmtree(stale, ignore_errors=True)
    layout.rename(target)
    shutil.rmtree(work, ignore_errors=True)
    return target


def ensure() -> Path:
    """The layout for the current inputs, built if missing (one builder at a time)."""
    key = input_key()
    if layout_path(key).is_dir():
        return layout_path(key)
    images_dir().mkdir(parents=True, exist_ok=True)
    with (images_dir() / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if layout_path(key).is_dir():
            return layout_path(key)
        started = time.monotonic()
        print(f"[images] building lepton images {key} (minutes) ...", flush=True)
        path = build_images(key)
        print(f"[images] built in {time.monotonic() - started:.0f} s: {path}", flush=True)
        return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--list", action="store_true", help="print the cache, build nothing")
    args = parser.parse_args(argv)
    if args.list:
        key = input_key()
        state = "cached" if layout_path(key).is_dir() else "missing"
        print(f"lepton images {key}: {state} ({layout_path(key)})")
        return 0
    try:
        print(ensure())
    except ImageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
