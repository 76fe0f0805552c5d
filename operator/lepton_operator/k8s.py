"""The one module that talks to the API server.

Children are written with server-side apply (field manager `lepton-operator`, conflicts
forced): applying the same manifest twice changes nothing, so every handler is safe to re-run.
Reads go through the same dynamic client; status goes through the status subresource.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.resource import Resource

FIELD_MANAGER = "lepton-operator"
NOT_FOUND = 404

_lock = threading.Lock()
_dynamic: DynamicClient | None = None


def connect() -> None:
    """Configure the client from the pod's service account, else from KUBECONFIG."""
    global _dynamic  # noqa: PLW0603 - one client per process, created at operator start-up
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    with _lock:
        _dynamic = DynamicClient(client.ApiClient())
    _resource.cache_clear()


def _client() -> DynamicClient:
    if _dynamic is None:
        connect()
    assert _dynamic is not None
    return _dynamic


@cache
def _resource(api_version: str, kind: str) -> Resource:
    # Discovery is slow; each kind is looked up once per process.
    found: Resource = _client().resources.get(api_version=api_version, kind=kind)
    return found


def apply(manifest: dict[str, Any]) -> dict[str, Any]:
    """Create or update an object to match the manifest (server-side apply)."""
    resource = _resource(manifest["apiVersion"], manifest["kind"])
    result = _client().server_side_apply(
        resource,
        body=manifest,
        namespace=manifest["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
    )
    return dict(result.to_dict())


def get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The object, or None when it does not exist."""
    try:
        result = _client().get(_resource(api_version, kind), name=name, namespace=namespace)
    except ApiException as error:
        if error.status == NOT_FOUND:
            return None
        raise
    return dict(result.to_dict())


def list_objects(
    api_version: str, kind: str, namespace: str, label_selector: str
) -> list[dict[str, Any]]:
    result = _client().get(
        _resource(api_version, kind), namespace=namespace, label_selector=label_selector
    )
    return [dict(item) for item in result.to_dict()["items"]]


def list_all_namespaces(
    api_version: str, kind: str, label_selector: str = "", field_selector: str = ""
) -> list[dict[str, Any]]:
    """Objects of a kind across the cluster (cluster-scoped kinds, or every namespace)."""
    result = _client().get(
        _resource(api_version, kind),
        label_selector=label_selector or None,
        field_selector=field_selector or None,
    )
    return [dict(item) for item in result.to_dict()["items"]]


def delete(api_version: str, kind: str, namespace: str, name: str) -> bool:
    """Delete the object; False when it was already gone."""
    try:
        _client().delete(_resource(api_version, kind), name=name, namespace=namespace)
    except ApiException as error:
        if error.status == NOT_FOUND:
            return False
        raise
    return True


def patch_status(
    api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
) -> bool:
    """Merge-patch the status subresource (keys set to None are removed).

    False when the object is gone: a child's event can arrive just after its owner was
    deleted, and there is no status left to write.
    """
    resource = _resource(api_version, kind).subresources["status"]
    try:
        _client().patch(
            resource,
            body={"status": status},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
        )
    except ApiException as error:
        if error.status == NOT_FOUND:
            return False
        raise
    return True


def exists(api_version: str, kind: str, namespace: str, name: str) -> bool:
    return get(api_version, kind, namespace, name) is not None
