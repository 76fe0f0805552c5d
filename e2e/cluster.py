"""A real local control plane with kwok-simulated GPU node pools, on loopback only.

    python -m e2e.cluster up      # build what is missing, start, print how to use it
    python -m e2e.cluster down    # stop everything and delete the cluster's state
    python -m e2e.cluster status

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the kwok controller and the Kubeflow
training operator run as local processes (binaries from ``e2e.build``); their logs, pid files,
certificates, etcd data and the admin kubeconfig live in ``e2e/.cluster/`` (gitignored).
`up` is safe to repeat: a healthy cluster is left as it is; the leftovers of a killed run are
stopped and wiped before a fresh start.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes import config as kube_config

from e2e import build, images, node, pki, processes, topology
from e2e.processes import ComponentError, Managed

# Engineers sharing one work tree can each run a cluster by pointing this elsewhere.
STATE_DIR = Path(os.environ.get("LEPTON_E2E_CLUSTER_DIR", Path(__file__).parent / ".cluster"))
STAGES_DIR = Path(__file__).parent / "stages"
KUBECONFIG = STATE_DIR / "kubeconfig"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
TRAINING_OPERATOR_NAMESPACE = "kubeflow"
# The training operator's cert rotator needs this Secret to exist before it starts.
TRAINING_OPERATOR_CERT_SECRET = "training-operator-webhook-cert"
# Workers' init container under the restricted Pod Security profile (the file says why).
INIT_CONTAINER_TEMPLATE = Path(__file__).parent / "training-operator-init-container.yaml"
TRAINING_OPERATOR_WEBHOOK_CONFIG = "validator.training-operator.kubeflow.org"
# Hard-coded in the training operator (pkg/cert/cert.go), hence outside e2e/.cluster.
TRAINING_OPERATOR_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")
PYTORCHJOB_CRD = "manifests/base/crds/kubeflow.org_pytorchjobs.yaml"
# Everything the e2e tests need, minus the node lifecycle controller: kwok does not post
# heartbeats, and that controller would mark every fake node NotReady and evict its pods.
CONTROLLERS = ",".join(
    f"{name}-controller"
    for name in (
        "garbage-collector",
        "namespace",
        # Binds the PersistentVolumeClaims that pvc:// URIs name; kube-scheduler will not
        # place a pod whose claim is unbound.
        "persistentvolume-binder",
        # Remove the protection finalizers once no pod uses a claim; without them a namespace
        # that held claims never finishes deleting.
        "persistentvolumeclaim-protection",
        "persistentvolume-protection",
        "serviceaccount",
        "serviceaccount-token",
        "root-ca-certificate-publisher",
        "clusterrole-aggregation",
        "deployment",
        "replicaset",
        "statefulset",
        "daemonset",
        "job",
        "cronjob",
        "ttl-after-finished",
        "endpoints",
        "endpointslice",
        "disruption",
        "horizontal-pod-autoscaler",
        "pod-garbage-collector",
        "resourcequota",
    )
)
PORT_NAMES = (
    "etcd-client",
    "etcd-peer",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "training-operator-metrics",
    "training-operator-health",
    "training-operator-webhook",
)


@dataclass(frozen=True)
class Endpoints:
    """Where a running cluster listens; saved to ``ports.json`` for `status` and tests."""

    ports: dict[str, int]

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"


def _log(message: str) -> None:
    print(f"[cluster] {message}", flush=True)


# --- waiting ------------------------------------------------------------------------------------


_wait = processes.wait_ready


def _https_get(url: str, keys: pki.Pki) -> str:
    context = ssl.create_default_context(cafile=str(keys.ca_cert))
    context.load_cert_chain(str(keys.admin_cert), str(keys.admin_key))
    with urllib.request.urlopen(url, context=context, timeout=2) as response:
        body: bytes = response.read()
        return body.decode()


def _https_ok(url: str, keys: pki.Pki) -> bool:
    # urlopen raises for any status but 2xx; the API server answers 200 when ready.
    _https_get(url, keys)
    return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.URLError:
        return False


# --- files ----------------------------------------------------------------------------------------


def _write_kubeconfig(path: Path, server: str, keys: pki.Pki) -> None:
    def b64(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lepton-e2e",
                "cluster": {"server": server, "certificate-authority-data": b64(keys.ca_cert)},
            }
        ],
        "users": [
            {
                "name": "lepton-admin",
                "user": {
                    "client-certificate-data": b64(keys.admin_cert),
                    "client-key-data": b64(keys.admin_key),
                },
            }
        ],
        "contexts": [
            {"name": "lepton-e2e", "context": {"cluster": "lepton-e2e", "user": "lepton-admin"}}
        ],
        "current-context": "lepton-e2e",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _render_stages(config: topology.ClusterConfig, target: Path) -> list[Path]:
    """Copy the kwok stages, putting the configured run time into the job-pod stages."""
    target.mkdir(parents=True, exist_ok=True)
    rendered = []
    for source in sorted(STAGES_DIR.glob("*.yaml")):
        stages = [doc for doc in yaml.safe_load_all(source.read_text()) if doc]
        for stage in stages:
            if stage["metadata"]["name"].startswith("pytorchjob-pod-"):
                milliseconds = int(config.job_pod_run_seconds * 1000)
                stage["spec"]["delay"]["durationMilliseconds"] = milliseconds
        out = target / source.name
        out.write_text(yaml.safe_dump_all(stages, sort_keys=False))
        rendered.append(out)
    return rendered


def _module_dir(module: str, version: str) -> Path:
    go = shutil.which("go")
    if go is None:
        raise ComponentError(f"no Go toolchain on PATH: {module} is needed for its CRD manifest")
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=build.cache_dir(),
    )
    if result.returncode != 0:
        raise ComponentError(f"training-operator: cannot fetch {module}@{version}: {result.stdout}")
    return Path(json.loads(result.stdout)["Dir"])


# --- bootstrap objects ------------------------------------------------------------------------


def api_client(kubeconfig: Path = KUBECONFIG) -> client.ApiClient:
    """A client for the cluster, not installed as the Kubernetes client's global default."""
    api: client.ApiClient = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    return api


def _bootstrap_objects(kubeconfig: Path, config: topology.ClusterConfig) -> None:
    """Objects the components need before they start: namespace, Secret, CRD, fake nodes."""
    api = api_client(kubeconfig)
    # Plain dicts as bodies; the client serialises them as they are.
    core: Any = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": TRAINING_OPERATOR_NAMESPACE}})
    core.create_namespaced_secret(
        TRAINING_OPERATOR_NAMESPACE, {"metadata": {"name": TRAINING_OPERATOR_CERT_SECRET}}
    )
    crd_path = _module_dir(
        "github.com/kubeflow/training-operator", build.TRAINING_OPERATOR_VERSION
    ) / (PYTORCHJOB_CRD)
    # Its cert rotator only reports ready once it has injected its CA into this configuration;
    # an empty one (no webhooks) satisfies it without putting a webhook in the API's path.
    admission: Any = client.AdmissionregistrationV1Api(api)
    admission.create_validating_webhook_configuration(
        {"metadata": {"name": TRAINING_OPERATOR_WEBHOOK_CONFIG}, "webhooks": []}
    )
    extensions: Any = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition(yaml.safe_load(crd_path.read_text()))
    for manifest in topology.node_manifests(config):
        core.create_node(manifest)
    api.close()  # type: ignore[no-untyped-call]


def _cluster_settled(kubeconfig: Path, config: topology.ClusterConfig) -> Callable[[], bool]:
    api = api_client(kubeconfig)
    # The client's models make every field Optional; read them as Any and check what matters.
    core: Any = client.CoreV1Api(api)
    extensions: Any = client.ApiextensionsV1Api(api)
    expected_nodes = sum(pool.nodes for pool in config.pools)

    def settled() -> bool:
        nodes = core.list_node().items
        ready = [
            node
            for node in nodes
            for cond in node.status.conditions or []
            if cond.type == "Ready" and cond.status == "True"
        ]
        if len(ready) < expected_nodes:
            return False
        # Pods need the namespace's default ServiceAccount: the controller manager makes it.
        core.read_namespaced_service_account("default", "default")
        crd = extensions.read_custom_resource_definition("pytorchjobs.kubeflow.org")
        conditions = crd.status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    return settled


# --- the components -----------------------------------------------------------------------------


def _mount_webhook_certs(keys: pki.Pki) -> None:
    """Put serving certs where the training operator's webhook server and cert rotator look.

    In a pod the kubelet mounts its cert Secret there; out of cluster nobody does, and the
    rotator would wait for the files (and keep the operator's controllers from starting) forever.
    Nothing calls the webhook, so any valid pair will do: we lend it the API server's.
    """
    TRAINING_OPERATOR_CERT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(keys.serving_cert, TRAINING_OPERATOR_CERT_DIR / "tls.crt")
    shutil.copyfile(keys.serving_key, TRAINING_OPERATOR_CERT_DIR / "tls.key")


def _bin(name: str) -> str:
    return str(build.binary(name))


def _start_all(config: topology.ClusterConfig) -> Endpoints:
    state = STATE_DIR
    ports = {name: processes.free_port() for name in PORT_NAMES}
    keys = pki.create(state / "pki")
    kubeconfig = KUBECONFIG
    started: list[Managed] = []

    etcd = processes.start(state, "etcd", [
        _bin("etcd"),
        "--name=lepton-e2e",
        f"--data-dir={state / 'etcd-data'}",
        f"--listen-client-urls=http://127.0.0.1:{ports['etcd-client']}",
        f"--advertise-client-urls=http://127.0.0.1:{ports['etcd-client']}",
        f"--listen-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
        f"--initial-cluster=lepton-e2e=http://127.0.0.1:{ports['etcd-peer']}",
        # A test cluster: skip fsync so a burst of writes is not throttled by the disk.
        "--unsafe-no-fsync",
        "--quota-backend-bytes=2147483648",
        "--log-level=warn",
    ])  # fmt: skip
    started.append(etcd)
    _wait("etcd /health", lambda: _http_ok(f"http://127.0.0.1:{ports['etcd-client']}/health"),
          started, etcd)  # fmt: skip

    apiserver = processes.start(state, "kube-apiserver", [
        _bin("kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{ports['etcd-client']}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports['kube-apiserver']}",
        f"--cert-dir={state / 'pki'}",
        f"--tls-cert-file={keys.serving_cert}",
        f"--tls-private-key-file={keys.serving_key}",
        f"--client-ca-file={keys.ca_cert}",
        # Without a request-header CA the controller manager and scheduler log an error on
        # every resync of their delegated authentication; no front proxy uses it.
        f"--requestheader-client-ca-file={keys.ca_cert}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--service-account-key-file={keys.service_account_pub}",
        f"--service-account-signing-key-file={keys.service_account_key}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # Node: what a real kubelet (e2e/node.py) may read is decided per node, as in production.
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        # The API server's identity toward kubelets (logs, exec, port-forward).
        f"--kubelet-client-certificate={keys.admin_cert}",
        f"--kubelet-client-key={keys.admin_key}",
        "--kubelet-preferred-address-types=InternalIP",
        "--allow-privileged=true",
        # This plugin taints new nodes not-ready until the node lifecycle controller, which we
        # do not run (see CONTROLLERS), lifts the taint; kwok's nodes are Ready from the start.
        "--disable-admission-plugins=TaintNodesByCondition",
        # 127.0.0.1 may not be published as the `kubernetes` Service's endpoint.
        "--endpoint-reconciler-type=none",
        "--enable-priority-and-fairness=false",
        "--profiling=false",
        "--v=1",
    ])  # fmt: skip
    started.append(apiserver)
    server = f"https://127.0.0.1:{ports['kube-apiserver']}"
    _wait("/readyz", lambda: _https_ok(f"{server}/readyz", keys), started, apiserver)
    _write_kubeconfig(kubeconfig, server, keys)
    _bootstrap_objects(kubeconfig, config)
    # The controller manager's garbage collector watches the kinds discovery lists when it
    # starts and rediscovers only every 30 s: start it after PyTorchJobs are listed, or children
    # of a PyTorchJob deleted in the first half minute wait for that rediscovery.
    _wait(
        "PyTorchJobs in API discovery",
        lambda: '"pytorchjobs"' in _https_get(f"{server}/apis/kubeflow.org/v1", keys),
        started,
        apiserver,
    )

    delegation = [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
    ]
    started.append(processes.start(state, "kube-controller-manager", [
        _bin("kube-controller-manager"),
        *delegation,
        f"--secure-port={ports['kube-controller-manager']}",
        f"--controllers={CONTROLLERS}",
        f"--service-account-private-key-file={keys.service_account_key}",
        f"--root-ca-file={keys.ca_cert}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # Deleted owners' children go quickly: the e2e tests wait on garbage collection.
        "--concurrent-gc-syncs=5",
    ]))  # fmt: skip
    started.append(processes.start(state, "kube-scheduler", [
        _bin("kube-scheduler"),
        *delegation,
        f"--secure-port={ports['kube-scheduler']}",
    ]))  # fmt: skip
    stages = _render_stages(config, state / "stages")
    started.append(processes.start(state, "kwok", [
        _bin("kwok"),
        f"--kubeconfig={kubeconfig}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector="
        f"{topology.KWOK_ANNOTATION[0]}={topology.KWOK_ANNOTATION[1]}",
        f"--cidr={POD_CIDR}",
        "--node-ip=10.10.0.1",
        *(f"--config={stage}" for stage in stages),
    ]))  # fmt: skip
    _mount_webhook_certs(keys)
    operator = processes.start(state, "training-operator", [
        _bin("training-operator"),
        f"--kubeconfig={kubeconfig}",
        "--enable-scheme=pytorchjob",
        "--leader-elect=false",
        f"--metrics-bind-address=127.0.0.1:{ports['training-operator-metrics']}",
        f"--health-probe-bind-address=127.0.0.1:{ports['training-operator-health']}",
        f"--webhook-server-port={ports['training-operator-webhook']}",
        f"--pytorch-init-container-template-file={INIT_CONTAINER_TEMPLATE}",
        # An image the real node has (kwok never pulls one); its nslookup waits for the master.
        f"--pytorch-init-container-image={images.IMAGE_NAMES['base']}",
    ])  # fmt: skip
    started.append(operator)

    health = f"http://127.0.0.1:{ports['training-operator-health']}/readyz"
    _wait("its /readyz (webhook certs)", lambda: _http_ok(health), started, operator)
    _wait("fake nodes Ready, default ServiceAccount, PyTorchJob CRD",
          _cluster_settled(kubeconfig, config), started, started[2])  # fmt: skip
    endpoints = Endpoints(ports)
    (state / "ports.json").write_text(json.dumps(ports, indent=2) + "\n")
    return endpoints


def running() -> Endpoints | None:
    """The live cluster's endpoints, or None when any component is down or it never started."""
    ports_file = STATE_DIR / "ports.json"
    procs = processes.recorded(STATE_DIR)
    if not ports_file.exists() or not KUBECONFIG.exists() or not procs:
        return None
    if not all(processes.is_alive(proc) for proc in procs):
        return None
    endpoints = Endpoints(json.loads(ports_file.read_text()))
    try:
        if not _https_ok(f"{endpoints.server}/readyz", pki.Pki(STATE_DIR / "pki")):
            return None
    except (OSError, ssl.SSLError):
        return None
    return endpoints


def restart(component: str, downtime_seconds: float = 0.0) -> Managed:
    """Stop one component of the running cluster and start it again (same flags, ports, data),
    then wait until it serves, and the API server with it: clients see it go and come back.

    For fault tests on a throwaway cluster (see e2e/test_apiserver_faults.py), never on the
    session's, which every other test shares.
    """
    endpoints = running()
    if endpoints is None:
        raise ComponentError(f"no running cluster in {STATE_DIR}: nothing to restart")
    restarted = processes.restart(STATE_DIR, component, downtime_seconds)
    keys = pki.Pki(STATE_DIR / "pki")
    etcd_health = f"http://127.0.0.1:{endpoints.ports['etcd-client']}/health"
    if component == "etcd":
        _wait("etcd /health", lambda: _http_ok(etcd_health), [restarted], restarted)
    # Every component depends on the API server; back means /readyz (etcd reachable) again.
    apiserver = next(p for p in processes.recorded(STATE_DIR) if p.name == "kube-apiserver")
    _wait("/readyz", lambda: _https_ok(f"{endpoints.server}/readyz", keys),
          [restarted, apiserver], apiserver)  # fmt: skip
    return restarted


def _node_ready(kubeconfig: Path) -> Callable[[], bool]:
    core: Any = client.CoreV1Api(api_client(kubeconfig))

    def ready() -> bool:
        conditions = core.read_node(node.NODE_NAME).status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    return ready


def start_real_node() -> None:
    """Join the real node (kubelet, containerd, CNI, kube-proxy, CoreDNS) to the running cluster.

    Builds what it needs first: its binaries, and the images (minutes when their inputs changed).
    """
    endpoints = running()
    if endpoints is None:
        raise ComponentError(f"no running cluster in {STATE_DIR}: start it before its real node")
    if node_running():
        return
    build.ensure(build.REAL_NODE_COMPONENTS, quiet=True)
    started = time.monotonic()
    try:
        node.start(STATE_DIR, endpoints.server, KUBECONFIG, pki.Pki(STATE_DIR / "pki"),
                   _node_ready(KUBECONFIG))  # fmt: skip
    except BaseException:
        node.stop(STATE_DIR)
        raise
    _log(f"real node {node.NODE_NAME} Ready in {time.monotonic() - started:.1f} s")


def node_running() -> bool:
    procs = processes.recorded(node.Paths(STATE_DIR).root)
    return bool(procs) and all(processes.is_alive(proc) for proc in procs)


def stop_real_node() -> None:
    """Stop the real node, remove its Node object and everything it left on the host."""
    stopped = node.stop(STATE_DIR)
    if running() is not None:
        core: Any = client.CoreV1Api(api_client(KUBECONFIG))
        with contextlib.suppress(client.ApiException):
            core.delete_node(node.NODE_NAME)
    if stopped:
        _log(f"stopped the real node: {', '.join(stopped)}")


def _usage(endpoints: Endpoints) -> str:
    real = (
        f"  real node {node.NODE_NAME} (pool {node.POOL}): its pods run for real\n"
        if node_running()
        else ""
    )
    return (
        f"control plane up at {endpoints.server} (state and logs in {STATE_DIR})\n"
        f"{real}"
        f"  export KUBECONFIG={KUBECONFIG}\n"
        "  kubectl get nodes -L lepton.ai/node-pool,nvidia.com/gpu.product\n"
        "  make cluster-down   # stop it"
    )


def up(
    config_path: Path = topology.DEFAULT_CONFIG,
    *,
    build_missing: bool = True,
    real_node: bool = False,
) -> Endpoints:
    """Start the cluster (or find it running); nothing is left running if this raises.

    `real_node` joins the real node too (see e2e/node.py); without it every node is kwok's.
    """
    existing = running()
    if existing is not None:
        _log("already running; leaving it as it is")
        if real_node:
            start_real_node()
        return existing
    config = topology.load(config_path)
    if processes.recorded(STATE_DIR) or (STATE_DIR / "etcd-data").exists():
        _log("found the leftovers of an earlier run: stopping them and starting fresh")
    down(quiet=True)
    if build_missing:
        build.ensure(build.CLUSTER_COMPONENTS, quiet=True)
    for name in build.CLUSTER_COMPONENTS:
        if not build.binary(name).exists():
            raise ComponentError(
                f"{name}: {build.binary(name)} is missing; run `make cluster-bins`"
            )
    started = time.monotonic()
    try:
        endpoints = _start_all(config)
    except BaseException:
        down(quiet=True, keep_logs=True)
        raise
    _log(f"started in {time.monotonic() - started:.1f} s")
    if real_node:
        try:
            start_real_node()
        except BaseException:
            down(quiet=True, keep_logs=True)
            raise
    return endpoints


def down(*, quiet: bool = False, keep_logs: bool = False) -> None:
    """Stop every component we started and delete the cluster's state (logs kept on request)."""
    # The node first: its kubelet must not outlive the API server it reports to.
    stopped = node.stop(STATE_DIR)
    stopped += processes.stop_all(STATE_DIR)
    if not quiet:
        _log(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    for name in ("etcd-data", "pki", "stages", "kubeconfig", "ports.json"):
        path = STATE_DIR / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    if not keep_logs and (STATE_DIR / "logs").is_dir():
        # Logs of a clean shutdown are only noise; a failed start keeps them for the reader.
        shutil.rmtree(STATE_DIR / "logs")


def memory_rss_mib() -> dict[str, float]:
    """Resident memory of each running component, from /proc (VmRSS)."""
    usage = {}
    for proc in [*processes.recorded(STATE_DIR), *processes.recorded(node.Paths(STATE_DIR).root)]:
        if not processes.is_alive(proc):
            continue
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                usage[proc.name] = int(line.split()[1]) / 1024
    return usage


def _status() -> int:
    endpoints = running()
    if endpoints is None:
        print("not running")
        return 1
    print(_usage(endpoints))
    rss = memory_rss_mib()
    for name, mib in rss.items():
        print(f"  {name:24} {mib:7.0f} MiB RSS")
    print(f"  {'total':24} {sum(rss.values()):7.0f} MiB RSS")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="local Kubernetes control plane for e2e tests")
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--config", type=Path, default=topology.DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(_usage(up(args.config, real_node=node.enabled())))
        elif args.command == "down":
            down()
        else:
            return _status()
    except (ComponentError, build.BuildError, images.ImageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
