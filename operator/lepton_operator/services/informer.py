"""List, then watch: keep a local copy of one kind of object current without polling.

The same loop as client-go's reflector: list once (that copy is complete as of the list's
resourceVersion), then apply the watch's changes from that version on; when the version has
expired, list again. The copy is `ready` after the first list, which is what lets the admission
queue wait for a complete view before its first decision after a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lepton_operator import k8s

log = logging.getLogger(__name__)
RETRY_SECONDS = 2.0


@dataclass(frozen=True)
class WatchTarget:
    """What one informer lists and watches."""

    api_version: str
    kind: str
    namespace: str | None = None
    label_selector: str = ""


# (event type: ADDED, MODIFIED, DELETED; the object) and a complete replacement after a list.
OnEvent = Callable[[str, dict[str, Any]], None]
OnList = Callable[[list[dict[str, Any]]], None]


class Informer:
    """One background thread keeping a store current for one `WatchTarget`."""

    def __init__(
        self,
        target: WatchTarget,
        on_list: OnList,
        on_event: OnEvent,
        watch_seconds: int = 60,
    ) -> None:
        self.target = target
        self.ready = threading.Event()
        self.refused: str | None = None  # why the API server refused to list, if it did
        self._on_list = on_list
        self._on_event = on_event
        self._watch_seconds = watch_seconds
        self._stopping = threading.Event()
        self._relist = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"informer-{target.kind}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def relist(self) -> None:
        """List again at the next opportunity (the admission queue's slow safety resync)."""
        self._relist.set()

    def _run(self) -> None:
        target = self.target
        version = ""
        while not self._stopping.is_set():
            try:
                if not version or self._relist.is_set():
                    self._relist.clear()
                    items, version = k8s.list_with_version(
                        target.api_version, target.kind, target.namespace, target.label_selector
                    )
                    self._on_list(items)
                    self.ready.set()
                for kind, item in k8s.watch_events(
                    target.api_version,
                    target.kind,
                    version,
                    namespace=target.namespace,
                    label_selector=target.label_selector,
                    timeout_seconds=self._watch_seconds,
                ):
                    version = str(item.get("metadata", {}).get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        self._on_event(kind, item)
                    if self._stopping.is_set() or self._relist.is_set():
                        break
            except k8s.ExpiredError as expired:
                # 410 Gone: etcd compacted past our version, or a restarted API server's watch
                # cache starts after it. Said in the log because it is the one path that
                # replaces the whole view, and fault tests look for it there.
                log.info("watch of %s expired (%s); listing again", target.kind, expired)
                version = ""  # list again
            except k8s.ForbiddenError as refusal:
                if not self.ready.is_set():
                    # Without read access there is no view; whoever waits for it must know why.
                    self.refused = str(refusal)
                    self.ready.set()
                    return
                # Refused after it was allowed: a kube-apiserver that has just restarted answers
                # 403 until its RBAC caches have synced (the e2e fault tests see a second of it,
                # even for cluster-admin), and a chart upgrade re-applies the ClusterRole. Giving
                # up here (as before) left the view frozen for the process's life: the pods that
                # finished later never freed their GPUs, and queued jobs waited forever.
                log.warning("watch of %s refused (%s); listing again", target.kind, refusal)
                version = ""
                self._stopping.wait(RETRY_SECONDS)
            except Exception as error:
                log.warning("watch of %s failed (%s); listing again", target.kind, error)
                version = ""
                self._stopping.wait(RETRY_SECONDS)
