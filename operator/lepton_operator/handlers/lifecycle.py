"""Operator start-up: Kopf's storage under lepton.ai, the API client, the metrics server."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from prometheus_client import start_http_server

from lepton_operator import k8s
from lepton_operator.handlers.admission import admission_queue
from lepton_operator.handlers.context import settings as operator_settings_from_env

PREFIX = "lepton.ai"


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
    logging.getLogger().setLevel(operator_settings.log_level)
    k8s.connect()
    # The queue's informers list nodes, pods and PyTorchJobs before its first decision.
    admission_queue().start()
    if operator_settings.metrics_port:
        start_http_server(operator_settings.metrics_port, addr=operator_settings.bind_address)


@kopf.on.cleanup()
def stop_admission(**_: Any) -> None:
    admission_queue().stop()
