"""Build the CustomResourceDefinition objects of the Lepton kinds from the API models."""

from __future__ import annotations

from typing import Any

from lepton_operator.api.base import API_GROUP, API_VERSION
from lepton_operator.api.kinds import ALL_KINDS, KindInfo
from lepton_operator.api.schema import JsonSchema, structural_schema

CATEGORY = "lepton"


def object_schema(info: KindInfo) -> JsonSchema:
    """The openAPIV3Schema of a kind: spec and status from the models, plus root CEL rules."""
    spec = structural_schema(info.spec_model)
    spec["description"] = f"Desired state of the {info.kind}."
    status = structural_schema(info.status_model)
    status["description"] = f"Observed state of the {info.kind}, written by the operator."
    schema: JsonSchema = {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            # Declaring metadata.name (the one metadata field a CRD may constrain) lets a root
            # rule report at `fieldPath: .metadata.name` instead of at the whole object.
            "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
            "spec": spec,
            "status": status,
        },
    }
    if info.root_rules:
        schema["x-kubernetes-validations"] = [dict(rule) for rule in info.root_rules]
    return schema


def build_crd(info: KindInfo) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/name": "lepton", "app.kubernetes.io/part-of": "lepton"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.to_crd() for c in info.printer_columns],
                    "schema": {"openAPIV3Schema": object_schema(info)},
                }
            ],
        },
    }


def all_crds() -> list[dict[str, Any]]:
    return [build_crd(info) for info in ALL_KINDS]
