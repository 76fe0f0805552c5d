"""One schema, one truth: what the CRD lets in, the operator's models take, and the other way round.

Manifests are generated from each CRD's own schema (e2e/schema_manifests.py), some conforming,
some with one thing wrong. The real API server decides whether it accepts each one (a
server-side dry run with strict field validation, as `kubectl apply` sends it); Lepton's own
validation (`lepton validate`: the pydantic models, then the CRDs' CEL rules) must decide the
same, and the operator's model must read whatever the API server stored. For every manifest
the API server accepts, the builders render the children the operator would apply, and the
API server must accept those too (dry runs again, through the training operator's PyTorchJob
webhook as well): nothing it lets in may turn into a child that it then refuses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from e2e.lepton_resources import GROUP, PLURALS, VERSION
from e2e.schema_manifests import conforming, near_miss, spec_schema
from lepton_operator.api.common import DatasetSpec
from lepton_operator.api.compression import LeptonCompression
from lepton_operator.api.endpoint import LeptonEndpoint
from lepton_operator.api.training import LeptonTrainingJob
from lepton_operator.api.validation import validate_manifest
from lepton_operator.builders.endpoint import ResolvedEndpointSource, render_endpoint_children
from lepton_operator.builders.jobs import (
    ResolvedModelSource,
    render_compression_children,
    render_training_children,
)
from lepton_operator.k8s import FIELD_MANAGER, apply_body
from lepton_operator.scheduling.placement import Placement, gpu_tolerations
from lepton_operator.settings import OperatorSettings

pytestmark = pytest.mark.e2e

EXAMPLES = 80  # per kind and strategy: each is one to six dry runs on the API server
# Children's names are derived from it: dotted where the kind allows it (an endpoint's name is
# its Service's, a DNS label).
NAMES = {
    "LeptonTrainingJob": "generated.v1",
    "LeptonCompression": "generated.v1",
    "LeptonEndpoint": "generated-v1",
}
SETTINGS = OperatorSettings()
MODELS: dict[str, Any] = {
    "LeptonTrainingJob": LeptonTrainingJob,
    "LeptonCompression": LeptonCompression,
    "LeptonEndpoint": LeptonEndpoint,
}


def _placement(gpus: int) -> Placement:
    return Placement("a100", {"lepton.ai/node-pool": "a100"}, gpu_tolerations(gpus))


def _children(kind: str, resource: Any) -> list[dict[str, Any]]:
    """What the operator would apply for this resource once its sources exist and it is
    admitted (sources stand in as a finished training job's artifact and dataset)."""
    if kind == "LeptonTrainingJob":
        gpus = resource.spec.resources.gpus_per_worker
        return render_training_children(resource, _placement(gpus), SETTINGS)
    if kind == "LeptonCompression":
        source = ResolvedModelSource(
            "pvc://artifacts/train", DatasetSpec(uri="pvc://datasets/mnist"), seed=1
        )
        gpus = resource.spec.resources.gpus_per_worker
        return render_compression_children(resource, source, _placement(gpus), SETTINGS)
    source_uri = ResolvedEndpointSource("pvc://artifacts/compressed")
    gpus = resource.spec.resources.gpus
    return render_endpoint_children(resource, source_uri, _placement(gpus), SETTINGS)


def _refusal(call: Callable[[], Any]) -> tuple[Any, str | None]:
    """(the API server's answer, None) or (None, why it refused)."""
    try:
        return call(), None
    except ApiException as refused:
        if refused.status not in (400, 422):
            raise
        message = json.loads(refused.body or "{}").get("message", refused.reason)
        return None, str(message)


def _model_refusal(manifest: dict[str, Any]) -> str | None:
    """What `lepton validate` says offline: the models, then the CRDs' CEL rules. (Any
    exception other than a refusal is a bug of the models: it propagates, failing the test.)"""
    errors = validate_manifest(manifest)
    return "; ".join(str(error) for error in errors) if errors else None


def _dry_run_apply(
    dynamic: DynamicClient, child: dict[str, Any], namespace: str
) -> Callable[[], Any]:
    """The operator's own request (k8s.apply: server-side apply of the same body), dry run."""
    api = dynamic.resources.get(api_version=child["apiVersion"], kind=child["kind"])
    apply: Any = dynamic.server_side_apply  # the client has no annotations
    return lambda: apply(
        api,
        body=apply_body(child),
        name=child["metadata"]["name"],
        namespace=namespace,
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
        dry_run="All",
    )


@pytest.fixture(scope="module")
def dynamic(kube_api: ApiClient) -> DynamicClient:
    return DynamicClient(kube_api)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("strategy", [conforming, near_miss], ids=["conforming", "near-miss"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_the_api_server_and_the_models_agree_and_accepted_specs_give_accepted_children(
    crds: None,
    kube_api: ApiClient,
    dynamic: DynamicClient,
    namespace: str,
    kind: str,
    strategy: Callable[[dict[str, Any]], st.SearchStrategy[Any]],
) -> None:
    custom: Any = CustomObjectsApi(kube_api)
    tally = {"accepted": 0, "refused": 0}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(spec=strategy(spec_schema(kind)))
    def agree(spec: Any) -> None:
        manifest = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": NAMES[kind], "namespace": namespace},
            "spec": spec,
        }
        create = custom.create_namespaced_custom_object
        stored, server_refusal = _refusal(
            lambda: create(
                GROUP,
                VERSION,
                namespace,
                PLURALS[kind],
                manifest,
                dry_run="All",
                field_validation="Strict",
            )
        )
        model_refusal = _model_refusal(manifest)
        assert (server_refusal is None) == (model_refusal is None), (
            f"the API server {'refused' if server_refusal else 'accepted'} and the model "
            f"{'refused' if model_refusal else 'accepted'}:\n"
            f"server: {server_refusal}\nmodel: {model_refusal}"
        )
        if server_refusal is not None:
            tally["refused"] += 1
            return
        tally["accepted"] += 1
        # What the operator reads is what the API server stored, defaults included.
        resource = MODELS[kind].model_validate(stored)
        for child in _children(kind, resource):
            _, refused = _refusal(_dry_run_apply(dynamic, child, namespace))
            assert refused is None, f"{child['kind']} refused: {refused}"

    agree()
    # The answer each strategy is for came up, or the comparison said little.
    assert tally["accepted" if strategy is conforming else "refused"] > 0, tally
