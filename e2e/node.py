"""A real node beside the kwok pools: kubelet, containerd, runc, CNI, kube-proxy and CoreDNS.

Pods scheduled to it run for real: its pool (``lepton.ai/node-pool=local``) is where the
pipeline tests send the runtime's pods. It joins the local control plane (``e2e.cluster``):

- **containerd** (Debian's 1.6) with its own socket, state and image store under
  ``<cluster>/node``: each node starts from an empty store and imports the images ``e2e.images``
  built (about a minute), so nothing another containerd left in a store can break its pods.
- **kubelet** (v1.36, built like the control plane) with a node client certificate
  (``system:node:lepton-local``, the Node authorizer decides what it may read) and the cgroupfs
  driver on this machine's cgroup v1 (``failCgroupV1: false``: v1.36 refuses cgroup v1 unless told;
  the VM has no cgroup v2-only hierarchy to give it).
- **CNI**: a bridge (``lepton0``, 10.245.0.0/24) whose gateway address is the node's address,
  host-local IPAM. No masquerade and a FORWARD guard: pods reach each other and the node, nothing
  beyond this machine.
- **CoreDNS** on the node address, port 53, serving ``cluster.local`` from the API server and
  answering NXDOMAIN for every other name (nothing is forwarded off the machine). It is the
  kubelet's ``clusterDNS``: workers find their PyTorchJob master by its Service name.
- **kube-proxy** (iptables mode) for ClusterIP Services.

Everything needs root (mounts, cgroups, namespaces, iptables). ``stop()`` leaves no container,
mount, veth, network namespace, iptables rule, cgroup or process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e import build, images, pki, processes
from e2e.processes import ComponentError

NODE_NAME = "lepton-local"
POOL = "local"
BRIDGE = "lepton0"
NODE_IP = "10.245.0.1"
POD_SUBNET = "10.245.0.0/24"
CLUSTER_DOMAIN = "cluster.local"
# The FORWARD rules that keep pod traffic on the bridge, tagged so stop() finds exactly ours.
GUARD_COMMENT = "lepton-e2e-node-guard"
CNI_BIN_DIR = Path("/usr/lib/cni")
CGROUP_ROOT = Path("/sys/fs/cgroup")
ENABLE_VARIABLE = "LEPTON_E2E_REAL_NODE"


def enabled() -> bool:
    """The real node is on unless LEPTON_E2E_REAL_NODE=0 (a fast session without it)."""
    return os.environ.get(ENABLE_VARIABLE, "1") != "0"


@dataclass(frozen=True)
class Paths:
    """Where the node keeps its state: under the cluster's, wiped with it."""

    cluster_state: Path

    @property
    def root(self) -> Path:
        return self.cluster_state / "node"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"


def _legacy_containerd_root() -> Path:
    """Where earlier versions kept one store for every node (gigabytes, removed at start)."""
    return build.cache_dir() / "containerd"


def missing_prerequisites() -> list[str]:
    """What this machine lacks for a real node, each with its fix; empty when it can run."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the real node needs root (mounts, cgroups, network namespaces)")
    for tool in ("containerd", "ctr", "runc", "iptables", "ip", "mmdebstrap", "umoci"):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is missing: `make system-deps` installs the Debian packages")
    if not (CNI_BIN_DIR / "bridge").exists():
        problems.append(f"no CNI plugins in {CNI_BIN_DIR}: `make system-deps`")
    if null_device := null_device_problem():
        problems.append(null_device)
    return problems


def null_device_problem() -> str | None:
    """What is wrong with /dev/null, if anything: runc, the shims and every `> /dev/null` read
    or write it, and a regular file in its place (left by something that removed it) turns its
    readers' input into whatever was last written there."""
    try:
        mode = Path("/dev/null").stat().st_mode
    except OSError as error:
        return f"/dev/null is missing ({error}): `mknod -m 666 /dev/null c 1 3` restores it"
    if stat.S_ISCHR(mode):
        return None
    return (
        "/dev/null is not the null device (something removed it and a write made a file): "
        "`rm -f /dev/null && mknod -m 666 /dev/null c 1 3` restores it"
    )


def _sh(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise ComponentError(f"`{' '.join(args)}` failed: {result.stderr.strip()}")
    return result


# --- network ------------------------------------------------------------------------------------


def _guard_rules() -> list[list[str]]:
    tag = ["-m", "comment", "--comment", GUARD_COMMENT]
    return [
        ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, *tag, "-j", "ACCEPT"],
        ["FORWARD", "-i", BRIDGE, *tag, "-j", "DROP"],
        ["FORWARD", "-o", BRIDGE, *tag, "-j", "DROP"],
    ]


def _network_up(paths: Paths) -> None:
    if _sh(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
        _sh(["ip", "link", "add", BRIDGE, "type", "bridge"])
    _sh(["ip", "addr", "replace", f"{NODE_IP}/24", "dev", BRIDGE])
    _sh(["ip", "link", "set", BRIDGE, "up"])
    # Service traffic from a pod to a pod on the same bridge is routed by the node: forwarding on,
    # the previous value kept for stop(); the guard keeps it from reaching past the bridge.
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    saved = paths.root / "ip_forward.saved"
    if not saved.exists():
        saved.write_text(forward.read_text())
    # Each goes in at the top, so the last inserted comes first: insert them in reverse.
    for rule in reversed(_guard_rules()):
        if _sh(["iptables", "-C", *rule], check=False).returncode != 0:
            _sh(["iptables", "-I", rule[0], "1", *rule[1:]])
    forward.write_text("1\n")


def _remove_kube_chains() -> None:
    """The kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, ...), which it never removes
    and `kube-proxy --cleanup` leaves alone: every rule that jumps to a KUBE-* chain, then the
    chains themselves, in each table, for IPv4 and IPv6."""
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            listed = _sh([tool, "-t", table, "-S"], check=False).stdout.splitlines()
            for rule in listed:
                parts = rule.split()
                if parts[:1] == ["-A"] and "-j" in parts:
                    target = parts[parts.index("-j") + 1]
                    if target.startswith("KUBE-") or parts[1].startswith("KUBE-"):
                        _sh([tool, "-t", table, "-D", *parts[1:]], check=False)
            for rule in listed:
                parts = rule.split()
                if parts[:1] == ["-N"] and parts[1].startswith("KUBE-"):
                    _sh([tool, "-t", table, "-F", parts[1]], check=False)
                    _sh([tool, "-t", table, "-X", parts[1]], check=False)


def _network_down(paths: Paths) -> None:
    links = _sh(["ip", "-o", "link", "show", "master", BRIDGE], check=False).stdout
    for link in links.splitlines():
        name = link.split(":")[1].strip().split("@")[0]
        _sh(["ip", "link", "del", name], check=False)
    _sh(["ip", "link", "del", BRIDGE], check=False)
    for rule in _guard_rules():
        while _sh(["iptables", "-C", *rule], check=False).returncode == 0:
            _sh(["iptables", "-D", *rule], check=False)
    saved = paths.root / "ip_forward.saved"
    if saved.exists():
        Path("/proc/sys/net/ipv4/ip_forward").write_text(saved.read_text())
        saved.unlink()
    # Network namespaces the CNI plugin made for our sandboxes, once nothing runs in them.
    for line in _sh(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith("cni-") and not _sh(["ip", "netns", "pids", name], check=False).stdout:
            _sh(["ip", "netns", "delete", name], check=False)


def _cni_config(paths: Paths) -> Path:
    conf_dir = paths.root / "cni"
    conf_dir.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "1.0.0",
        "name": "lepton-e2e",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "rangeStart": "10.245.0.10"}]],
                    # Only the Service range goes through the node; no default route.
                    "routes": [{"dst": "10.96.0.0/16"}],
                    "dataDir": str(paths.root / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    path = conf_dir / "10-lepton.conflist"
    path.write_text(json.dumps(conflist, indent=2) + "\n")
    return conf_dir


# --- containerd and images ----------------------------------------------------------------------


def _containerd_config(paths: Paths) -> Path:
    conf_dir = _cni_config(paths)
    state = paths.root / "containerd"
    state.mkdir(parents=True, exist_ok=True)
    config = f"""version = 2
root = "{paths.containerd_root}"
state = "{state / "state"}"
[grpc]
  address = "{paths.containerd_socket}"
[ttrpc]
  address = "{paths.containerd_socket}.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{images.IMAGE_NAMES["base"]}"
  # This VM forbids lowering oom_score_adj; without this every sandbox fails in runc.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      # Stated, though they are the defaults: with options containerd hands them to each new
      # shim through a pipe; without, the shim parses whatever its stdin (/dev/null) yields as
      # protobuf, and sandboxes fail with "failed to start shim: proto: ... wiretype".
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{conf_dir}"
"""
    path = state / "config.toml"
    path.write_text(config)
    return path


def _ctr(paths: Paths, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _sh(["ctr", "--address", str(paths.containerd_socket), "-n", "k8s.io", *args],
               check=check)  # fmt: skip


def import_images(paths: Paths) -> None:
    """Put the current images into the node's (empty) store and give them their names."""
    layout = images.ensure()
    tar = subprocess.Popen(["tar", "-C", str(layout), "-cf", "-", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["ctr", "--address", str(paths.containerd_socket), "-n", "k8s.io", "images", "import",
         "--base-name", "docker.io/lepton/e2e", "-"],
        stdin=tar.stdout, capture_output=True, text=True, check=False,
    )  # fmt: skip
    tar.wait()
    if imported.returncode != 0:
        raise ComponentError(f"containerd refused the images in {layout}: {imported.stderr}")
    for tag, name in images.IMAGE_NAMES.items():
        _ctr(paths, "images", "tag", "--force", f"docker.io/lepton/e2e:{tag}", name)


# --- kubelet, kube-proxy, CoreDNS ---------------------------------------------------------------


def _node_kubeconfig(paths: Paths, server: str, keys: pki.Pki) -> Path:
    key, cert = paths.root / "kubelet-client.key", paths.root / "kubelet-client.crt"
    pki.client_cert(keys, key, cert, f"/O=system:nodes/CN=system:node:{NODE_NAME}")
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lepton-e2e",
                      "cluster": {"server": server, "certificate-authority": str(keys.ca_cert)}}],
        "users": [{"name": NODE_NAME,
                   "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "node", "context": {"cluster": "lepton-e2e", "user": NODE_NAME}}],
        "current-context": "node",
    }  # fmt: skip
    path = paths.root / "kubelet.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
    path.chmod(0o600)
    return path


def _kubelet_config(paths: Paths, keys: pki.Pki, ports: dict[str, int]) -> Path:
    resolv = paths.root / "resolv.conf"
    # Pods with dnsPolicy Default get this: no upstream resolver, nothing leaves the machine.
    resolv.write_text(f"nameserver {NODE_IP}\n")
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports["kubelet-healthz"],
        "cgroupDriver": "cgroupfs",
        # cgroup v1 is in maintenance from v1.35 and refused by default; this VM has no other.
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(keys.ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [NODE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(resolv),
        "staticPodPath": "",
        # A shared test machine: never evict for the disk or memory other work is using.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "maxPods": 40,
    }  # fmt: skip
    path = paths.root / "kubelet-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _corefile(paths: Paths, kubeconfig: Path) -> Path:
    corefile = f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 {{
    bind {NODE_IP}
    errors
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{
        kubeconfig {kubeconfig} lepton-e2e
        pods insecure
        fallthrough in-addr.arpa
    }}
    cache 5
}}
.:53 {{
    bind {NODE_IP}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
    path = paths.root / "Corefile"
    path.write_text(corefile)
    return path


def _kube_proxy_config(paths: Paths, kubeconfig: Path, ports: dict[str, int]) -> Path:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{ports['kube-proxy-healthz']}",
        "metricsBindAddress": f"127.0.0.1:{ports['kube-proxy-metrics']}",
        "clusterCIDR": POD_SUBNET,
        # Leave the host's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0},
        # Replies to Service traffic between pods on one bridge must come back through the node.
        "iptables": {"masqueradeAll": True},
    }
    path = paths.root / "kube-proxy-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start(cluster_state: Path, server: str, admin_kubeconfig: Path, keys: pki.Pki,
          node_ready: Any) -> None:  # fmt: skip
    """Start the node's processes and wait until the Node object is Ready."""
    problems = missing_prerequisites()
    if problems:
        raise ComponentError("the real node cannot start: " + "; ".join(problems))
    paths = Paths(cluster_state)
    paths.root.mkdir(parents=True, exist_ok=True)
    _remove_legacy_store()
    paths.containerd_root.mkdir(parents=True, exist_ok=True)
    names = ("kubelet", "kubelet-healthz", "kube-proxy-healthz", "kube-proxy-metrics")
    ports = {name: processes.free_port() for name in names}
    _network_up(paths)
    config = _containerd_config(paths)
    containerd = processes.start(paths.root, "containerd", ["containerd", "--config", str(config)])
    processes.wait_ready(
        "its socket", lambda: _ctr(paths, "version").returncode == 0, [containerd], containerd, 30
    )
    import_images(paths)
    started = [containerd]
    started.append(processes.start(paths.root, "coredns", [
        str(build.binary("coredns")), "-conf", str(_corefile(paths, admin_kubeconfig)),
    ]))  # fmt: skip
    started.append(processes.start(paths.root, "kube-proxy", [
        str(build.binary("kube-proxy")),
        f"--config={_kube_proxy_config(paths, admin_kubeconfig, ports)}",
    ]))  # fmt: skip
    kubelet = processes.start(paths.root, "kubelet", [
        str(build.binary("kubelet")),
        f"--config={_kubelet_config(paths, keys, ports)}",
        f"--kubeconfig={_node_kubeconfig(paths, server, keys)}",
        f"--root-dir={paths.kubelet_root}",
        f"--cert-dir={paths.root / 'kubelet-pki'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={NODE_IP}",
        f"--node-labels=lepton.ai/node-pool={POOL},lepton.ai/real-node=true",
        "--v=1",
    ])  # fmt: skip
    started.append(kubelet)
    processes.wait_ready(f"node {NODE_NAME} Ready", node_ready, started, kubelet, 120)
    (paths.root / "ports.json").write_text(json.dumps(ports, indent=2) + "\n")


def _containerd_error(line: str) -> bool:
    return "level=error" in line


def _kubelet_error(line: str) -> bool:
    return line.startswith("E")  # klog: E1203 08:00:00.000000 ...


def recent_errors(cluster_state: Path, lines: int = 6) -> str:
    """The last errors containerd and the kubelet logged: what a test shows when pods stall."""
    logs = Paths(cluster_state).root / "logs"
    report = []
    for name, is_error in (("containerd", _containerd_error), ("kubelet", _kubelet_error)):
        log = logs / f"{name}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        errors = [line[:400] for line in text.splitlines() if is_error(line)][-lines:]
        report.append(f"{name}: " + ("\n  ".join(errors) or "(no errors logged)"))
    if null_device := null_device_problem():
        report.append(null_device)
    return "\n".join(report)


def kill_container(cluster_state: Path, container_id: str) -> None:
    """SIGKILL one container's processes, as a crash or the OOM killer would."""
    _ctr(Paths(cluster_state), "tasks", "kill", "--signal", "SIGKILL", container_id)


# --- stop ---------------------------------------------------------------------------------------


def _mounts_under(root: Path) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(str(root) + "/") or point == str(root):
            points.append(point)
    return points


def _unmount_all(root: Path) -> None:
    for point in sorted(_mounts_under(root), key=len, reverse=True):
        _sh(["umount", "-l", point], check=False)


def _remove_legacy_store() -> None:
    """Free the store earlier versions shared between checkouts, unless a container uses it."""
    root = _legacy_containerd_root()
    if root.exists() and not _mounts_under(root):
        shutil.rmtree(root, ignore_errors=True)


def _kill_cgroup_tree(name: str) -> None:
    """SIGKILL every process in the kubelet's cgroups (containers whose shim is gone)."""
    tree = CGROUP_ROOT / "pids" / name
    if not tree.is_dir():
        return
    for procs in tree.rglob("cgroup.procs"):
        for pid in procs.read_text().split():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), 9)


def _remove_cgroups(name: str) -> None:
    for controller in CGROUP_ROOT.iterdir():
        tree = controller / name
        if not tree.is_dir() or tree.is_symlink():
            continue
        # Deepest first: a cgroup directory goes only once its children have.
        for directory in sorted((p for p in tree.rglob("*") if p.is_dir()),
                                key=lambda p: len(p.parts), reverse=True):  # fmt: skip
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            tree.rmdir()


def stop(cluster_state: Path) -> list[str]:
    """Stop the node and remove everything it made on the host; returns what was running."""
    paths = Paths(cluster_state)
    if not paths.root.exists():
        return []
    stopped: list[str] = []
    # kubelet first (it would restart what we stop), containerd last (it tears sandboxes down).
    for name in ("kubelet", "kube-proxy", "coredns"):
        stopped += _stop_named(paths.root, name)
    if paths.containerd_socket.exists() and _ctr(paths, "version", check=False).returncode == 0:
        _remove_containers(paths)
    stopped += _stop_named(paths.root, "containerd")
    _kill_shims(paths)
    _kill_cgroup_tree("kubepods")
    if build.binary("kube-proxy").exists():  # removes the KUBE-* chains it made
        _sh([str(build.binary("kube-proxy")), "--cleanup"], check=False)
    _unmount_all(paths.root)
    _network_down(paths)
    _remove_kube_chains()
    _remove_cgroups("kubepods")
    shutil.rmtree(paths.root, ignore_errors=True)
    return stopped


def _stop_named(root: Path, name: str) -> list[str]:
    for proc in processes.recorded(root):
        if proc.name == name:
            running = processes.is_alive(proc)
            processes.stop_one(root, proc)
            return [name] if running else []
    return []


def _remove_containers(paths: Paths) -> None:
    for task in _ctr(paths, "tasks", "ls", "-q", check=False).stdout.split():
        _ctr(paths, "tasks", "kill", "--signal", "SIGKILL", task, check=False)
    deadline = time.monotonic() + 10
    while _ctr(paths, "tasks", "ls", "-q", check=False).stdout.split():
        for task in _ctr(paths, "tasks", "ls", "-q", check=False).stdout.split():
            _ctr(paths, "tasks", "delete", "--force", task, check=False)
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for container in _ctr(paths, "containers", "ls", "-q", check=False).stdout.split():
        _ctr(paths, "containers", "delete", container, check=False)


def _kill_shims(paths: Paths) -> None:
    """Shims outlive containerd by design; ours name our socket in their command line."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "containerd-shim" in cmdline and str(paths.containerd_socket) in cmdline:
                os.kill(int(entry.name), 9)
