"""Offline validation of Lepton manifests: the models' checks plus the CRDs' CEL rules.

The apiserver applies defaults, then the OpenAPI schema, then the CEL rules. This module does
the same without a cluster, so `lepton validate` and the tests report the field and the fix
before anything reaches a cluster. Transition rules (those that read `oldSelf`) need the stored
object and are left to the apiserver.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError
from pydantic import BaseModel, ValidationError

from lepton_operator.api.base import GROUP_VERSION
from lepton_operator.api.compression import LeptonCompression
from lepton_operator.api.crd import object_schema
from lepton_operator.api.endpoint import LeptonEndpoint
from lepton_operator.api.kinds import ALL_KINDS
from lepton_operator.api.schema import JsonSchema
from lepton_operator.api.search import LeptonSearch
from lepton_operator.api.training import LeptonTrainingJob

RESOURCE_MODELS: dict[str, type[BaseModel]] = {
    "LeptonTrainingJob": LeptonTrainingJob,
    "LeptonCompression": LeptonCompression,
    "LeptonEndpoint": LeptonEndpoint,
    "LeptonSearch": LeptonSearch,
}
_KIND_INFO = {info.kind: info for info in ALL_KINDS}
# How an error about the whole object (a rule at the root of the schema) is located.
ROOT_PATH = "<object>"


@dataclass(frozen=True)
class FieldError:
    """One problem with a manifest, located by its dotted field path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def validate_manifest(manifest: dict[str, Any]) -> list[FieldError]:
    """Every problem the apiserver would report for this manifest on create (empty if none)."""
    kind = manifest.get("kind")
    if manifest.get("apiVersion") != GROUP_VERSION or kind not in RESOURCE_MODELS:
        return [
            FieldError(
                "kind",
                f"expected apiVersion {GROUP_VERSION} and a kind of "
                f"{', '.join(RESOURCE_MODELS)}; got {manifest.get('apiVersion')}/{kind}",
            )
        ]
    schema = object_schema(_KIND_INFO[kind])
    # The apiserver drops nulls the schema does not allow before anything else looks.
    manifest = prune_nulls(schema, manifest)
    try:
        RESOURCE_MODELS[kind].model_validate(manifest)
    except ValidationError as error:
        return [_from_pydantic(e) for e in error.errors()]
    # CEL sees the object after the schema's defaults, exactly as the apiserver stores it (not
    # the model's dump: a default the model has and the schema lacks would hide a failing rule).
    return list(_walk(schema, apply_schema_defaults(schema, manifest), path=""))


def prune_nulls(schema: JsonSchema, value: Any) -> Any:
    """The value without the nulls of fields that are not `nullable`, as the apiserver
    stores a request (`elastic: null` is as if `elastic` were not there)."""
    if isinstance(value, dict) and "properties" in schema:
        properties = schema["properties"]
        return {
            name: prune_nulls(properties.get(name, {}), item)
            for name, item in value.items()
            if item is not None or name not in properties or properties[name].get("nullable")
        }
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        values = schema["additionalProperties"]  # a map: its values are pruned the same way
        return {key: prune_nulls(values, item) for key, item in value.items() if item is not None}
    if isinstance(value, list) and "items" in schema:
        return [prune_nulls(schema["items"], item) for item in value]
    return value


def apply_schema_defaults(schema: JsonSchema, value: Any) -> Any:
    """The value with the schema's defaults filled in, the way the apiserver defaults a request.

    A default that was filled in is defaulted in turn (`triton: {}` gains `maxBatchSize: 32`).
    """
    if isinstance(value, dict) and "properties" in schema:
        filled = dict(value)
        for name, child in schema["properties"].items():
            if name not in filled and "default" in child:
                filled[name] = copy.deepcopy(child["default"])
            if name in filled:
                filled[name] = apply_schema_defaults(child, filled[name])
        return filled
    if isinstance(value, list) and "items" in schema:
        return [apply_schema_defaults(schema["items"], item) for item in value]
    return value


def _from_pydantic(error: Any) -> FieldError:
    path = ""
    for part in error["loc"]:  # list items as the API server writes them: spec.space[0].name
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    if error["type"] == "extra_forbidden":
        return FieldError(path, f'unknown field "{path}": remove it or check its spelling')
    if error["type"] == "missing":
        return FieldError(path, "Required value")
    return FieldError(path, f"Invalid value: {error['input']!r}: {error['msg']}")


def _walk(schema: JsonSchema, value: Any, path: str) -> Iterator[FieldError]:
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue
        if not _evaluate(rule["rule"], value):
            # The apiserver reports a rule at its fieldPath (relative to the rule's node) when
            # it has one, else at the node itself.
            field = _join(path, rule["fieldPath"].lstrip(".")) if "fieldPath" in rule else path
            yield FieldError(field or ROOT_PATH, f"Invalid value: {rule['message']}")
    if isinstance(value, dict):
        for name, child_schema in schema.get("properties", {}).items():
            if name in value:
                yield from _walk(child_schema, value[name], _join(path, name))
    elif isinstance(value, list) and "items" in schema:
        if schema.get("x-kubernetes-list-type") == "set":
            yield from _duplicates(value, path)
        for index, item in enumerate(value):
            yield from _walk(schema["items"], item, f"{path}[{index}]")


def _duplicates(items: list[Any], path: str) -> Iterator[FieldError]:
    """A list of type set holds each value once; the apiserver names every repeat."""
    seen: list[Any] = []
    for index, item in enumerate(items):
        if item in seen:
            yield FieldError(f"{path}[{index}]", f"Duplicate value: {json.dumps(item)}")
        seen.append(item)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _evaluate(rule: str, value: Any) -> bool:
    environment = celpy.Environment()
    program = environment.program(environment.compile(rule))
    try:
        return bool(program.evaluate({"self": json_to_cel(value)}))
    except (CELEvalError, ValueError):
        # The apiserver refuses a request whose rule fails to evaluate, too (ValueError: an
        # integer past CEL's int64).
        return False
