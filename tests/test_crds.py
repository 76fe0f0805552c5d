"""The generated CRDs: current with the models, structural, and complete for kubectl users."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import celpy
import pytest
import yaml
from celpy.adapter import json_to_cel

from lepton_operator.api import crdgen
from lepton_operator.api.crd import build_crd
from lepton_operator.api.kinds import ALL_KINDS, KindInfo

FORBIDDEN_IN_STRUCTURAL = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "const"}


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


def _schema(info: KindInfo) -> dict[str, Any]:
    schema: dict[str, Any] = build_crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_generated_files_match_the_models() -> None:
    assert crdgen.stale_files() == [], "run `make crds`"
    assert crdgen.main(["--check"]) == 0


def test_check_reports_a_drifted_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crdgen, "CRD_DIRS", (tmp_path / "crds", tmp_path / "chart" / "crds"))
    assert crdgen.main([]) == 0
    drifted = tmp_path / "crds" / "lepton.ai_leptonendpoints.yaml"
    drifted.write_text(drifted.read_text().replace("maxBatchSize", "maxBatch"))
    assert crdgen.main(["--check"]) == 1


def test_committed_files_parse_as_the_crds() -> None:
    for info in ALL_KINDS:
        path = crdgen.REPO_ROOT / "crds" / f"lepton.ai_{info.plural}.yaml"
        assert yaml.safe_load(path.read_text()) == build_crd(info)


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda i: i.kind)
def test_schema_is_structural(info: KindInfo) -> None:
    for path, node in _nodes(_schema(info)):
        # An int-or-string node is the one kind without a type.
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert not FORBIDDEN_IN_STRUCTURAL & node.keys(), f"{path} has {node.keys()}"
        if node.get("type") == "object" and "properties" in node:
            assert "additionalProperties" not in node, path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda i: i.kind)
def test_every_spec_and_status_field_is_described(info: KindInfo) -> None:
    schema = _schema(info)
    for section in ("spec", "status"):
        for path, node in _nodes(schema["properties"][section], section):
            if path.endswith(("[]", "{}")):
                continue  # list items and map values are described by their field
            assert node.get("description"), f"{path} has no description for kubectl explain"


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda i: i.kind)
def test_crd_has_status_subresource_names_and_columns(info: KindInfo) -> None:
    crd = build_crd(info)
    names = crd["spec"]["names"]
    version = crd["spec"]["versions"][0]
    assert names["categories"] == ["lepton"]
    assert names["shortNames"] == list(info.short_names)
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[0] == "Phase" and columns[-1] == "Age"


def test_printer_columns_are_those_users_were_promised() -> None:
    columns = {info.kind: [c.name for c in info.printer_columns] for info in ALL_KINDS}
    assert columns == {
        "LeptonTrainingJob": ["Phase", "Pool", "Workers", "GPUs", "Accuracy", "Age"],
        "LeptonCompression": ["Phase", "Sparsity", "Size ratio", "Accuracy drop", "Age"],
        "LeptonEndpoint": ["Phase", "Ready", "URL", "Age"],
        "LeptonSearch": ["Phase", "Completed", "Best", "Accuracy", "Age"],
    }


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda i: i.kind)
def test_every_cel_rule_compiles_and_has_a_message(info: KindInfo) -> None:
    environment = celpy.Environment()
    rules = [
        rule
        for _, node in _nodes(_schema(info))
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert rules, f"{info.kind} has no CEL rules"
    for rule in rules:
        environment.compile(rule["rule"])
        assert len(rule["message"]) > 20


def test_paths_the_status_columns_read_exist_in_the_schema() -> None:
    for info in ALL_KINDS:
        schema = _schema(info)
        for column in info.printer_columns:
            node = schema
            for part in column.json_path.strip(".").split("."):
                if part == "metadata":
                    break
                node = node["properties"][part]
            else:
                assert node["type"] in {"string", "integer", "number"}, column.name


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda i: i.kind)
def test_cel_rules_hold_for_the_defaults_they_sit_on(info: KindInfo) -> None:
    """The apiserver checks a node's rules against the node's own default, as written (nested
    defaults not filled in) and refuses the CRD when a rule fails or reads a missing field."""
    environment = celpy.Environment()
    checked = 0
    for path, node in _nodes(_schema(info)):
        if "default" not in node:
            continue
        for rule in node.get("x-kubernetes-validations", []):
            program = environment.program(environment.compile(rule["rule"]))
            outcome = program.evaluate({"self": json_to_cel(node["default"])})
            assert outcome == celpy.celtypes.BoolType(True), (
                f"{info.kind} {path}: rule {rule['rule']!r} gives {outcome!r} on its default"
            )
            checked += 1
    if info.kind == "LeptonEndpoint":
        assert checked >= 2  # the Triton rules sit on `triton`, which defaults to {}
