"""The API models: defaults, wire names and the errors users see."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lepton_operator.api.compression import LeptonCompression
from lepton_operator.api.endpoint import DEFAULT_TRITON_IMAGE, LeptonEndpoint
from lepton_operator.api.training import LeptonTrainingJob
from tests.factories import make_compression, make_endpoint, make_training_job


def test_training_job_defaults_fill_every_optional_section() -> None:
    job = LeptonTrainingJob.model_validate(make_training_job())
    spec = job.spec
    assert spec.hyperparameters.epochs == 5
    assert spec.hyperparameters.optimizer == "adamw"
    assert spec.scheduling.node_pool == "auto"
    assert spec.scheduling.policy == "binpack"
    assert spec.checkpoint.every_steps == 200
    assert spec.run_policy.backoff_limit == 3
    assert spec.model.parameters.num_classes == 10
    assert spec.elastic is None


def test_wire_format_is_camel_case_with_uri_acronyms() -> None:
    manifest = make_compression(spec={"source": None})
    manifest["spec"]["source"] = {"modelURI": "s3://models/mnist/model.pt"}
    manifest["spec"]["evaluation"] = {"dataset": {"uri": "s3://data/mnist"}}
    compression = LeptonCompression.model_validate(manifest)
    assert compression.spec.source.model_uri == "s3://models/mnist/model.pt"
    wire = compression.spec.to_wire()
    assert wire["source"] == {"modelURI": "s3://models/mnist/model.pt"}
    assert wire["accuracyGuard"]["maxAccuracyDrop"] == 0.5
    assert "max_accuracy_drop" not in str(wire)


def test_round_trip_through_the_wire_is_lossless() -> None:
    job = LeptonTrainingJob.model_validate(
        make_training_job(spec={"elastic": {"minWorkers": 1, "maxWorkers": 4}})
    )
    again = LeptonTrainingJob.model_validate(
        {"metadata": {"name": "mnist"}, "spec": job.spec.to_wire()}
    )
    assert again.spec == job.spec


def test_endpoint_defaults_serve_with_dynamic_batching_on_the_official_image() -> None:
    endpoint = LeptonEndpoint.model_validate(make_endpoint())
    assert endpoint.spec.triton.image == DEFAULT_TRITON_IMAGE
    assert endpoint.spec.triton.dynamic_batching.enabled
    assert endpoint.spec.replicas is None
    assert endpoint.spec.resources.gpus == 0


@pytest.mark.parametrize(
    ("overrides", "location"),
    [
        ({"hyperparameters": {"learningRate": 0}}, ("spec", "hyperparameters", "learningRate")),
        ({"resources": {"memory": "lots"}}, ("spec", "resources", "memory")),
        ({"model": {"factory": "not an import path"}}, ("spec", "model", "factory")),
        ({"scheduling": {"policy": "random"}}, ("spec", "scheduling", "policy")),
        ({"checkpoint": {"everySteps": 0}}, ("spec", "checkpoint", "everySteps")),
    ],
)
def test_bad_values_are_reported_at_their_wire_path(
    overrides: dict[str, object], location: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as caught:
        LeptonTrainingJob.model_validate(make_training_job(spec=overrides))
    assert [tuple(e["loc"]) for e in caught.value.errors()] == [location]


def test_status_is_optional_and_parsed_when_present() -> None:
    manifest = make_training_job()
    manifest["status"] = {
        "phase": "Succeeded",
        "results": {"accuracy": 0.99, "modelURI": "pvc://artifacts/mnist/model.pt"},
        "conditions": [
            {
                "type": "Succeeded",
                "status": "True",
                "reason": "JobSucceeded",
                "lastTransitionTime": "2026-11-26T10:00:00Z",
            }
        ],
    }
    job = LeptonTrainingJob.model_validate(manifest)
    assert job.status is not None
    assert job.status.results is not None
    assert job.status.results.model_uri == "pvc://artifacts/mnist/model.pt"
    assert job.status.conditions[0].reason == "JobSucceeded"
