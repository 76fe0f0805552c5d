"""The one module that talks to the API server.

Children are written with server-side apply (field manager `lepton-operator`, conflicts
forced): applying the same manifest twice changes nothing, so every handler is safe to re-run.
Reads go through the same dynamic client; status goes through the status subresource.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any, ParamSpec, TypeVar

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.resource import Resource

log = logging.getLogger(__name__)
FIELD_MANAGER = "lepton-operator"
FORBIDDEN = 403
NOT_FOUND = 404
CONFLICT = 409
GONE = 410
# The API server is away (restarting, shutting down, its etcd gone) or overloaded: the same
# request is answered once it is back.
UNAVAILABLE = frozenset({429, 500, 502, 503, 504})
# How long a call waits for it (about 30 s in all), as Kopf's own requests do (9 attempts).
UNAVAILABLE_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
FORBIDDEN_RETRIES = 3  # attempts a 403 is retried (3.5 s): an API server's RBAC warm-up


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


def _unavailable(error: Exception, attempt: int) -> bool:
    if isinstance(error, ApiException):
        # A restarted API server answers 403 to everyone until its RBAC caches have synced
        # (about a second; seen in e2e/test_apiserver_faults.py): worth the first few retries,
        # not the whole budget, since a real refusal stays one.
        warming_up = error.status == FORBIDDEN and attempt < FORBIDDEN_RETRIES
        return error.status in UNAVAILABLE or warming_up
    if isinstance(error, ForbiddenError):  # the same 403, as get and list_with_version say it
        return attempt < FORBIDDEN_RETRIES
    # Connection refused or reset, the response cut off: urllib3's own retries are spent in
    # milliseconds, far less than an API server takes to restart.
    return isinstance(error, urllib3.exceptions.HTTPError)


P = ParamSpec("P")
T = TypeVar("T")


def _waits_out_unavailability(call: Callable[P, T]) -> Callable[P, T]:
    """Retry an idempotent call (a read, a server-side apply, a merge patch of the whole status,
    a delete) while the API server is unavailable, up to UNAVAILABLE_BACKOFF_SECONDS.

    Without it, a restart of the API server fails every call in flight at once, and a change
    handler's failure waits out Kopf's 60 s backoff. Longer outages still raise: the change
    handlers' own retries take over from there, and the status refresh queue's backoff for
    what the children's events marked (services/status_refresh.py).
    """

    @functools.wraps(call)
    def waiting(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt, delay in enumerate(UNAVAILABLE_BACKOFF_SECONDS):
            try:
                return call(*args, **kwargs)
            except Exception as error:
                if not _unavailable(error, attempt):
                    raise
                log.warning("API server unavailable (%s); retrying in %.1f s", error, delay)
                time.sleep(delay)
        return call(*args, **kwargs)

    return waiting


_lock = threading.Lock()
_dynamic: DynamicClient | None = None


def connect(kubeconfig: str | None = None) -> None:
    """Configure the client from the pod's service account, else from KUBECONFIG (or the
    file given)."""
    global _dynamic  # noqa: PLW0603 - one client per process, created at operator start-up
    if kubeconfig is not None:
        config.load_kube_config(config_file=kubeconfig)
    else:
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


# Characters that JSON leaves raw and YAML does not read back as they are: DEL, the C1
# controls and two noncharacters it refuses ("control characters are not allowed"), and the
# line breaks it would fold into a space (NEL, U+2028, U+2029). As \\u escapes they pass (the
# C0 controls json.dumps escapes itself). They occur only inside strings, so the whole
# document can be translated.
_YAML_UNPRINTABLE_CODES = (0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, 0xFFFE, 0xFFFF)
_YAML_UNPRINTABLE = {code: f"\\u{code:04x}" for code in _YAML_UNPRINTABLE_CODES}


def apply_body(manifest: dict[str, Any]) -> bytes:
    """The apply request's body: JSON (which is YAML) in UTF-8 as it is.

    The client's own encoding escapes a character outside the BMP as a surrogate pair
    ("\\ud83d\\ude00"), which JSON allows and the API server's YAML decoder refuses ("found
    invalid Unicode character escape code"): a spec string with an emoji in it made every
    apply of its ConfigMap fail (found by e2e/test_input_campaign.py). Raw UTF-8 is fine,
    except for the few characters YAML refuses raw, which stay escaped."""
    return json.dumps(manifest, ensure_ascii=False).translate(_YAML_UNPRINTABLE).encode("utf-8")


def _json(response: Any) -> dict[str, Any]:
    """The body of a raw answer (`serialize=False`): the dynamic client would wrap it in a
    ResourceInstance, which `to_dict` then copies back, the longest part of a call here."""
    parsed: dict[str, Any] = json.loads(response.data)
    return parsed


def _raise_rejected(manifest: dict[str, Any], error: ApiException) -> None:
    """The API server refused the object itself (invalid, forbidden): say which, and why."""
    if error.status in REJECTED:
        raise RejectedError(
            f"{manifest['kind']} {manifest['metadata'].get('name')}: {server_message(error)}"
        ) from error


@_waits_out_unavailability
def apply(manifest: dict[str, Any]) -> dict[str, Any]:
    """Create or update an object to match the manifest (server-side apply)."""
    resource = _resource(manifest["apiVersion"], manifest["kind"])
    metadata = manifest["metadata"]
    try:
        result = _client().server_side_apply(
            resource,
            body=apply_body(manifest),
            name=metadata["name"],
            namespace=metadata.get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            serialize=False,
        )
    except ApiException as error:
        _raise_rejected(manifest, error)
        raise
    return _json(result)


@_waits_out_unavailability
def create(manifest: dict[str, Any]) -> bool:
    """Create the object unless one of that name exists (False then: the existing one is
    left as it is, unlike `apply`)."""
    resource = _resource(manifest["apiVersion"], manifest["kind"])
    try:
        answer = _client().create(
            resource,
            body=manifest,
            namespace=manifest["metadata"].get("namespace"),
            serialize=False,
        )
        answer.drain_conn()  # read to its end, or the connection is not used again
    except ApiException as error:
        if error.status == CONFLICT:
            return False
        _raise_rejected(manifest, error)
        raise
    return True


@_waits_out_unavailability
def get(api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    """The object, or None when it does not exist."""
    try:
        result = _client().get(
            _resource(api_version, kind), name=name, namespace=namespace, serialize=False
        )
    except ApiException as error:
        if error.status == NOT_FOUND:
            return None
        if error.status == FORBIDDEN:
            raise ForbiddenError(f"get {kind} {name}: {error.reason}") from error
        raise
    return _json(result)


@_waits_out_unavailability
def list_objects(
    api_version: str, kind: str, namespace: str, label_selector: str
) -> list[dict[str, Any]]:
    result = _client().get(
        _resource(api_version, kind), namespace=namespace, label_selector=label_selector
    )
    return [dict(item) for item in result.to_dict()["items"]]


@_waits_out_unavailability
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


@_waits_out_unavailability
def delete(api_version: str, kind: str, namespace: str, name: str) -> bool:
    """Delete the object; False when it was already gone."""
    try:
        _client().delete(_resource(api_version, kind), name=name, namespace=namespace)
    except ApiException as error:
        if error.status == NOT_FOUND:
            return False
        raise
    return True


@_waits_out_unavailability
def patch_status(
    api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
) -> bool:
    """Merge-patch the status subresource (keys set to None are removed).

    False when the object is gone: a child's event can arrive just after its owner was
    deleted, and there is no status left to write.
    """
    resource = _resource(api_version, kind).subresources["status"]
    try:
        answer = _client().patch(
            resource,
            body={"status": status},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            serialize=False,  # not parsed: nothing here needs it
        )
        answer.drain_conn()  # read to its end, or the connection is not used again
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
        # The client's own watch loop, without the dynamic client's wrapping of every
        # object in a ResourceInstance that nothing here reads (8 % of the operator's CPU
        # under load, on the admission view's watches).
        stream = watch.Watch().stream(
            _resource(api_version, kind).get,
            namespace=namespace,
            label_selector=label_selector or None,
            field_selector=field_selector or None,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
            allow_watch_bookmarks=True,
            serialize=False,
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
