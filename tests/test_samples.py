"""The samples: valid ones pass every check, invalid ones fail naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lepton_operator.api.crd import object_schema
from lepton_operator.api.kinds import ALL_KINDS
from lepton_operator.api.validation import RESOURCE_MODELS, validate_manifest

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
VALID = sorted(SAMPLES.glob("*.yaml"))
INVALID = sorted((SAMPLES / "invalid").glob("*.yaml"))
SCHEMAS = {info.kind: object_schema(info) for info in ALL_KINDS}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _header(path: Path, key: str) -> str:
    for line in path.read_text().splitlines():
        if line.startswith(f"# {key}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path.name} has no '# {key}:' header")


def _as_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI's `nullable` is JSON Schema's extra "null" type; the rest is Draft 4."""
    converted = {k: v for k, v in node.items() if not k.startswith("x-kubernetes")}
    if converted.pop("nullable", False):
        converted["type"] = [converted["type"], "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
    if "properties" in converted:
        converted["properties"] = {k: _as_json_schema(v) for k, v in node["properties"].items()}
        converted["additionalProperties"] = False
    if "items" in converted:
        converted["items"] = _as_json_schema(node["items"])
    return converted


def test_there_are_samples_of_every_kind() -> None:
    kinds = {doc["kind"] for path in VALID for doc in _documents(path)}
    assert kinds == set(RESOURCE_MODELS)
    assert len(INVALID) >= 10


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_sample_passes_models_schema_and_rules(path: Path) -> None:
    for document in _documents(path):
        assert validate_manifest(document) == []
        defaulted = RESOURCE_MODELS[document["kind"]].model_validate(document)
        wire = defaulted.model_dump(by_alias=True, exclude_none=True, mode="json")
        wire["metadata"] = document["metadata"]
        jsonschema.Draft4Validator(_as_json_schema(SCHEMAS[document["kind"]])).validate(wire)


def test_mnist_pipeline_chains_by_reference() -> None:
    training, compression, endpoint = _documents(SAMPLES / "mnist-pipeline.yaml")
    assert compression["spec"]["source"]["trainingJobRef"]["name"] == training["metadata"]["name"]
    assert endpoint["spec"]["source"]["compressionRef"]["name"] == compression["metadata"]["name"]


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_sample_is_rejected_naming_the_field(path: Path) -> None:
    (document,) = _documents(path)
    errors = validate_manifest(document)
    assert errors, f"{path.name} was accepted"
    field = _header(path, "field")
    assert field in [e.path for e in errors], [str(e) for e in errors]
    assert _header(path, "expect")  # the apiserver's wording, checked by the e2e tests
