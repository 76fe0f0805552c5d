"""What an endpoint pod's package step measured, read from the pod (pure).

The package init container ends with its summary as the termination message, tuning table
included; the pod template's tuning-key annotation says which model and tuning spec it ran
for, so a report from a pod of an older spec is never taken for the current one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from lepton_operator.api.endpoint import EndpointTuningStatus, TuningCandidate
from lepton_operator.builders.endpoint import PACKAGE_CONTAINER, TUNING_KEY_ANNOTATION
from lepton_operator.pod_problems import PodContainersView
from lepton_runtime.contract import PackageSummary, TuningMeasurement, TuningResult


@dataclass(frozen=True)
class TuningReport:
    """One pod's tuning result and the key it was measured for."""

    key: str
    result: TuningResult


def tuning_report(pod: Mapping[str, Any]) -> TuningReport | None:
    """The tuning result of a pod whose package step finished, or None."""
    key = ((pod.get("metadata") or {}).get("annotations") or {}).get(TUNING_KEY_ANNOTATION)
    if not key:
        return None
    status = PodContainersView.model_validate(pod.get("status") or {})
    for container in status.init_container_statuses:
        done = container.state.terminated
        if container.name != PACKAGE_CONTAINER or done is None or done.exit_code != 0:
            continue
        try:
            summary = PackageSummary.model_validate_json(done.message)
        except ValidationError:
            return None  # trimmed or not a summary: nothing to report
        return TuningReport(str(key), summary.tuning) if summary.tuning else None
    return None


def _candidate(measured: TuningMeasurement) -> TuningCandidate:
    settings = measured.settings
    return TuningCandidate(
        max_batch_size=settings.max_batch_size,
        preferred_batch_size=settings.preferred_batch_size,
        max_queue_delay_microseconds=settings.max_queue_delay_microseconds,
        instances=settings.instances,
        model_format=settings.model_format,
        throughput=measured.throughput,
        p50_ms=measured.p50_ms,
        p99_ms=measured.p99_ms,
        within_budget=measured.within_budget,
    )


def tuning_status(report: TuningReport) -> EndpointTuningStatus:
    """The status form of a report."""
    result = report.result
    return EndpointTuningStatus(
        key=report.key,
        chosen=_candidate(result.chosen),
        budget_met=result.budget_met,
        best_p99_ms=result.best_p99_ms,
        seconds=result.seconds,
        strategy=result.strategy,
        grid_size=result.grid_size,
        candidates=[_candidate(m) for m in result.candidates[:64]],
    )


def current_tuning(
    key: str | None,
    previous: EndpointTuningStatus | None,
    reported: TuningReport | None,
) -> EndpointTuningStatus | None:
    """The tuning status for the current model and spec (`key`): a pod's fresh report for
    it, else what status already held for it; nothing for another key."""
    if key is None:
        return None
    if reported is not None and reported.key == key:
        return tuning_status(reported)
    if previous is not None and previous.key == key:
        return previous
    return None
