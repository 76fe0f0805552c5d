"""The informer's list-then-watch loop against scripted API responses, parsed by the real
Kubernetes client.

The fake stands in for the API server below the client: each watch is a real `urllib3`
response streaming newline-delimited events (or the error the client raises for a refused
request), so `kubernetes.watch.Watch` and the dynamic client do their own parsing, and what
reaches `k8s.watch_events` is what a real 410 Gone, a stream ended by the server's timeout, a
bookmark or a broken connection look like. That matters: whether a 410 arrives as an ERROR
event or as an exception, and whether the client retries it itself, differs between client
versions and between the API server's watch cache and etcd.

The last tests are of k8s.py's calls on the same fake: what a handler's read does while the API
server restarts.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client import rest

from lepton_operator import k8s
from lepton_operator.services import informer
from lepton_operator.services.admission import AdmissionQueue
from lepton_operator.services.cluster_view import ClusterView
from lepton_operator.services.informer import Informer, WatchTarget
from lepton_operator.settings import OperatorSettings
from tests.test_admission_service import GPU_TEMPLATE, Recorder, a100_nodes
from tests.test_scheduling import POOL_KEY, node_manifest

# A guard against a hang, never a measure of speed: each wait returns as soon as it can.
DEADLINE_SECONDS = 20.0


# ------------------------------------------------------------------ the scripted API server


@dataclass(frozen=True)
class Stream:
    """A watch answered 200 with these events, then ended (as the server's timeout ends it)."""

    events: list[dict[str, Any]]


@dataclass(frozen=True)
class Refused:
    """A request refused with this HTTP status and a Status body."""

    status: int
    reason: str = "Expired"
    message: str = "too old resource version: 11 (40)"


@dataclass(frozen=True)
class Broken:
    """The connection fails (the API server is restarting)."""


@dataclass(frozen=True)
class Held:
    """A watch that stays open and quiet until `until` is set, then answers `then`."""

    until: threading.Event
    then: Stream | Refused


Answer = Stream | Refused | Broken | Held


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


def gone(message: str = "too old resource version: 11 (40)") -> dict[str, Any]:
    """The ERROR event etcd's watch sends when the revision was compacted."""
    status = {"kind": "Status", "status": "Failure", "reason": "Expired", "code": 410}
    return event("ERROR", {**status, "message": message})


ETCD_UNAVAILABLE = event(
    "ERROR",
    {"kind": "Status", "code": 500, "reason": "InternalError", "message": "etcdserver: timeout"},
)


def _refusal(answer: Refused) -> client.ApiException:
    """The exception the dynamic client raises for a non-2xx answer (built by its own code)."""
    status = {"kind": "Status", "code": answer.status, "reason": answer.reason}
    body = json.dumps({**status, "message": answer.message}).encode()
    response = rest.RESTResponse(
        urllib3.HTTPResponse(
            body=io.BytesIO(body),
            status=answer.status,
            reason=answer.reason,
            headers={"content-type": "application/json"},
            preload_content=False,
        )
    )
    response.read()  # type: ignore[no-untyped-call]
    try:
        client.ApiClient().response_deserialize(response, {})
    except client.ApiException as error:
        return error
    raise AssertionError("the client accepted a refusal")


class _Body(io.BytesIO):
    """A response body that, like http.client's, says it is closed once read to its end (urllib3
    streams until then)."""

    def isclosed(self) -> bool:
        return self.tell() == len(self.getbuffer())


def _streamed(lines: bytes) -> urllib3.HTTPResponse:
    return urllib3.HTTPResponse(body=_Body(lines), status=200, preload_content=False)


class _Listed:
    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    def to_dict(self) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(self._body))  # each answer is a new one
        return copy

    @property
    def data(self) -> bytes:
        """The raw answer, as the client gives it with `serialize=False`."""
        return json.dumps(self._body).encode()


@dataclass
class FakeKind:
    """One kind's answers: lists (the last repeats) and watches (then a quiet open watch)."""

    kind: str
    lists: list[tuple[list[dict[str, Any]], str] | Answer]
    watches: list[Answer]
    quiet: threading.Event = field(default_factory=threading.Event)  # set: the test ends
    watched_from: list[str] = field(default_factory=list)  # each watch's resourceVersion
    listed: int = 0
    idle: threading.Event = field(default_factory=threading.Event)  # script used up

    def list(self) -> _Listed:
        answer = self.lists[min(self.listed, len(self.lists) - 1)]
        self.listed += 1
        if isinstance(answer, Refused):
            raise _refusal(answer)
        if isinstance(answer, Broken):
            raise urllib3.exceptions.MaxRetryError(None, "/", "Connection refused")  # type: ignore[arg-type]
        if isinstance(answer, Stream | Held):
            raise AssertionError("a list is answered with items")
        items, version = answer
        return _Listed({"kind": f"{self.kind}List", "metadata": {"resourceVersion": version},
                        "items": items})  # fmt: skip

    def get(self, **params: Any) -> Any:
        """What `Watch.stream` calls for each watch request (`resource.get(watch=True, ...)`)."""
        assert params.get("watch") is True and params.get("_preload_content") is False
        self.watched_from.append(str(params.get("resource_version")))
        if not self.watches:
            self.idle.set()
            # An open watch with nothing to say; it ends when the test does.
            self.quiet.wait(DEADLINE_SECONDS)
            return _streamed(b"")
        answer = self.watches.pop(0)
        if isinstance(answer, Held):
            answer.until.wait(DEADLINE_SECONDS)
            answer = answer.then
        if isinstance(answer, Refused):
            raise _refusal(answer)
        if isinstance(answer, Broken):
            raise urllib3.exceptions.ProtocolError("Connection aborted.")
        lines = b"".join(json.dumps(e).encode() + b"\n" for e in answer.events)
        return _streamed(lines)


class FakeApi:
    """The dynamic client as k8s.py uses it: `get` lists (or reads one object of the list's
    answer). Watches go to the resource's own `get`, as the client's Watch calls it."""

    def get(self, resource: FakeKind, name: str | None = None, **_: Any) -> _Listed:
        listed = resource.list()
        if name is None:
            return listed
        found = [i for i in listed.to_dict()["items"] if i["metadata"]["name"] == name]
        if not found:
            raise _refusal(Refused(404, "NotFound", f"nodes {name!r} not found"))
        return _Listed(found[0])


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, FakeKind]]:
    kinds: dict[str, FakeKind] = {}
    monkeypatch.setattr(k8s, "_dynamic", FakeApi())
    monkeypatch.setattr(k8s, "_resource", lambda api_version, kind: kinds[kind])
    monkeypatch.setattr(informer, "RETRY_SECONDS", 0.05)  # a broken connection: retry soon
    yield kinds
    for kind in kinds.values():
        kind.quiet.set()


# ------------------------------------------------------------------ objects


def node(name: str, gpus: str = "8", rv: str = "1") -> dict[str, Any]:
    manifest = node_manifest(name, {POOL_KEY: "a100"}, gpus)
    manifest["metadata"]["resourceVersion"] = rv
    return {"apiVersion": "v1", "kind": "Node", **manifest}


def gpu_pod(name: str, node_name: str, phase: str, rv: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "team",
            "resourceVersion": rv,
            "labels": {"training.kubeflow.org/job-name": "filler"},
        },
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": "8"}}}],
        },
        "status": {"phase": phase},
    }


def filler_pytorchjob(finished: bool, rv: str) -> dict[str, Any]:
    conditions = [{"type": "Succeeded", "status": "True"}] if finished else []
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {
            "name": "filler",
            "namespace": "team",
            "resourceVersion": rv,
            "labels": {"lepton.ai/pool": "a100"},
        },
        "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 4, "template": GPU_TEMPLATE}}},
        "status": {"conditions": conditions},
    }


def wait_for(what: str, done: Callable[[], bool]) -> None:
    ready = threading.Event()
    deadline = threading.Timer(DEADLINE_SECONDS, ready.set)
    deadline.start()
    try:
        while not done():
            if ready.wait(0.01):
                raise AssertionError(f"never happened: {what}")
    finally:
        deadline.cancel()


def node_informer(view: ClusterView) -> Informer:
    def on_event(kind: str, item: dict[str, Any]) -> None:
        view.apply("Node", kind, item)

    return Informer(WatchTarget("v1", "Node"), lambda items: view.replace("Node", items), on_event)


def gpus_by_node(view: ClusterView) -> dict[str, int]:
    return {
        n.metadata.name: int(n.status.allocatable.get("nvidia.com/gpu", "0"))
        for n in view.snapshot().nodes
    }


# ------------------------------------------------------------------ the informer alone


@pytest.mark.parametrize(
    "expiry",
    [
        pytest.param(Stream([gone()]), id="ERROR event in the stream (etcd compacted)"),
        pytest.param(Refused(410), id="410 answer to the watch (watch cache too new)"),
    ],
)
def test_an_expired_watch_lists_again_and_the_view_converges(
    api: dict[str, FakeKind], expiry: Answer
) -> None:
    # Listed at 10; one change at 11; then the version expires. Meanwhile a-1 was deleted,
    # a-0 changed and a-2 joined: only a new list can tell, no watch event ever will.
    api["Node"] = FakeKind(
        "Node",
        lists=[
            ([node("a-0", rv="5"), node("a-1", rv="6")], "10"),
            ([node("a-0", gpus="4", rv="30"), node("a-2", rv="31")], "40"),
        ],
        watches=[Stream([event("MODIFIED", node("a-0", gpus="2", rv="11"))]), expiry],
    )
    view = ClusterView("nvidia.com/gpu")
    watcher = node_informer(view)
    watcher.start()
    try:
        wait_for("the informer watches again after the expiry", api["Node"].idle.is_set)
    finally:
        watcher.stop()

    assert api["Node"].listed == 2, "the expired version made it list again, once"
    # The first watch continues from the list, the second from the event; after the expiry it
    # never asks for 11 again, but for the new list's version.
    assert api["Node"].watched_from == ["10", "11", "40"]
    assert gpus_by_node(view) == {"a-0": 4, "a-2": 8}
    assert watcher.ready.is_set() and watcher.refused is None


def test_a_watch_the_server_ends_continues_from_the_last_version_without_a_list(
    api: dict[str, FakeKind],
) -> None:
    bookmark = {"kind": "Node", "apiVersion": "v1", "metadata": {"resourceVersion": "25"}}
    api["Node"] = FakeKind(
        "Node",
        lists=[([node("a-0", rv="5")], "10")],
        watches=[
            Stream([event("MODIFIED", node("a-0", gpus="4", rv="12"))]),  # then its timeout
            Stream([event("BOOKMARK", bookmark)]),  # nothing changed: the version moves on
        ],
    )
    view = ClusterView("nvidia.com/gpu")
    watcher = node_informer(view)
    watcher.start()
    try:
        wait_for("the third watch", api["Node"].idle.is_set)
    finally:
        watcher.stop()

    assert api["Node"].listed == 1
    assert api["Node"].watched_from == ["10", "12", "25"]
    assert gpus_by_node(view) == {"a-0": 4}


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(Broken(), id="connection broken (API server restarting)"),
        pytest.param(Stream([ETCD_UNAVAILABLE]), id="500 ERROR event (etcd unavailable)"),
        pytest.param(Refused(503, "ServiceUnavailable", "etcd"), id="503 to the watch"),
    ],
)
def test_a_failed_watch_lists_again_once_the_api_server_answers(
    api: dict[str, FakeKind], failure: Answer
) -> None:
    # While the API server is away the list fails too; the view keeps what it had meanwhile.
    api["Node"] = FakeKind(
        "Node",
        lists=[
            ([node("a-0"), node("a-1")], "10"),
            Broken(),
            Broken(),
            ([node("a-1", gpus="4", rv="50")], "60"),
        ],
        watches=[failure],
    )
    view = ClusterView("nvidia.com/gpu")
    watcher = node_informer(view)
    watcher.start()
    try:
        wait_for("a watch after the API server came back", api["Node"].idle.is_set)
    finally:
        watcher.stop()

    assert api["Node"].listed == 4
    assert api["Node"].watched_from == ["10", "60"]
    assert gpus_by_node(view) == {"a-1": 4}


FORBIDDEN = Refused(
    403,
    "Forbidden",
    'nodes is forbidden: User "system:serviceaccount:lepton-system:lepton-operator" cannot watch',
)


def test_a_refusal_after_the_first_list_is_retried_and_the_view_converges(
    api: dict[str, FakeKind],
) -> None:
    # A restarted kube-apiserver refuses (403) until its RBAC caches have synced: a watch and
    # the next list are refused, then it answers again.
    api["Node"] = FakeKind(
        "Node",
        lists=[([node("a-0"), node("a-1")], "10"), FORBIDDEN, ([node("a-1", rv="65")], "70")],
        watches=[FORBIDDEN],
    )
    view = ClusterView("nvidia.com/gpu")
    watcher = node_informer(view)
    watcher.start()
    try:
        wait_for("a watch after the refusals", api["Node"].idle.is_set)
    finally:
        watcher.stop()

    assert api["Node"].listed == 3
    assert api["Node"].watched_from == ["10", "70"]
    assert gpus_by_node(view) == {"a-1": 8}
    assert watcher.refused is None


def test_a_refusal_before_the_first_list_says_why_there_is_no_view(
    api: dict[str, FakeKind],
) -> None:
    api["Node"] = FakeKind("Node", lists=[FORBIDDEN], watches=[])
    watcher = node_informer(ClusterView("nvidia.com/gpu"))
    watcher.start()
    assert watcher.ready.wait(DEADLINE_SECONDS), "whoever waits for the view is not left waiting"
    watcher._thread.join(DEADLINE_SECONDS)
    assert not watcher._thread.is_alive(), "without read access it stops"
    assert watcher.refused is not None and "Forbidden" in watcher.refused
    assert api["Node"].listed == 1 and api["Node"].watched_from == []


# ------------------------------------------------------------------ the admission queue on it


def test_a_job_queued_behind_a_full_pool_is_admitted_when_the_relist_shows_it_free(
    api: dict[str, FakeKind],
) -> None:
    """The operator's own view across an expiry: the filler's pods finished while the watches
    were gone, and only the new lists say so; the gang queued behind it is then admitted."""
    running = [gpu_pod(f"filler-{i}", f"a100-{i}", "Running", rv=str(i)) for i in range(4)]
    finished = [gpu_pod(f"filler-{i}", f"a100-{i}", "Succeeded", rv=str(90 + i)) for i in range(4)]
    nodes = [{"apiVersion": "v1", "kind": "Node", **n} for n in a100_nodes()]
    expire = threading.Event()  # set once the gang was seen queued
    api["Node"] = FakeKind("Node", lists=[(nodes, "10")], watches=[])
    api["Pod"] = FakeKind(
        "Pod", lists=[(running, "10"), (finished, "100")], watches=[Held(expire, Refused(410))]
    )
    api["PyTorchJob"] = FakeKind(
        "PyTorchJob",
        lists=[([filler_pytorchjob(False, "8")], "10"), ([filler_pytorchjob(True, "99")], "100")],
        watches=[Held(expire, Stream([gone()]))],
    )
    api["Deployment"] = FakeKind("Deployment", lists=[([], "10")], watches=[])
    queue = AdmissionQueue(OperatorSettings())
    recorder = Recorder()
    queue.start()
    try:
        queue.submit(recorder.entry("waiting", 2, 8))
        wait_for("the gang reported queued", lambda: bool(recorder.reported.get("waiting")))
        assert recorder.reported["waiting"][-1].reason == "InsufficientGPUs"
        assert recorder.started == {}
        expire.set()
        wait_for("the gang admitted", lambda: "waiting" in recorder.started)
    finally:
        expire.set()
        queue.stop()

    assert recorder.started["waiting"].pool == "a100"
    assert api["Pod"].listed == 2 and api["PyTorchJob"].listed == 2
    assert api["Pod"].watched_from == ["10", "100"]
    assert api["PyTorchJob"].watched_from == ["10", "100"]


# ------------------------------------------------------------------ k8s.py's calls under it


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(k8s, "UNAVAILABLE_BACKOFF_SECONDS", (0.01,) * 6)


@pytest.mark.usefixtures("no_backoff")
def test_a_handlers_read_waits_out_an_api_server_restart(api: dict[str, FakeKind]) -> None:
    api["Node"] = FakeKind(
        "Node",
        lists=[
            Broken(),
            Refused(503, "ServiceUnavailable", "apiserver is shutting down"),
            Refused(429, "TooManyRequests", "storage is (re)initializing"),
            ([node("a-0", rv="7")], "8"),
        ],
        watches=[],
    )
    found = k8s.get("v1", "Node", None, "a-0")
    assert found is not None and found["metadata"]["resourceVersion"] == "7"
    assert api["Node"].listed == 4


@pytest.mark.usefixtures("no_backoff")
@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        pytest.param(Refused(404, "NotFound", "not found"), None, id="404: None at once"),
    ],
)
def test_an_answer_is_not_retried(
    api: dict[str, FakeKind], answer: Answer, outcome: type[Exception] | None
) -> None:
    api["Node"] = FakeKind("Node", lists=[answer, ([node("a-0")], "8")], watches=[])
    if outcome is None:
        assert k8s.get("v1", "Node", None, "a-0") is None
    else:
        with pytest.raises(outcome):
            k8s.get("v1", "Node", None, "a-0")
    assert api["Node"].listed == 1


@pytest.mark.usefixtures("no_backoff")
def test_a_403_is_retried_through_an_rbac_warm_up_only(api: dict[str, FakeKind]) -> None:
    api["Node"] = FakeKind("Node", lists=[FORBIDDEN, ([node("a-0")], "8")], watches=[])
    assert k8s.get("v1", "Node", None, "a-0") is not None  # refused once, then answered
    refusals = [FORBIDDEN] * (k8s.FORBIDDEN_RETRIES + 1)
    api["Node"] = FakeKind("Node", lists=[*refusals, ([node("a-0")], "8")], watches=[])
    with pytest.raises(k8s.ForbiddenError):  # a refusal that stays one
        k8s.get("v1", "Node", None, "a-0")
    assert api["Node"].listed == k8s.FORBIDDEN_RETRIES + 1


@pytest.mark.usefixtures("no_backoff")
def test_an_api_server_away_for_longer_fails_the_call(api: dict[str, FakeKind]) -> None:
    api["Node"] = FakeKind("Node", lists=[Broken()], watches=[])
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        k8s.get("v1", "Node", None, "a-0")
    assert api["Node"].listed == len(k8s.UNAVAILABLE_BACKOFF_SECONDS) + 1
