"""LeptonTrainingJob -> ConfigMap + PyTorchJob."""

from __future__ import annotations

from typing import Any

import kopf

from lepton_operator.api.base import API_GROUP, API_VERSION
from lepton_operator.api.training import LeptonTrainingJob
from lepton_operator.builders.jobs import render_training_children, training_job_name
from lepton_operator.handlers.admission import apply_when_admitted, queued_as
from lepton_operator.handlers.context import (
    instrumented,
    missing_inputs,
    retry_later,
    settings,
)
from lepton_operator.handlers.jobs import refresh_training_status, report_to

PLURAL = "leptontrainingjobs"


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL, field="spec")
def reconcile_training_job(body: kopf.Body, **_: Any) -> None:
    """Apply the children the spec asks for, then report their state."""
    with instrumented("LeptonTrainingJob"):
        current = dict(body)
        job = LeptonTrainingJob.model_validate(current)
        spec, config = job.spec, settings()
        blocker = missing_inputs(
            job.metadata.namespace,
            [spec.dataset.uri, spec.output.uri],
            [spec.dataset.secret_ref, spec.output.secret_ref],
        )
        if blocker is None:
            applied = apply_when_admitted(
                queued_as(job.metadata, "LeptonTrainingJob"),
                training_job_name(job),
                spec.resources,
                spec.scheduling,
                render=lambda placement: render_training_children(job, placement, config),
                report=report_to("LeptonTrainingJob", job.metadata.namespace, job.metadata.name),
            )
            if not applied:
                return  # queued: the admission queue applies the children and reports
        refresh_training_status(current, blocker)
        if blocker is not None:
            raise retry_later(blocker)
