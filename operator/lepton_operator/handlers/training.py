"""LeptonTrainingJob -> ConfigMap + PyTorchJob."""

from __future__ import annotations

from typing import Any

import kopf

from lepton_operator.api.base import API_GROUP, API_VERSION
from lepton_operator.api.training import LeptonTrainingJob
from lepton_operator.builders.jobs import render_training_children, training_job_name
from lepton_operator.handlers.admission import Applied, apply_when_admitted, job_ask, queued_as
from lepton_operator.handlers.context import (
    instrumented,
    missing_inputs,
    retry_later,
    settings,
)
from lepton_operator.handlers.jobs import refresh_training_status, report_to
from lepton_operator.status import Blocker

PLURAL = "leptontrainingjobs"


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL, field="spec")
def reconcile_training_job(body: kopf.Body, **_: Any) -> None:
    """Apply the children the spec asks for, then report their state."""
    reconcile_training_body(dict(body))


def reconcile_training_body(current: dict[str, Any]) -> None:
    """The reconcile, also run when the PyTorchJob went away (preempted, deleted by hand)."""
    with instrumented("LeptonTrainingJob"):
        job = LeptonTrainingJob.model_validate(current)
        spec, config, meta = job.spec, settings(), job.metadata
        blocker = missing_inputs(meta.namespace, [spec.dataset.uri, spec.output.uri])
        child = None
        if blocker is None:
            outcome = apply_when_admitted(
                queued_as(meta, "LeptonTrainingJob"),
                job_ask(training_job_name(job), spec.resources, spec.scheduling),
                owner_uid=meta.uid,
                render=lambda placement: render_training_children(job, placement, config),
                report=report_to("LeptonTrainingJob", meta.namespace, meta.name),
            )
            if outcome == "queued":
                return  # the admission queue applies the children and reports
            if isinstance(outcome, Blocker):
                blocker = outcome
            elif isinstance(outcome, Applied):
                child = outcome.child
        refresh_training_status(current, blocker, child=child)
        if blocker is not None:
            raise retry_later(blocker)
