"""A throwaway PKI for the local control plane, made with the `openssl` CLI.

EC P-256 keys: they are generated in milliseconds, so every fresh `cluster-up` gets new ones and
no key outlives its cluster. Everything lands under ``e2e/.cluster/pki`` (gitignored).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# SANs a client may use to reach the API server: loopback, and the in-cluster service names.
_SERVING_SANS = (
    "IP:127.0.0.1",
    "IP:10.96.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Pki:
    """Paths of the files the components read."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.root / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.root / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.root / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.root / "admin.key"

    @property
    def service_account_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.root / "sa.pub"


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path), cwd=path.parent)  # fmt: skip
    path.chmod(0o600)


def _signed_cert(pki: Pki, key: Path, cert: Path, subject: str, extensions: list[str]) -> None:
    csr = cert.with_suffix(".csr")
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr), cwd=pki.root)
    ext_file = cert.with_suffix(".ext")
    ext_file.write_text("\n".join(extensions) + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key),
             "-CAcreateserial", "-days", "30", "-extfile", str(ext_file), "-out", str(cert),
             cwd=pki.root)  # fmt: skip
    csr.unlink()
    ext_file.unlink()


def client_cert(pki: Pki, key: Path, cert: Path, subject: str) -> None:
    """A client certificate signed by the cluster's CA (e.g. a kubelet's node identity)."""
    _new_key(key)
    _signed_cert(pki, key, cert, subject, [
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=clientAuth",
    ])  # fmt: skip


def create(root: Path) -> Pki:
    """Make a CA, the API server's serving cert, an admin client cert and the SA signing key."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the `openssl` CLI is needed to make the control plane's certificates")
    root.mkdir(parents=True, exist_ok=True)
    pki = Pki(root)
    _new_key(pki.ca_key)
    _openssl("req", "-x509", "-new", "-key", str(pki.ca_key), "-subj", "/CN=lepton-e2e-ca",
             "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", str(pki.ca_cert), cwd=root)  # fmt: skip
    _new_key(pki.serving_key)
    _signed_cert(pki, pki.serving_key, pki.serving_cert, "/CN=kube-apiserver", [
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth",
        "subjectAltName=" + ",".join(_SERVING_SANS),
    ])  # fmt: skip
    # O=system:masters: RBAC's built-in superuser group; every local component uses this identity.
    _new_key(pki.admin_key)
    _signed_cert(pki, pki.admin_key, pki.admin_cert, "/O=system:masters/CN=lepton-admin", [
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=clientAuth",
    ])  # fmt: skip
    _new_key(pki.service_account_key)
    _openssl("pkey", "-in", str(pki.service_account_key), "-pubout",
             "-out", str(pki.service_account_pub), cwd=root)  # fmt: skip
    return pki
