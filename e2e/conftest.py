"""Session fixtures: one real control plane (see e2e/cluster.py) shared by every e2e test.

Other e2e tests use it like this::

    @pytest.mark.e2e
    def test_something(kube_api: ApiClient, kubeconfig_path: Path) -> None:
        CoreV1Api(kube_api).list_node()
        subprocess.run([...], env={**os.environ})   # KUBECONFIG already points at the cluster

The session starts the cluster on first use (building any missing binary; the first build on a
machine takes tens of minutes) and stops it at the end. A cluster already started with
`make cluster-up` is reused and left running. LEPTON_E2E_KEEP_CLUSTER=1 keeps the one the session
started, for a look around after a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api

from e2e import build, cluster, images
from e2e.lepton_resources import (  # noqa: F401 - fixtures of the operator's e2e tests
    core,
    crds,
    custom,
    operator,
    volumes,
)
from e2e.waiting import wait_until


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build missing binaries before any test runs: a cold build (tens of minutes) would blow
    pytest-timeout's per-test limit if it happened inside the first test's fixture setup."""
    if any(item.get_closest_marker("e2e") for item in session.items):
        build.ensure(build.CLUSTER_COMPONENTS, quiet=True)
    if any(item.get_closest_marker("real_node") for item in session.items):
        # The real node's binaries and images (5 GB: torch with its CUDA wheels) likewise.
        build.ensure(build.REAL_NODE_COMPONENTS, quiet=True)
        images.ensure()
    if any(item.get_closest_marker("kueue") for item in session.items):
        build.ensure(("kueue",), quiet=True)


@pytest.fixture(scope="session")
def kubeconfig_path() -> Iterator[Path]:
    """Admin kubeconfig of the running cluster; also exported as $KUBECONFIG for the session."""
    started_here = cluster.running() is None
    cluster.up()
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cluster.KUBECONFIG)
    try:
        yield cluster.KUBECONFIG
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
        if started_here and os.environ.get("LEPTON_E2E_KEEP_CLUSTER") != "1":
            cluster.down()


@pytest.fixture(scope="session")
def kube_api(kubeconfig_path: Path) -> Iterator[ApiClient]:
    """A Kubernetes ApiClient for the cluster (not installed as the client's global default)."""
    api = cluster.api_client(kubeconfig_path)
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def namespace(kube_api: ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (its objects go with it)."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core_api: Any = CoreV1Api(kube_api)  # models are Optional everywhere; read them as Any
    core_api.create_namespace({"metadata": {"name": name}})
    # Pods are refused until the controller manager has made the namespace's ServiceAccount.
    wait_until(
        f"ServiceAccount default in {name}",
        lambda: any(
            sa.metadata.name == "default"
            for sa in core_api.list_namespaced_service_account(name).items
        ),
    )
    try:
        yield name
    finally:
        core_api.delete_namespace(name)
        # The namespace controller gets to pods only after a round of discovery; remove them
        # now (no new ones can be created in a terminating namespace).
        core_api.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        # Wait for its pods to be gone, so that their GPUs are free for the next test. (The
        # namespace itself lingers for a while; nothing can be created in it meanwhile.)
        wait_until(
            f"pods of namespace {name} deleted",
            lambda: not core_api.list_namespaced_pod(name).items,
        )
