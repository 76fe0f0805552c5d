"""Turn pydantic's JSON Schema into a Kubernetes structural OpenAPI v3 schema.

The apiserver accepts only "structural" schemas: every node has a type, no $ref, no anyOf
to express optionality, no title, and `exclusiveMinimum` is OpenAPI 3.0's boolean flag rather
than JSON Schema 2020-12's number. Pydantic emits the latter dialect, so this module
rewrites one into the other without losing descriptions, defaults, bounds or CEL rules.
"""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel

JsonSchema = dict[str, Any]

# Keys of JSON Schema that a structural schema keeps as they are.
_KEPT_KEYS = frozenset(
    {
        "type",
        "description",
        "default",
        "enum",
        "format",
        "pattern",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "required",
        "nullable",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
    }
)


class SchemaError(ValueError):
    """The model uses a JSON Schema construct that has no structural equivalent."""


def structural_schema(model: type[BaseModel]) -> JsonSchema:
    """The structural OpenAPI v3 schema of a pydantic model, as the apiserver wants it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions: dict[str, JsonSchema] = raw.pop("$defs", {})
    return _convert(raw, definitions, path=model.__name__)


def _resolve(node: JsonSchema, definitions: dict[str, JsonSchema]) -> JsonSchema:
    """Inline a $ref, letting keys next to the $ref (description, default) win."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target = definitions[ref.rsplit("/", 1)[-1]]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return _resolve(merged, definitions)


def _convert(node: JsonSchema, definitions: dict[str, JsonSchema], path: str) -> JsonSchema:
    node = _resolve(node, definitions)
    node = _collapse_nullable(node, definitions)
    out: JsonSchema = {}
    if "const" in node:
        out["enum"] = [node["const"]]
    for key, value in node.items():
        if key in _KEPT_KEYS:
            out[key] = value
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "properties":
            out["properties"] = {
                name: _convert(child, definitions, f"{path}.{name}")
                for name, child in cast(dict[str, JsonSchema], value).items()
            }
        elif key == "items":
            out["items"] = _convert(value, definitions, f"{path}[]")
        elif key == "additionalProperties":
            # `false` is implied by pruning; a schema maps string keys to typed values.
            if isinstance(value, dict):
                out["additionalProperties"] = _convert(value, definitions, f"{path}{{}}")
        elif key in {"anyOf", "oneOf", "allOf"}:
            raise SchemaError(f"{path}: {key} has no structural equivalent; use one type")
    # An int-or-string node has no type: the API server takes either.
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        if "enum" not in out:
            raise SchemaError(f"{path}: every node of a structural schema needs a type")
        out["type"] = _enum_type(out["enum"], path)
    if "description" in out:
        # Docstrings wrap at the source's line length; kubectl explain reflows on its own.
        out["description"] = " ".join(out["description"].split())
    return _readable_order(out)


def _readable_order(node: JsonSchema) -> JsonSchema:
    """type and description first, the nested properties last: easier to read in YAML."""
    first: JsonSchema = {k: node[k] for k in ("type", "description") if k in node}
    last: JsonSchema = {
        k: node[k] for k in ("properties", "items", "additionalProperties") if k in node
    }
    middle = {k: v for k, v in node.items() if k not in first and k not in last}
    return {**first, **middle, **last}


def _collapse_nullable(node: JsonSchema, definitions: dict[str, JsonSchema]) -> JsonSchema:
    """`X | None` arrives as anyOf [X, null] and becomes X's schema, without `nullable`.

    The model reads None as "not set". Without `nullable` the API server does the same: it
    drops the null before defaulting and validation. With `nullable: true` it kept the null,
    and then refused it against an enum (`Unsupported value: null`) or counted it as set in
    CEL's has(), where the model saw nothing (found by e2e/test_schema_agreement.py)."""
    variants = node.get("anyOf")
    if not variants:
        return node
    non_null = [v for v in variants if v.get("type") != "null"]
    if len(non_null) != 1 or len(non_null) == len(variants):
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    merged = {**_resolve(non_null[0], definitions), **rest}
    if merged.get("default", "") is None:
        del merged["default"]  # a null default is the same as no default, and noisier
    return merged


def _enum_type(values: list[Any], path: str) -> str:
    kinds = {type(v) for v in values}
    if kinds == {str}:
        return "string"
    if kinds <= {int}:
        return "integer"
    if kinds <= {int, float}:
        return "number"
    if kinds == {bool}:
        return "boolean"
    raise SchemaError(f"{path}: enum mixes types {sorted(k.__name__ for k in kinds)}")
