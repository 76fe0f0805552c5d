"""Reading manifests and resolving the chain endpoint -> compression -> training job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lepton_cli.manifests import ManifestError, load_manifests, resolve_pipeline
from lepton_cli.overrides import Overrides, apply_overrides
from lepton_operator.api.validation import validate_manifest
from tests.cli.conftest import PIPELINE, SEARCH_PIPELINE


def _pipeline_documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(PIPELINE.read_text()) if doc]


def test_a_search_pipeline_resolves_to_the_search_and_what_chains_from_it() -> None:
    pipeline = resolve_pipeline(load_manifests([SEARCH_PIPELINE]))
    assert pipeline.training is None and pipeline.search is not None
    assert pipeline.search.metadata.name == "mnist-search-pipeline"
    assert pipeline.compression is not None and pipeline.endpoint is not None
    assert pipeline.compression.spec.source.search_ref is not None


def _write(tmp_path: Path, documents: list[dict[str, Any]]) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return path


def test_sample_pipeline_resolves_to_its_three_objects() -> None:
    pipeline = resolve_pipeline(load_manifests([PIPELINE]))
    assert pipeline.training is not None and pipeline.search is None
    assert pipeline.training.metadata.name == "mnist"
    assert pipeline.compression is not None
    assert pipeline.compression.metadata.name == "mnist-compressed"
    assert pipeline.endpoint is not None
    assert pipeline.endpoint.spec.source.compression_ref is not None


def test_missing_reference_names_the_field_and_what_exists(tmp_path: Path) -> None:
    documents = _pipeline_documents()
    documents[1]["spec"]["source"]["trainingJobRef"]["name"] = "mnsit"
    with pytest.raises(ManifestError) as error:
        resolve_pipeline(load_manifests([_write(tmp_path, documents)]))
    message = str(error.value)
    assert "spec.source.trainingJobRef.name is 'mnsit'" in message
    assert "defined: mnist" in message


def test_endpoint_may_serve_the_training_job_directly(tmp_path: Path) -> None:
    training, _, endpoint = _pipeline_documents()
    endpoint["spec"]["source"] = {"trainingJobRef": {"name": "mnist"}}
    pipeline = resolve_pipeline(load_manifests([_write(tmp_path, [training, endpoint])]))
    assert pipeline.compression is None
    assert pipeline.endpoint is not None


def test_the_same_object_twice_is_an_error(tmp_path: Path) -> None:
    training = _pipeline_documents()[0]
    with pytest.raises(ManifestError, match="defined twice"):
        resolve_pipeline(load_manifests([_write(tmp_path, [training, training])]))


def test_a_pipeline_needs_a_training_job(tmp_path: Path) -> None:
    _, compression, endpoint = _pipeline_documents()
    with pytest.raises(ManifestError, match="LeptonTrainingJob"):
        resolve_pipeline(load_manifests([_write(tmp_path, [compression, endpoint])]))


def test_fast_overrides_still_pass_validation_and_leave_originals_alone() -> None:
    manifests = load_manifests([PIPELINE])
    fast = apply_overrides(manifests, Overrides(fast=True, epochs=2))
    assert all(validate_manifest(m.body) == [] for m in fast)
    assert fast[0].body["spec"]["dataset"]["uri"].startswith("synthetic://")
    assert fast[0].body["spec"]["hyperparameters"]["epochs"] == 2
    assert manifests[0].body["spec"]["dataset"]["uri"] == "pvc://datasets/mnist"
