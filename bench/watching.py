"""When each of a namespace's PyTorchJobs was first seen, on a watch (the cluster benchmarks)."""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import watch


class PyTorchJobsSeen:
    """A watch on one namespace's PyTorchJobs: when each one was first seen."""

    def __init__(self, custom: Any, namespace: str) -> None:
        self.first_seen: dict[str, float] = {}
        self._stopped = False
        self._custom = custom
        self._namespace = namespace
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(1)  # the watch is established before anything is created

    def _run(self) -> None:
        stream = self._watch.stream(  # type: ignore[no-untyped-call]
            self._custom.list_namespaced_custom_object,
            "kubeflow.org", "v1", self._namespace, "pytorchjobs",
        )  # fmt: skip
        try:
            for event in stream:
                if event["type"] in ("ADDED", "MODIFIED"):
                    name = event["object"]["metadata"]["name"]
                    self.first_seen.setdefault(name, time.monotonic())
        except Exception:  # the connection closes when the benchmark stops the watch
            if not self._stopped:
                raise

    def all_seen(self, names: list[str]) -> bool:
        return all(name in self.first_seen for name in names)

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()  # type: ignore[no-untyped-call]
