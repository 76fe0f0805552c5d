"""Build the control-plane binaries from Go modules into the Lepton cache, once per version.

Release downloads are unreachable on our machines, so every component is compiled from its
module on the Go proxy. Each build happens in a scratch module under ``$LEPTON_CACHE/build``
(never in the work tree) and lands in ``$LEPTON_CACHE/bin/<name>-<version>``; a JSON stamp next
to the binary records how long it took. Binaries that exist are not rebuilt.

    python -m e2e.build            # build what is missing, print every component
    python -m e2e.build --list     # print what is there, build nothing
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
# v1.9.3 pins sigs.k8s.io/scheduler-plugins v0.28.9, an exact version the proxy serves.
TRAINING_OPERATOR_VERSION = "v1.9.3"
HELM_VERSION = "v3.19.5"
COREDNS_VERSION = "v1.14.7"
# The newest Kueue the Go proxy serves here (v0.18 is not there yet).
KUEUE_VERSION = "v0.17.0"

_K8S_MINOR = KUBERNETES_VERSION.split(".")[1]


def _kubernetes_ldflags() -> tuple[str, ...]:
    # Without these, --version prints v0.0.0-master and version-sensitive clients misbehave.
    values = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": "1",
        "gitMinor": _K8S_MINOR,
        "gitTreeState": "clean",
    }
    return tuple(
        f"-X {package}.{key}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for key, value in values.items()
    )


@dataclass(frozen=True)
class Component:
    """One binary, the module it comes from and how to stamp its version."""

    name: str
    module: str
    version: str
    package: str
    ldflags: tuple[str, ...] = ()
    # Modules whose go.mod points k8s.io/* at ./staging need those replaced with real versions.
    replace_staging: bool = False
    tags: tuple[str, ...] = field(default=())

    @property
    def binary(self) -> Path:
        return bin_dir() / f"{self.name}-{self.version}"

    @property
    def stamp(self) -> Path:
        return bin_dir() / f"{self.name}-{self.version}.json"


COMPONENTS: tuple[Component, ...] = (
    Component("etcd", "go.etcd.io/etcd/server/v3", ETCD_VERSION, "go.etcd.io/etcd/server/v3"),
    Component(
        "kwok",
        "sigs.k8s.io/kwok",
        KWOK_VERSION,
        "sigs.k8s.io/kwok/cmd/kwok",
        (f"-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION}",),
    ),
    *(
        Component(
            name,
            "k8s.io/kubernetes",
            KUBERNETES_VERSION,
            f"k8s.io/kubernetes/cmd/{name}",
            _kubernetes_ldflags(),
            replace_staging=True,
        )
        for name in (
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            # The real node (e2e/node.py): pods that run, and Services that route to them.
            "kubelet",
            "kube-proxy",
        )
    ),
    Component(
        "training-operator",
        "github.com/kubeflow/training-operator",
        TRAINING_OPERATOR_VERSION,
        "github.com/kubeflow/training-operator/cmd/training-operator.v1",
    ),
    Component(
        "kwokctl",
        "sigs.k8s.io/kwok",
        KWOK_VERSION,
        "sigs.k8s.io/kwok/cmd/kwokctl",
        (f"-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION}",),
    ),
    Component(
        "helm",
        "helm.sh/helm/v3",
        HELM_VERSION,
        "helm.sh/helm/v3/cmd/helm",
        (f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",),
    ),
    # Cluster DNS for the real node's pods: PyTorchJob workers find their master by name.
    Component(
        "coredns",
        "github.com/coredns/coredns",
        COREDNS_VERSION,
        "github.com/coredns/coredns",
        (f"-X github.com/coredns/coredns/coremain.GitCommit={COREDNS_VERSION}",),
    ),
    # Admits jobs that name a LocalQueue (scheduling.queueName): e2e/kueue.py runs it.
    Component(
        "kueue",
        "sigs.k8s.io/kueue",
        KUEUE_VERSION,
        "sigs.k8s.io/kueue/cmd/kueue",
        (f"-X sigs.k8s.io/kueue/pkg/version.GitVersion={KUEUE_VERSION}",),
    ),
)

# What `cluster-up` needs; helm and kwokctl are built for demos and later charts tests.
# The real node's binaries (REAL_NODE_COMPONENTS) are added when the node is on.
CLUSTER_COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "training-operator",
)
REAL_NODE_COMPONENTS = ("kubelet", "kube-proxy", "coredns")


class BuildError(RuntimeError):
    """A component could not be built; the message names it."""


def cache_dir() -> Path:
    return Path(os.environ.get("LEPTON_CACHE", Path.home() / ".cache" / "lepton"))


def bin_dir() -> Path:
    return cache_dir() / "bin"


def component(name: str) -> Component:
    for candidate in COMPONENTS:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def binary(name: str) -> Path:
    """Path of a built component's binary (it may not exist yet)."""
    return component(name).binary


def _go(comp: Component) -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            f"{comp.name} {comp.version}: no Go toolchain on PATH (Go >= 1.24 builds it from "
            f"{comp.module})"
        )
    return go


def _run(comp: Component, args: list[str], cwd: Path, log: Path) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(args)}\n")
        out.flush()
        result = subprocess.run(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise BuildError(
            f"{comp.name} {comp.version}: `{' '.join(args[:3])} ...` failed "
            f"(module {comp.module}); full log: {log}\n{tail}"
        )


def _staging_replaces(go: str, comp: Component, scratch: Path, log: Path) -> list[str]:
    """Turn k8s.io/kubernetes' `k8s.io/x => ./staging/...` into `k8s.io/x => k8s.io/x v0.N.P`."""
    _run(comp, [go, "mod", "download", f"{comp.module}@{comp.version}"], scratch, log)
    info = subprocess.run(
        [go, "mod", "download", "-json", f"{comp.module}@{comp.version}"],
        capture_output=True,
        text=True,
        check=True,
    )
    gomod = json.loads(info.stdout)["GoMod"]
    edit = subprocess.run(
        [go, "mod", "edit", "-json", gomod], capture_output=True, text=True, check=True
    )
    staging_version = "v0." + comp.version.removeprefix("v1.")
    replaces = []
    for replace in json.loads(edit.stdout).get("Replace") or []:
        if replace["New"]["Path"].startswith("./staging/"):
            old = replace["Old"]["Path"]
            replaces.append(f"{old} => {old} {staging_version}")
    return replaces


def _prepare_scratch(go: str, comp: Component, log: Path) -> Path:
    slug = comp.module.replace("/", "_")
    scratch = cache_dir() / "build" / f"{slug}-{comp.version}"
    # The tidy stamp records the packages it was tidied for: a component added later from the
    # same module (the kubelet beside the apiserver) needs its imports in go.sum too.
    packages = sorted({comp.package} | {c.package for c in COMPONENTS if c.module == comp.module})
    ready = scratch / ".tidy"
    if ready.exists() and ready.read_text().split() == packages:
        return scratch
    scratch.mkdir(parents=True, exist_ok=True)
    replaces = _staging_replaces(go, comp, scratch, log) if comp.replace_staging else []
    lines = [f"module lepton.local/build/{slug}", "", "go 1.24", ""]
    lines.append(f"require {comp.module} {comp.version}")
    lines += [f"replace {r}" for r in replaces]
    (scratch / "go.mod").write_text("\n".join(lines) + "\n")
    # A tools file makes `go mod tidy` record every package of the module we build from it.
    imports = "\n".join(f'\t_ "{p}"' for p in packages)
    (scratch / "tools.go").write_text(
        f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"
    )
    _run(comp, [go, "mod", "tidy"], scratch, log)
    ready.write_text("\n".join(packages) + "\n")
    return scratch


def build(comp: Component) -> float:
    """Compile one component into the cache; returns the seconds it took."""
    go = _go(comp)
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    bin_dir().mkdir(parents=True, exist_ok=True)
    log = logs / f"build-{comp.name}-{comp.version}.log"
    log.write_text("")
    started = time.monotonic()
    scratch = _prepare_scratch(go, comp, log)
    partial = comp.binary.with_name(f"{comp.binary.name}.partial-{os.getpid()}")
    ldflags = " ".join(("-s", "-w", *comp.ldflags))
    args = [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), comp.package]
    _run(comp, args, scratch, log)
    # Rename last, so an interrupted build never leaves a binary that looks complete.
    partial.replace(comp.binary)
    seconds = time.monotonic() - started
    stamp = {"seconds": round(seconds, 1), "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
    comp.stamp.write_text(json.dumps(stamp) + "\n")
    return seconds


def _describe(comp: Component) -> str:
    if not comp.binary.exists():
        return f"{comp.name:24} {comp.version:9} missing"
    seconds = "?"
    if comp.stamp.exists():
        seconds = str(json.loads(comp.stamp.read_text())["seconds"])
    size_mb = comp.binary.stat().st_size / 2**20
    return f"{comp.name:24} {comp.version:9} cached  (built in {seconds} s, {size_mb:.0f} MiB)"


def ensure(names: tuple[str, ...] | None = None, *, quiet: bool = False) -> None:
    """Build every named component (default: all) that is not in the cache yet."""
    wanted = [c for c in COMPONENTS if names is None or c.name in names]
    if all(comp.binary.exists() for comp in wanted):
        if not quiet:
            for comp in wanted:
                print(_describe(comp), flush=True)
        return
    cache_dir().mkdir(parents=True, exist_ok=True)
    # One builder per machine: parallel `make test` runs would otherwise compile the same
    # binaries at once on a 2-core machine. The second waits, then finds them cached.
    lock_path = cache_dir() / "build.lock"
    with lock_path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another build holds {lock_path}; waiting for it", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        _build_missing(wanted, quiet=quiet)


def _build_missing(wanted: list[Component], *, quiet: bool) -> None:
    for comp in wanted:
        if comp.binary.exists():
            if not quiet:
                print(_describe(comp), flush=True)
            continue
        print(f"{comp.name:24} {comp.version:9} building from {comp.module} ...", flush=True)
        seconds = build(comp)
        print(f"{comp.name:24} {comp.version:9} built in {seconds:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--list", action="store_true", help="print the cache, build nothing")
    parser.add_argument("components", nargs="*", help="names to build (default: all)")
    args = parser.parse_args(argv)
    names = tuple(args.components) or None
    if args.list:
        for comp in COMPONENTS:
            print(_describe(comp))
        return 0
    try:
        ensure(names)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
