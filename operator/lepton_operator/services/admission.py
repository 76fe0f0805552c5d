"""The GPU admission queue: one owner decides, one pass at a time, on one watch-fed view.

Handlers only enqueue (`AdmissionQueue.submit`). The owner is a single thread: it waits until
every informer has listed once (after a restart the view, and the reservations derived from
the PyTorchJobs that exist, are complete before the first decision), then runs a pass of
`scheduling.queue.plan_pass` whenever the view changes (a pod finished or went, a node came,
changed or left, a PyTorchJob or an endpoint's Deployment appeared or went), when a job is
enqueued, and on a slow safety resync. Within a pass each admission's GPUs are reserved before
the next decision, and a job the owner admitted holds an "assumed" reservation until its child
(PyTorchJob, Deployment) shows up in the view, so no two decisions ever count the same GPUs.

An admitted job's children are applied by the owner (the function the handler enqueued); its
status then follows from the child's events. A waiting job's status (Queued, the reason,
its position) is published off the owner's thread (services/status_publisher.py), only when
it changed, and a position that alone moved at most every `admission_position_refresh_seconds`.

With preemption on (`admission_preemption`), a gang that fits only by evicting whole jobs of
lower priority evicts them (the `evict` function the handlers provide: delete the PyTorchJob,
say so in the job's status) and is nominated for that pool, which is held for it until the
victims' GPUs are free and it starts.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from lepton_operator.builders.meta import MANAGED_BY, POOL_LABEL
from lepton_operator.builders.pytorchjob import PYTORCHJOB_API_VERSION
from lepton_operator.metrics import (
    ADMISSIONS,
    DECISION_SECONDS,
    POOL_GPUS,
    PREEMPTIONS,
    QUEUE_LENGTH,
    WAIT_SECONDS,
)
from lepton_operator.scheduling.admission import Admitted, Reservation
from lepton_operator.scheduling.inventory import GpuNode, InventoryLabels, build_inventory
from lepton_operator.scheduling.placement import Placement, pool_placement
from lepton_operator.scheduling.preemption import RunningGang
from lepton_operator.scheduling.queue import (
    Preempting,
    QueuedGang,
    QueuedJob,
    plan_pass,
    queue_positions,
    reservation_for,
)
from lepton_operator.scheduling.reservations import (
    deployment_reservations,
    reservations_from,
    running_gangs,
)
from lepton_operator.services.cluster_view import ClusterView, Snapshot
from lepton_operator.services.informer import Informer, WatchTarget
from lepton_operator.services.status_publisher import StatusKey, StatusPublisher
from lepton_operator.settings import POOL_LABEL_FALLBACKS, OperatorSettings
from lepton_operator.status import Blocker

log = logging.getLogger(__name__)
# An admitted job's PyTorchJob normally reaches the view within a second; if its apply got
# lost, the assumed reservation lapses after this and the GPUs count as free again.
ASSUMED_SECONDS = 120.0
RETRY_SECONDS = 2.5  # first backoff after the API server refused a job's children
# Changes arriving within this long of the first are decided on in one pass.
BATCH_SECONDS = 0.05
# A gang that preempted waits this long for its victims' pods to go before it may preempt again.
NOMINATION_SECONDS = 120.0
ChildKey = tuple[str, str, str]  # (kind, namespace, name) of the child admission creates
Evict = Callable[[RunningGang, QueuedGang], None]


@dataclass
class QueueEntry:
    """A queued job: what it asks for and what to do once decided."""

    gang: QueuedGang
    child_name: str  # the PyTorchJob (or Deployment) admission creates
    start: Callable[[Placement], None]  # apply the children where admission placed them
    report: Callable[[Blocker], None]  # publish why it waits (Queued, reason, position)
    fallback: Placement  # where it goes when there is nothing to admit against
    gpu_type: str | None = None
    child_kind: str = "PyTorchJob"
    reported: Blocker | None = field(default=None, compare=False)
    reported_key: StatusKey | None = None  # the reported status apart from its position
    published_at: float = 0.0  # when it was reported (the queue's clock)
    offered_key: StatusKey | None = None  # the newest one handed to the publisher
    failures: int = 0  # applies the API server refused, in a row
    retry_at: float = 0.0  # not decided on again before this (the queue's clock)
    # The submitting handler's context: Kopf keeps what `kopf.event` needs (its settings, its
    # event queue) in context variables, and the owner posts Events when it reports.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)

    @property
    def job(self) -> QueuedJob:
        return self.gang.job

    def run(self, function: Callable[..., None], *args: Any) -> None:
        """Call `function` in (a copy of) the submitting handler's context: the owner and the
        status publisher may both use it at once, and one Context cannot be entered twice."""
        self.context.copy().run(function, *args)

    def publish(self, blocker: Blocker, key: StatusKey, now: float) -> None:
        """Report the blocker unless it is what was reported last; never raise."""
        if blocker == self.reported:
            return
        try:
            self.run(self.report, blocker)
        except Exception:
            job = self.gang.job
            log.exception("status of %s/%s not published; retried", job.namespace, job.name)
            return
        self.reported, self.reported_key, self.published_at = blocker, key, now


class AdmissionQueue:
    """The single owner of GPU admission decisions in this operator process."""

    def __init__(
        self,
        config: OperatorSettings,
        clock: Callable[[], float] = time.monotonic,
        evict: Evict | None = None,
    ):
        self._config = config
        self._clock = clock
        self._evict = evict if config.admission_preemption else None
        self._labels = InventoryLabels(
            pool_labels=(config.pool_label, *POOL_LABEL_FALLBACKS),
            gpu_product_label=config.gpu_product_label,
            gpu_resource=config.gpu_resource,
        )
        self.view = ClusterView(config.gpu_resource)
        self._informers = [self._informer(target) for target in self._targets()]
        self._entries: dict[QueuedJob, QueueEntry] = {}
        self._assumed: dict[ChildKey, tuple[Reservation, float]] = {}
        self._nominated: dict[QueuedJob, tuple[str, float]] = {}  # job -> (pool, until)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="admission", daemon=True)
        self.statuses = StatusPublisher(
            clock,
            config.admission_position_refresh_seconds,
            config.admission_positions_per_second,
        )
        self.refused: str | None = None  # why there is no view (RBAC), if there is none

    # ------------------------------------------------------------------ what handlers call

    def start(self) -> None:
        for informer in self._informers:
            informer.start()
        self.statuses.start()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self.statuses.stop()
        for informer in self._informers:
            informer.stop()

    def submit(self, entry: QueueEntry) -> None:
        """Enqueue (or update) a job; the owner decides on its next pass, moments later."""
        with self._lock:
            previous = self._entries.get(entry.gang.job)
            if previous is not None:  # same job again (a retry, a spec change): keep its wait
                entry.gang = replace(entry.gang, queued_at=previous.gang.queued_at)
                entry.reported, entry.reported_key = previous.reported, previous.reported_key
                entry.published_at, entry.offered_key = previous.published_at, previous.offered_key
                entry.failures, entry.retry_at = previous.failures, previous.retry_at
            self._entries[entry.gang.job] = entry
        self._wake.set()

    def forget(self, job: QueuedJob) -> None:
        """The job was deleted, or no longer needs admission."""
        with self._lock:
            self._entries.pop(job, None)
            self._nominated.pop(job, None)
        self.statuses.discard(job)

    def queued(self) -> list[QueuedJob]:
        with self._lock:
            return list(self._entries)

    # ------------------------------------------------------------------ the owner

    def _targets(self) -> list[WatchTarget]:
        managed = f"app.kubernetes.io/managed-by={MANAGED_BY},{POOL_LABEL}"
        namespaces: list[str | None] = [*self._config.namespaces] or [None]
        children = [
            WatchTarget(api_version, kind, namespace, managed)
            for namespace in namespaces
            for api_version, kind in (
                (PYTORCHJOB_API_VERSION, "PyTorchJob"),
                ("apps/v1", "Deployment"),
            )
        ]
        return [WatchTarget("v1", "Node"), WatchTarget("v1", "Pod"), *children]

    def _informer(self, target: WatchTarget) -> Informer:
        return Informer(
            target,
            lambda items: self.observed_list(target.kind, items, target.namespace),
            lambda event, item: self.observed(target.kind, event, item),
        )

    def observed_list(
        self, kind: str, items: list[dict[str, Any]], namespace: str | None = None
    ) -> None:
        """An informer listed `kind` (in one namespace, with one informer per namespace)."""
        self.view.replace(kind, items, namespace)
        for item in items:
            self._seen(kind, item)
        self._wake.set()

    def observed(self, kind: str, event: str, item: dict[str, Any]) -> None:
        """An informer saw one change."""
        changed = self.view.apply(kind, event, item)
        self._seen(kind, item)
        if changed:  # capacity may have moved: the next pass looks again
            self._wake.set()

    def _seen(self, kind: str, item: dict[str, Any]) -> None:
        """A child in the view reserves for itself: its assumed reservation ends."""
        if kind in ("PyTorchJob", "Deployment") and self._assumed:
            metadata = item.get("metadata", {})
            with self._lock:
                self._assumed.pop((kind, metadata.get("namespace"), metadata.get("name")), None)

    def _run(self) -> None:
        for informer in self._informers:
            informer.ready.wait()
            if informer.refused is not None and self.refused is None:
                self.refused = informer.refused
                log.warning("GPU admission is off: %s", informer.refused)
        resync = self._config.admission_resync_seconds
        next_resync = self._clock() + resync
        while not self._stopping.is_set():
            woken = self._wake.wait(
                timeout=max(min(next_resync, self._next_retry()) - self._clock(), 0.1)
            )
            if woken:  # one change comes with others (a pod bound, then running): one pass
                self._stopping.wait(BATCH_SECONDS)
            self._wake.clear()
            if self._stopping.is_set():
                return
            if self._clock() >= next_resync:
                for informer in self._informers:
                    informer.relist()
                next_resync = self._clock() + resync
            try:
                self._pass()
            except Exception:
                log.exception("admission pass failed; the next change retries it")

    def _next_retry(self) -> float:
        with self._lock:
            return min((e.retry_at for e in self._entries.values() if e.retry_at), default=1e18)

    def _pass(self) -> None:
        snapshot = self.view.snapshot()
        inventory = build_inventory(snapshot.nodes, snapshot.pods, self._labels)
        config = self._config
        # What the children in the view hold; derived once per pass (it reads every pod).
        jobs = reservations_from(
            snapshot.pytorchjobs, snapshot.pods, POOL_LABEL, config.gpu_product_label,
            config.gpu_resource,
        )  # fmt: skip
        endpoints = deployment_reservations(
            snapshot.deployments, snapshot.pods, POOL_LABEL, config.gpu_product_label,
            config.gpu_resource,
        )  # fmt: skip
        running = None
        if self._evict is not None:
            running = running_gangs(
                snapshot.pytorchjobs, snapshot.pods, jobs, POOL_LABEL, config.gpu_resource
            )
        derived = [*jobs, *endpoints]
        try:
            self._decide(snapshot, inventory, derived, running)
        finally:  # the gauges show the reservations this pass made, too
            _export_pool_metrics(inventory, [*derived, *self._assumed_reservations()])
            _export_queue_metrics(self.queued_gangs())

    def queued_gangs(self) -> list[QueuedGang]:
        with self._lock:
            return [entry.gang for entry in self._entries.values()]

    def _decide(
        self,
        snapshot: Snapshot,
        inventory: list[GpuNode],
        derived: list[Reservation],
        running: list[RunningGang] | None,
    ) -> None:
        reservations = [*derived, *self._assumed_reservations()]
        entries = self._due(snapshot)
        if not entries:
            return
        if self.refused is not None or not inventory:
            # Nothing to decide against: kube-scheduler alone places the job.
            for entry in entries:
                self._start(entry, entry.fallback, None)
            return
        started = time.perf_counter()
        decisions = plan_pass(
            [e.gang for e in entries],
            inventory,
            reservations,
            self._clock(),
            self._config.admission_starvation_seconds,
            nominated=self._nominations(),
            running=running,
        )
        DECISION_SECONDS.observe(time.perf_counter() - started)
        by_job = {entry.gang.job: entry for entry in entries}
        positions = queue_positions(decisions)
        for gang, decision in decisions:
            entry = by_job[gang.job]
            if isinstance(decision, Admitted):
                log.info(
                    "admitted %s/%s to pool %s", gang.job.namespace, gang.job.name, decision.pool
                )
                ADMISSIONS.labels(kind=gang.job.kind, outcome="Admitted").inc()
                WAIT_SECONDS.labels(kind=gang.job.kind).observe(
                    max(self._clock() - gang.queued_at, 0.0)
                )
                placement = pool_placement(
                    decision.pool,
                    decision.pool_label,
                    entry.gpu_type,
                    gang.request.gpus_per_worker,
                    self._config.gpu_product_label,
                )
                if not self._start(entry, placement, reservation_for(gang, decision)):
                    # The decisions after this one counted its GPUs as taken: decide again
                    # without it (it retries after a backoff).
                    self._wake.set()
                    return
                continue
            if isinstance(decision, Preempting):
                self._preempt(entry, decision)
            position = positions[gang.job]
            blocker = Blocker(
                decision.reason,
                f"{decision.message} (number {position} of {len(positions)} queued)",
                phase="Queued",
                queue_position=position,
            )
            key = (decision.reason, decision.message)
            if key != entry.offered_key:  # a new reason, not only a new position
                log.info("%s/%s waits: %s", gang.job.namespace, gang.job.name, blocker.message)
                ADMISSIONS.labels(kind=gang.job.kind, outcome=decision.reason).inc()
                entry.offered_key = key
            if blocker != entry.reported:
                self.statuses.offer(entry, blocker, key)
            else:  # back where it was reported: a pending newer position is no news
                self.statuses.discard(gang.job)

    def _preempt(self, entry: QueueEntry, decision: Preempting) -> None:
        """Evict the victims (whole jobs) and nominate the gang for the pool they free."""
        gang, preemption = entry.gang, decision.preemption
        with self._lock:
            self._nominated[gang.job] = (preemption.pool, self._clock() + NOMINATION_SECONDS)
        for victim in preemption.victims:
            log.info(
                "%s/%s preempts %s %s/%s in pool %s", gang.job.namespace, gang.job.name,
                victim.owner_kind, victim.namespace, victim.owner_name, preemption.pool,
            )  # fmt: skip
            assert self._evict is not None  # running gangs are only listed when it is set
            try:
                entry.run(self._evict, victim, gang)
            except Exception:  # its PyTorchJob stays; the nomination lapses, a pass retries
                log.exception("evicting %s/%s failed", victim.namespace, victim.child)
                continue
            PREEMPTIONS.labels(kind=victim.owner_kind).inc()

    def _nominations(self) -> dict[QueuedGang, str]:
        """Gangs that preempted and wait for the GPUs they freed (lapsed ones dropped)."""
        now = self._clock()
        with self._lock:
            for job, (_, until) in list(self._nominated.items()):
                if now > until or job not in self._entries:
                    del self._nominated[job]
            return {self._entries[job].gang: pool for job, (pool, _) in self._nominated.items()}

    def _due(self, snapshot: Snapshot) -> list[QueueEntry]:
        """The entries to decide on now: not backing off, and not admitted already.

        A handler runs at least once and may enqueue a job again just after the owner admitted
        it; its child (or the assumed reservation) says so, and it leaves the queue.
        """
        existing: set[ChildKey] = {
            (kind, child.metadata.namespace, child.metadata.name)
            for kind, children in (
                ("PyTorchJob", snapshot.pytorchjobs),
                ("Deployment", snapshot.deployments),
            )
            for child in children
        }
        now = self._clock()
        with self._lock:
            existing |= set(self._assumed)
            for job, entry in list(self._entries.items()):
                if (entry.child_kind, job.namespace, entry.child_name) in existing:
                    del self._entries[job]
                    self._nominated.pop(job, None)
            return [e for e in self._entries.values() if e.retry_at <= now]

    def _assumed_reservations(self) -> list[Reservation]:
        """What jobs admitted here hold until their PyTorchJob is seen (lapsed ones dropped)."""
        now = self._clock()
        with self._lock:
            for key, (_, deadline) in list(self._assumed.items()):
                if now > deadline:
                    del self._assumed[key]
            return [reservation for reservation, _ in self._assumed.values()]

    def _start(self, entry: QueueEntry, placement: Placement, held: Reservation | None) -> bool:
        """Apply the entry's children; False (and a backoff) when the API server refused."""
        job = entry.gang.job
        key = (entry.child_kind, job.namespace, entry.child_name)
        if held is not None:
            # Before the apply: the PyTorchJob's own watch event may arrive before it returns.
            with self._lock:
                self._assumed[key] = (held, self._clock() + ASSUMED_SECONDS)
        try:
            entry.run(entry.start, placement)
        except Exception as error:  # reported in the job's status, retried on the next pass
            log.warning("children of %s/%s failed: %s", job.namespace, job.name, error)
            with self._lock:
                self._assumed.pop(key, None)
                entry.failures += 1
                entry.retry_at = self._clock() + min(RETRY_SECONDS * 2**entry.failures, 300.0)
            rejected = Blocker("ChildrenRejected", f"creating the children failed: {error}")
            entry.offered_key = (rejected.reason, rejected.message)
            self.statuses.offer(entry, rejected, entry.offered_key)
            return False
        with self._lock:
            if self._entries.get(job) is entry:
                del self._entries[job]
            self._nominated.pop(job, None)
        self.statuses.discard(job)
        return True


def _export_queue_metrics(gangs: list[QueuedGang]) -> None:
    """Waiting jobs per pool asked for ("auto" when the policy chooses)."""
    counts: dict[str, int] = {}
    for gang in gangs:
        pool = gang.request.pool or "auto"
        counts[pool] = counts.get(pool, 0) + 1
    QUEUE_LENGTH.clear()
    for pool, waiting in counts.items():
        QUEUE_LENGTH.labels(pool=pool).set(waiting)


def _export_pool_metrics(inventory: list[GpuNode], reservations: list[Reservation]) -> None:
    """Per pool: capacity, allocated (bound pods), reserved (admitted, not bound yet), free, and
    fragmented: free GPUs on nodes already in use, which no whole-node worker can take."""
    states: dict[tuple[str, str], dict[str, int]] = {}
    for node in inventory:
        pool = states.setdefault(
            (node.pool, node.gpu_product or ""),
            dict.fromkeys(("capacity", "allocated", "reserved", "free", "fragmented"), 0),
        )
        pool["capacity"] += node.allocatable
        pool["allocated"] += min(node.used, node.allocatable)
        pool["free"] += node.free
        if node.used > 0:
            pool["fragmented"] += node.free
    for reservation in reservations:
        for (pool_name, _), pool in states.items():
            if pool_name == reservation.pool:
                held = reservation.workers * reservation.gpus_per_worker
                pool["reserved"] += held
                pool["free"] = max(pool["free"] - held, 0)
                break
    for (pool_name, product), pool in states.items():
        for state, gpus in pool.items():
            POOL_GPUS.labels(pool=pool_name, gpu_product=product, state=state).set(gpus)
