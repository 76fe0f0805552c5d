"""The one module that talks to the API server.

Children are written with server-side apply (field manager `lepton-operator`, conflicts
forced): applying the same manifest twice changes nothing, so every handler is safe to re-run.
Reads go through the same dynamic client; status goes through the status subresource.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from functools import cache
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.resource import Resource

FIELD_MANAGER = "lepton-operator"
FORBIDDEN = 403
NOT_FOUND = 404
GONE = 410


class ForbiddenError(Exception):
    """The operator's RBAC does not allow the call (the message names what was refused)."""


class ExpiredError(Exception):
    """A watch's resourceVersion is too old: list again, then watch from the new one."""


class RejectedError(Exception):
    """The API server refused an object as invalid or not allowed; the message is its own."""


# Invalid, forbidden (admission: PodSecurity, a terminating namespace), or unprocessable: the
# same manifest would be refused again, so retrying blindly helps nobody.
REJECTED = frozenset({400, 403, 422})


def server_message(error: ApiException, limit: int = 400) -> str:
    """The API server's own message for a refused request (not its headers and body)."""
    message = str(error.reason)
    try:
        parsed = json.loads(error.body) if error.body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        message = parsed["message"]
    return message if len(message) <= limit else message[: limit - 1] + "…"


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
    try:
        result = _client().server_side_apply(
            resource,
            body=manifest,
            namespace=manifest["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
    except ApiException as error:
        if error.status in REJECTED:
            raise RejectedError(
                f"{manifest['kind']} {manifest['metadata'].get('name')}: {server_message(error)}"
            ) from error
        raise
    return dict(result.to_dict())


def get(api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    """The object, or None when it does not exist."""
    try:
        result = _client().get(_resource(api_version, kind), name=name, namespace=namespace)
    except ApiException as error:
        if error.status == NOT_FOUND:
            return None
        if error.status == FORBIDDEN:
            raise ForbiddenError(f"get {kind} {name}: {error.reason}") from error
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


def list_with_version(
    api_version: str,
    kind: str,
    namespace: str | None = None,
    label_selector: str = "",
    field_selector: str = "",
) -> tuple[list[dict[str, Any]], str]:
    """The objects and the list's resourceVersion, from which a watch continues."""
    try:
        result = _client().get(
            _resource(api_version, kind),
            namespace=namespace,
            label_selector=label_selector or None,
            field_selector=field_selector or None,
        )
    except ApiException as error:
        if error.status == FORBIDDEN:
            raise ForbiddenError(f"list {kind}: {error.reason}") from error
        raise
    listed = result.to_dict()
    version = str(listed.get("metadata", {}).get("resourceVersion", ""))
    return [dict(item) for item in listed["items"]], version


def watch_events(
    api_version: str,
    kind: str,
    resource_version: str,
    *,
    namespace: str | None = None,
    label_selector: str = "",
    field_selector: str = "",
    timeout_seconds: int = 60,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(type, object) per change after `resource_version` until the server ends the watch.

    Bookmarks come through as ("BOOKMARK", object) so the caller can move its resourceVersion
    on; an expired resourceVersion raises ExpiredError.
    """
    try:
        stream = _client().watch(
            _resource(api_version, kind),
            namespace=namespace,
            label_selector=label_selector or None,
            field_selector=field_selector or None,
            resource_version=resource_version,
            timeout=timeout_seconds,
            allow_watch_bookmarks=True,
        )
        for event in stream:
            raw = event["raw_object"]
            if event["type"] == "ERROR":
                code = raw.get("code") if isinstance(raw, dict) else None
                if code == GONE:
                    raise ExpiredError(str(raw.get("message", "")))
                raise RuntimeError(f"watch {kind}: {raw}")
            yield str(event["type"]), dict(raw)
    except ApiException as error:
        if error.status == GONE:
            raise ExpiredError(str(error.reason)) from error
        if error.status == FORBIDDEN:
            raise ForbiddenError(f"watch {kind}: {error.reason}") from error
        raise
