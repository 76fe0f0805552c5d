"""LeptonCompression -> (once its source succeeded) ConfigMap + PyTorchJob."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from lepton_operator.api.base import API_GROUP, API_VERSION
from lepton_operator.api.compression import LeptonCompression
from lepton_operator.builders.jobs import (
    ResolvedModelSource,
    compression_job_name,
    render_compression_children,
)
from lepton_operator.handlers.admission import Applied, apply_when_admitted, job_ask, queued_as
from lepton_operator.handlers.context import (
    fetch_source,
    instrumented,
    missing_inputs,
    retry_later,
    settings,
)
from lepton_operator.handlers.jobs import refresh_compression_status, report_to
from lepton_operator.resolve import (
    SourceResource,
    cycle_blocker,
    reference_cycle,
    source_blocker,
    source_dataset,
    source_model_uri,
    source_reference,
    source_seed,
)
from lepton_operator.status import Blocker

PLURAL = "leptoncompressions"
COMPRESSION = "LeptonCompression"


def _compression_source_in(namespace: str) -> Callable[[str], str | None]:
    """The compression a compression's source names, if it names one (and exists)."""

    def source_of(name: str) -> str | None:
        found = fetch_source(COMPRESSION, namespace, name)
        if not isinstance(found, LeptonCompression):
            return None
        reference = source_reference(found.spec.source)
        return reference[1] if reference is not None and reference[0] == COMPRESSION else None

    return source_of


def resolve_source(
    compression: LeptonCompression,
) -> tuple[ResolvedModelSource | None, Blocker | None]:
    """The model and data to compress, or why they are not available yet."""
    spec, namespace = compression.spec, compression.metadata.namespace
    reference = source_reference(spec.source)
    found: SourceResource | None = None
    if reference is None:
        model_uri = spec.source.model_uri
        assert model_uri is not None  # the CRD requires exactly one source
    else:
        kind, name = reference
        found = fetch_source(kind, namespace, name)
        blocker = source_blocker(kind, name, namespace, found)
        if blocker is not None and blocker.reason == "WaitingForSource" and kind == COMPRESSION:
            cycle = reference_cycle(compression.metadata.name, _compression_source_in(namespace))
            blocker = cycle_blocker(cycle) if cycle is not None else blocker
        if blocker is not None:
            return None, blocker
        assert found is not None
        model_uri = source_model_uri(found)
    dataset = spec.evaluation.dataset if spec.evaluation is not None else None
    if dataset is None and found is not None:
        dataset = source_dataset(found)
    if dataset is None:
        return None, Blocker(
            "NoEvaluationData",
            "the source names no dataset to measure accuracy on: set spec.evaluation.dataset",
            phase="Failed",
        )
    return ResolvedModelSource(model_uri, dataset, source_seed(found)), None


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL, field="spec")
def reconcile_compression(body: kopf.Body, **_: Any) -> None:
    """Wait for the source, then apply the children and report their state."""
    reconcile_compression_body(dict(body))


def reconcile_compression_body(current: dict[str, Any]) -> None:
    """The reconcile, also run when the PyTorchJob went away (preempted, deleted by hand)."""
    with instrumented("LeptonCompression"):
        compression = LeptonCompression.model_validate(current)
        spec, config = compression.spec, settings()
        source, blocker = resolve_source(compression)
        if source is not None:
            blocker = missing_inputs(
                compression.metadata.namespace,
                [source.model_uri, source.dataset.uri, spec.output.uri],
            )
        child = None
        if source is not None and blocker is None:
            resolved = source
            metadata = compression.metadata
            outcome = apply_when_admitted(
                queued_as(metadata, "LeptonCompression"),
                job_ask(compression_job_name(compression), spec.resources, spec.scheduling),
                owner_uid=metadata.uid,
                render=lambda placement: render_compression_children(
                    compression, resolved, placement, config
                ),
                report=report_to(
                    "LeptonCompression", metadata.namespace, metadata.name, source.model_uri
                ),
            )
            if outcome == "queued":
                return  # the admission queue applies the children and reports
            if isinstance(outcome, Blocker):
                blocker = outcome
            elif isinstance(outcome, Applied):
                child = outcome.child
        refresh_compression_status(
            current, blocker, source.model_uri if source is not None else None, child=child
        )
        if blocker is not None:
            raise retry_later(blocker)
