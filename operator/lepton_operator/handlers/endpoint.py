"""LeptonEndpoint -> (once its source succeeded) Triton Deployment + Service (+ HPA, PDB)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from lepton_operator import k8s
from lepton_operator.api.base import API_GROUP, API_VERSION
from lepton_operator.api.endpoint import EndpointStatus, LeptonEndpoint
from lepton_operator.builders.endpoint import (
    MODEL_VERSION,
    ResolvedEndpointSource,
    absent_optional_kinds,
    grpc_address,
    minimum_replicas,
    model_name,
    pinned_choice,
    render_endpoint_children,
    render_package_config_map,
    service_url,
    tuning_key,
)
from lepton_operator.handlers.admission import Ask, apply_when_admitted, queued_as
from lepton_operator.handlers.context import (
    fetch,
    fetch_source,
    instrumented,
    missing_inputs,
    now,
    publish_status,
    retry_later,
    settings,
    stuck_pod,
)
from lepton_operator.observe import observe_deployment
from lepton_operator.resolve import (
    source_blocker,
    source_model_uri,
    source_output_secret,
    source_reference,
)
from lepton_operator.services.tuning_results import TUNING_RESULTS
from lepton_operator.status import Blocker, clipped, derive_endpoint_core, with_tuning_outcome
from lepton_operator.tuning_reports import current_tuning

PLURAL = "leptonendpoints"
OPTIONAL_API_VERSIONS = {
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "PodDisruptionBudget": "policy/v1",
}


def resolve_source(
    endpoint: LeptonEndpoint,
) -> tuple[ResolvedEndpointSource | None, Blocker | None]:
    source = endpoint.spec.source
    reference = source_reference(source)
    if reference is None:
        assert source.model_uri is not None  # the CRD requires exactly one source
        return ResolvedEndpointSource(source.model_uri), None
    kind, name = reference
    found = fetch_source(kind, endpoint.metadata.namespace, name)
    blocker = source_blocker(kind, name, endpoint.metadata.namespace, found)
    if blocker is not None or found is None:
        return None, blocker
    return ResolvedEndpointSource(source_model_uri(found), source_output_secret(found)), None


def refresh_endpoint_status(
    body: dict[str, Any],
    blocker: Blocker | None = None,
    model_uri: str | None = None,
    *,
    child: dict[str, Any] | None = None,
) -> None:
    """Recompute the endpoint's status from its Deployment (`child`, or read here)."""
    endpoint = LeptonEndpoint.model_validate(body)
    previous = endpoint.status
    meta = endpoint.metadata
    deployment = None
    if blocker is None:
        deployment = child or k8s.get("apps/v1", "Deployment", meta.namespace, meta.name)
    deployment_key = ("Deployment", meta.namespace, meta.name)
    from_source = "the source's spec.output.secretRef"
    stuck = stuck_pod(
        "LeptonEndpoint",
        meta.namespace,
        meta.name,
        child=deployment_key,
        fields={},
        other_secrets=from_source,
    )
    observation = observe_deployment(deployment, blocker, stuck)
    core = derive_endpoint_core(
        previous.conditions if previous else [], meta.generation, observation, now()
    )
    served_uri = model_uri or (previous.model_uri if previous else None)
    key = tuning_key(endpoint, served_uri) if served_uri else None
    tuning = current_tuning(
        key,
        previous.tuning if previous else None,
        TUNING_RESULTS.get(("LeptonEndpoint", meta.namespace, meta.name), key),
    )
    budget = endpoint.spec.tuning.latency_budget_ms if endpoint.spec.tuning else None
    core = with_tuning_outcome(core, tuning, budget, meta.generation, now())
    domain = settings().cluster_domain
    serving = observation.exists
    status = EndpointStatus(
        phase=core.phase,
        conditions=core.conditions,
        observed_generation=meta.generation,
        message=clipped(core.message),
        url=service_url(endpoint, domain) if serving else None,
        grpc_address=grpc_address(endpoint, domain) if serving else None,
        replicas=observation.desired_replicas if serving else None,
        ready_replicas=observation.ready_replicas if serving else None,
        model_name=model_name(endpoint),
        model_version=MODEL_VERSION,
        model_uri=served_uri,
        pool=observation.pool or (previous.pool if previous else None),
        queue_position=blocker.queue_position if blocker is not None else None,
        tuning=tuning,
    )
    publish_status(body, previous, status, core.phase)
    if tuning is not None and served_uri and (previous is None or previous.tuning != tuning):
        pin_tuning(endpoint.model_copy(update={"status": status}), served_uri)


def pin_tuning(endpoint: LeptonEndpoint, model_uri: str) -> None:
    """Write a new tuning choice into the package ConfigMap: replicas started from now on
    serve it without measuring again. The pod template does not change (its digest covers
    the spec, not the choice), so no pod restarts for it."""
    choice = pinned_choice(endpoint, model_uri)
    if choice is None or endpoint.status is None:
        return
    source = ResolvedEndpointSource(model_uri)
    k8s.apply(render_package_config_map(endpoint, source, settings(), choice))


def endpoint_ask(endpoint: LeptonEndpoint) -> Ask:
    """A GPU endpoint is admitted as a gang of its (minimum) replicas; replicas an autoscaler
    adds later go to the same pool, placed by kube-scheduler."""
    spec = endpoint.spec
    return Ask(
        "apps/v1", "Deployment", endpoint.metadata.name, minimum_replicas(endpoint),
        spec.resources.gpus, spec.resources.gpu_type, spec.scheduling,
    )  # fmt: skip


def report_endpoint(namespace: str, name: str, model_uri: str) -> Callable[[Blocker | None], None]:
    """How the admission queue publishes a queued endpoint's status."""

    def report(blocker: Blocker | None) -> None:
        body = fetch("LeptonEndpoint", namespace, name)
        if body is not None:
            refresh_endpoint_status(body, blocker, model_uri)

    return report


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL, field="spec")
def reconcile_endpoint(body: kopf.Body, **_: Any) -> None:
    """Wait for the source and for GPUs, then apply the serving stack and report its state."""
    with instrumented("LeptonEndpoint"):
        current = dict(body)
        endpoint = LeptonEndpoint.model_validate(current)
        config, meta = settings(), endpoint.metadata
        source, blocker = resolve_source(endpoint)
        if source is not None:
            blocker = missing_inputs(meta.namespace, [source.model_uri])
        child = None
        if source is not None and blocker is None:
            resolved = source
            outcome = apply_when_admitted(
                queued_as(meta, "LeptonEndpoint"),
                endpoint_ask(endpoint),
                owner_uid=meta.uid,
                render=lambda placement: render_endpoint_children(
                    endpoint, resolved, placement, config
                ),
                report=report_endpoint(meta.namespace, meta.name, source.model_uri),
            )
            if outcome == "queued":
                return  # the admission queue applies the children and reports
            if isinstance(outcome, Blocker):
                blocker = outcome
            else:
                child = outcome.child
                for kind in absent_optional_kinds(endpoint):
                    k8s.delete(OPTIONAL_API_VERSIONS[kind], kind, meta.namespace, meta.name)
        model_uri = source.model_uri if source else None
        refresh_endpoint_status(current, blocker, model_uri, child=child)
        if blocker is not None:
            raise retry_later(blocker)
