"""Prometheus collectors of the operator (prefix lepton_, low-cardinality labels only)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_SECONDS = Histogram(
    "lepton_reconcile_duration_seconds",
    "Time one reconcile of a Lepton resource took.",
    ["kind"],
)
RECONCILE_ERRORS = Counter(
    "lepton_reconcile_errors_total",
    "Reconciles that raised an unexpected error (they are retried with backoff).",
    ["kind"],
)
PHASE_TRANSITIONS = Counter(
    "lepton_phase_transitions_total",
    "Phase changes of Lepton resources, by the phase entered.",
    ["kind", "phase"],
)
POOL_GPUS = Gauge(
    "lepton_pool_gpus",
    "GPUs of each node pool as the admission queue sees them: capacity (allocatable), allocated "
    "(requested by bound, unfinished pods of any owner), reserved (admitted Lepton jobs' pods "
    "not bound yet), free, and fragmented (free on nodes already in use).",
    ["pool", "gpu_product", "state"],
)
ADMISSIONS = Counter(
    "lepton_admissions_total",
    "Admission decisions for GPU jobs: Admitted, or the reason a job waits (counted when it "
    "changes).",
    ["kind", "outcome"],
)
QUEUE_LENGTH = Gauge(
    "lepton_admission_queue_length",
    "GPU jobs waiting in the admission queue after its last pass, by the pool they asked for "
    "(auto: any).",
    ["pool"],
)
PREEMPTIONS = Counter(
    "lepton_preemptions_total",
    "Jobs evicted whole so that a higher-priority gang fits, by the evicted job's kind.",
    ["kind"],
)
DECISION_SECONDS = Histogram(
    "lepton_admission_pass_duration_seconds",
    "Time one pass of admission decisions over the whole queue took (in memory, no I/O).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
WAIT_SECONDS = Histogram(
    "lepton_admission_wait_seconds",
    "Time from a GPU job's creation to its admission.",
    ["kind"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
)
