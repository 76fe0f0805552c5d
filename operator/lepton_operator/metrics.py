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
    "GPUs of each node pool as last seen at admission: capacity (allocatable) and allocated "
    "(requested by bound, unfinished pods of any owner).",
    ["pool", "gpu_product", "state"],
)
ADMISSIONS = Counter(
    "lepton_admissions_total",
    "Admission decisions for GPU jobs: Admitted, or the reason a job waits.",
    ["outcome"],
)
