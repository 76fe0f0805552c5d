"""Operator start-up: Kopf's storage under lepton.ai, the API client, the metrics server."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from prometheus_client import start_http_server

from lepton_operator import k8s
from lepton_operator.builders.meta import MANAGED_SELECTOR
from lepton_operator.handlers.admission import admission_queue
from lepton_operator.handlers.context import settings as operator_settings_from_env
from lepton_operator.handlers.refresh import status_refresh_queue
from lepton_operator.handlers.search import trial_store

PREFIX = "lepton.ai"
MANAGED_LABEL_SELECTOR = ",".join(f"{key}={value}" for key, value in MANAGED_SELECTOR.items())


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    operator_settings = operator_settings_from_env()
    # Kopf's bookkeeping lives under our own prefix, not kopf.zalando.org.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "lepton-operator"
    # Kopf filters by labels in the operator; these selectors make the API server do it, so
    # that the pods, PyTorchJobs and Deployments of everyone else never reach this process.
    for plural in ("pods", "pytorchjobs", "deployments"):
        settings.watching.label_selectors[plural] = MANAGED_LABEL_SELECTOR
    logging.getLogger().setLevel(operator_settings.log_level)
    k8s.connect()
    # The queue's informers list nodes, pods and PyTorchJobs before its first decision.
    admission_queue().start()
    status_refresh_queue().start()
    trial_store().start()
    if operator_settings.metrics_port:
        start_http_server(operator_settings.metrics_port, addr=operator_settings.bind_address)


@kopf.on.cleanup()
def stop_queues(**_: Any) -> None:
    admission_queue().stop()
    status_refresh_queue().stop()
    trial_store().stop()
