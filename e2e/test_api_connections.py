"""The operator's client keeps its connections: every call answered reuses the one before.

An answer left unread keeps its connection out of urllib3's pool, and the next call opens a
new one (a TLS handshake for the client and for the API server): the status patch did so on
every call, which cost more of the operator's CPU than anything it computed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lepton_operator import k8s


def test_reads_applies_and_status_patches_reuse_one_connection(
    kubeconfig_path: Path,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    k8s.connect(str(kubeconfig_path))
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "connections", "namespace": namespace},
        "data": {"n": "0"},
    }
    k8s.apply(config_map)  # the first call may open the connection
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    for n in range(10):
        k8s.apply({**config_map, "data": {"n": str(n)}})
        assert k8s.get("v1", "ConfigMap", namespace, "connections") is not None
        assert k8s.get("v1", "ConfigMap", namespace, "absent") is None
        assert k8s.patch_status("v1", "Namespace", "", namespace, {})  # cluster-scoped
    opened = [r for r in caplog.records if "Starting new HTTPS connection" in r.getMessage()]
    assert not opened, f"{len(opened)} connections opened for 40 calls"
