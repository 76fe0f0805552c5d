"""Kueue, built from its Go module (e2e/build.py), run out of cluster against the e2e cluster.

Its CRDs come from the same module (config/components/crd/bases), applied server-side. Kueue runs
with internal certificate management off and no webhook configuration in the cluster: the API
server never calls it, and Lepton creates queued PyTorchJobs suspended itself (what Kueue's
webhook would otherwise ensure). Its only integration is `kubeflow.org/pytorchjob`.

With certificate management off, Kueue v0.17 reads its metrics certificate from the fixed path
/etc/kueue/metrics/certs and exits without one. Rather than writing to the machine's /etc, Kueue
runs in a mount namespace of its own (`unshare -m`) where /etc is an overlay: the certificate is
written into the overlay's upper layer, which goes with the process. That needs root, as the real
node does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from e2e import build
from e2e.processes import free_port, log_tail, terminate
from e2e.waiting import wait_until

GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
INTEGRATION = "kubeflow.org/pytorchjob"
METRICS_CERTS = "/etc/kueue/metrics/certs"


def missing_prerequisites() -> list[str]:
    """What this machine lacks to run Kueue here, each with its fix; empty when it can."""
    problems = []
    if os.geteuid() != 0:
        problems.append("Kueue runs in a mount namespace of its own here: that needs root")
    if shutil.which("unshare") is None:
        problems.append("`unshare` (util-linux) is missing")
    if not build.binary("kueue").exists():
        problems.append("no Kueue binary: `make cluster-bins` builds it")
    return problems


def crd_dir() -> Path:
    """Kueue's CRDs, from the module the binary was built from (in Go's module cache)."""
    modcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    path = Path(modcache) / f"sigs.k8s.io/kueue@{build.KUEUE_VERSION}/config/components/crd/bases"
    if not path.is_dir():
        subprocess.run(["go", "mod", "download", f"sigs.k8s.io/kueue@{build.KUEUE_VERSION}"],
                       capture_output=True, check=True)  # fmt: skip
    return path


def configuration(root: Path, ports: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports['health']}"},
        "metrics": {"bindAddress": f"127.0.0.1:{ports['metrics']}"},
        "webhook": {"host": "127.0.0.1", "port": ports["webhook"], "certDir": str(root / "certs")},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": [INTEGRATION]},
        # The on-demand visibility API is an aggregated API server: nothing here needs it.
        "featureGates": {"VisibilityOnDemand": False},
    }


def _self_signed(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt")],
        capture_output=True, check=True,
    )  # fmt: skip


class KueueProcess:
    """Kueue against `kubeconfig`; a context manager. Its state lives in a temporary folder."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.ports = {name: free_port() for name in ("health", "metrics", "webhook")}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def __enter__(self) -> KueueProcess:
        self._tmp = tempfile.TemporaryDirectory(prefix="lepton-kueue-")
        root = Path(self._tmp.name)
        _self_signed(root / "certs")
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump(configuration(root, self.ports)))
        for layer in ("upper", "work"):
            (root / "etc" / layer).mkdir(parents=True)
        script = " && ".join([
            "mount --make-rprivate /",
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={root}/etc/upper,"
            f"workdir={root}/etc/work /etc",
            f"mkdir -p {METRICS_CERTS}",
            f"cp {root}/certs/tls.crt {root}/certs/tls.key {METRICS_CERTS}/",
            'exec "$@"',
        ])  # fmt: skip
        args = ["unshare", "--mount", "sh", "-ec", script, "kueue",
                str(build.binary("kueue")), f"--config={config}", "--zap-log-level=2"]  # fmt: skip
        self.log_path = root / "kueue.log"
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            )
        try:
            wait_until("Kueue ready", self._ready, timeout=120, describe_state=self.log_tail)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"kueue exited ({self._process.returncode}):\n{self.log_tail()}")
        try:
            url = f"http://127.0.0.1:{self.ports['health']}/readyz"
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def log_tail(self) -> str:
        return log_tail(self.log_path, 30) if self.log_path else "(not started)"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            terminate(self._process)
        if self._tmp is not None:
            self._tmp.cleanup()


def queues(namespace: str, pool: str, gpu_quota: int) -> list[dict[str, Any]]:
    """A ResourceFlavor for one kwok pool, a ClusterQueue with `gpu_quota` GPUs of it (CPU and
    memory plenty) and a LocalQueue `team` in `namespace` that feeds it."""
    flavor = f"lepton-{pool}"
    cluster_queue = f"lepton-{namespace}"
    return [
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceFlavor",
         "metadata": {"name": flavor},
         "spec": {"nodeLabels": {"lepton.ai/node-pool": pool}}},
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterQueue",
         "metadata": {"name": cluster_queue},
         "spec": {"namespaceSelector": {},
                  "resourceGroups": [{
                      "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                      "flavors": [{"name": flavor, "resources": [
                          {"name": "cpu", "nominalQuota": "64"},
                          {"name": "memory", "nominalQuota": "512Gi"},
                          {"name": "nvidia.com/gpu", "nominalQuota": gpu_quota},
                      ]}],
                  }]}},
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LocalQueue",
         "metadata": {"name": "team", "namespace": namespace},
         "spec": {"clusterQueue": cluster_queue}},
    ]  # fmt: skip
