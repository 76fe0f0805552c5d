"""`lepton validate` decides what the API server decides (e2e/test_schema_agreement.py found
each of these cases where the two disagreed)."""

from __future__ import annotations

from typing import Any

import pytest

from lepton_operator.api.validation import validate_manifest
from tests.factories import make_compression, make_endpoint, make_training_job


def paths(manifest: dict[str, Any]) -> list[str]:
    return [error.path for error in validate_manifest(manifest)]


def test_a_null_is_as_if_the_field_were_not_there() -> None:
    # The API server drops nulls of fields that are not nullable before it validates.
    job = make_training_job()
    job["spec"]["elastic"] = None
    job["spec"]["model"]["factory"] = None
    assert paths(job) == []


def test_a_null_in_a_map_is_dropped_too() -> None:
    job = make_training_job()
    job["spec"]["podMetadata"] = {"labels": {"team": None}}
    assert paths(job) == []


def test_a_null_unknown_field_is_still_unknown() -> None:
    job = make_training_job()
    job["spec"]["model"]["unknownField"] = None
    assert paths(job) == ["spec.model.unknownField"]


def test_a_set_holds_each_value_once() -> None:
    compression = make_compression(spec={"export": {"formats": ["torchscript", "torchscript"]}})
    assert paths(compression) == ["spec.export.formats[1]"]


def test_a_value_past_what_cel_can_hold_is_refused_not_a_crash() -> None:
    endpoint = make_endpoint(
        spec={"triton": {"maxBatchSize": 8, "dynamicBatching": {"preferredBatchSizes": [2**70]}}}
    )
    assert "spec.triton.dynamicBatching.preferredBatchSizes[0]" in paths(endpoint)


def test_onnx_export_of_a_dynamic_int8_model_is_refused_at_admission() -> None:
    compression = make_compression(spec={"export": {"formats": ["onnx"]}})
    errors = validate_manifest(compression)
    assert [e.path for e in errors] == ["spec.export.formats"]
    assert "quantization none" in errors[0].message
    for accepted in ("none", "static-int8"):  # ONNX Runtime quantizes a static-int8 one
        spec = {"export": {"formats": ["onnx"]}, "quantization": accepted}
        assert paths(make_compression(spec=spec)) == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"model": {"factory": "pkg.mod:fµnc"}}, "spec.model.factory"),  # \w is ASCII on the server
        ({"scheduling": {"queueName": ":"}}, "spec.scheduling.queueName"),  # a label value
        ({"scheduling": {"nodePool": "p" * 64}}, "spec.scheduling.nodePool"),
        ({"resources": {"gpuType": "A100 80GB"}}, "spec.resources.gpuType"),
        (
            {"model": {"name": "mlp", "parameters": {"hiddenSizes": [0]}}},
            "spec.model.parameters.hiddenSizes[0]",
        ),
        ({"runPolicy": {"activeDeadlineSeconds": 2**40}}, "spec.runPolicy.activeDeadlineSeconds"),
    ],
)
def test_what_would_make_an_invalid_child_is_refused_naming_the_field(
    spec: dict[str, Any], field: str
) -> None:
    job = make_training_job(spec=spec)
    if "factory" in spec.get("model", {}):
        job["spec"]["model"].pop("name", None)
    assert field in paths(job)
