"""LeptonEndpoint -> (once its source succeeded) Triton Deployment + Service (+ HPA, PDB)."""

from __future__ import annotations

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
    model_name,
    render_endpoint_children,
    service_url,
)
from lepton_operator.handlers.context import (
    fetch_source,
    instrumented,
    missing_inputs,
    now,
    publish_status,
    retry_later,
    settings,
)
from lepton_operator.observe import observe_deployment
from lepton_operator.resolve import source_blocker, source_model_uri, source_reference
from lepton_operator.scheduling.placement import requested_placement
from lepton_operator.status import Blocker, derive_endpoint_core

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
    return ResolvedEndpointSource(source_model_uri(found), found.spec.output.secret_ref), None


def refresh_endpoint_status(
    body: dict[str, Any], blocker: Blocker | None = None, model_uri: str | None = None
) -> None:
    endpoint = LeptonEndpoint.model_validate(body)
    previous = endpoint.status
    meta = endpoint.metadata
    deployment = None if blocker else k8s.get("apps/v1", "Deployment", meta.namespace, meta.name)
    observation = observe_deployment(deployment, blocker)
    core = derive_endpoint_core(
        previous.conditions if previous else [], meta.generation, observation, now()
    )
    domain = settings().cluster_domain
    serving = observation.exists
    status = EndpointStatus(
        phase=core.phase,
        conditions=core.conditions,
        observed_generation=meta.generation,
        message=core.message,
        url=service_url(endpoint, domain) if serving else None,
        grpc_address=grpc_address(endpoint, domain) if serving else None,
        replicas=observation.desired_replicas if serving else None,
        ready_replicas=observation.ready_replicas if serving else None,
        model_name=model_name(endpoint),
        model_version=MODEL_VERSION,
        model_uri=model_uri or (previous.model_uri if previous else None),
        pool=previous.pool if previous else None,
    )
    publish_status(body, previous, status, core.phase)


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL, field="spec")
def reconcile_endpoint(body: kopf.Body, **_: Any) -> None:
    """Wait for the source, then apply the serving stack and report its state."""
    with instrumented("LeptonEndpoint"):
        current = dict(body)
        endpoint = LeptonEndpoint.model_validate(current)
        spec, config, meta = endpoint.spec, settings(), endpoint.metadata
        source, blocker = resolve_source(endpoint)
        if source is not None:
            blocker = missing_inputs(meta.namespace, [source.model_uri], [source.secret_ref])
        if source is not None and blocker is None:
            placement = requested_placement(
                spec.scheduling.node_pool,
                spec.resources.gpu_type,
                spec.resources.gpus,
                config.pool_label,
                config.gpu_product_label,
            )
            for manifest in render_endpoint_children(endpoint, source, placement, config):
                k8s.apply(manifest)
            for kind in absent_optional_kinds(endpoint):
                k8s.delete(OPTIONAL_API_VERSIONS[kind], kind, meta.namespace, meta.name)
        refresh_endpoint_status(current, blocker, source.model_uri if source else None)
        if blocker is not None:
            raise retry_later(blocker)
