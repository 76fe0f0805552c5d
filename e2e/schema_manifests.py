"""Hypothesis strategies for Lepton manifests, generated from the CRDs' own OpenAPI schemas.

`conforming(schema)` draws values that satisfy the structural schema (types, required fields,
enums, patterns, bounds, lengths); the CEL rules (x-kubernetes-validations) are left to the
API server, so some of these are still refused, which is what the agreement test wants to see.
`near_miss(schema)` draws the same, except that one field somewhere may get a hostile value
instead: a wrong type, a value just past a bound, a huge or non-ASCII string, an unknown field.

Written here rather than taken from hypothesis-jsonschema: its 0.23.1 (the newest) fails on
the locked hypothesis (`'many' object has no attribute 'more'` while drawing any object), and
it reads JSON Schema, not the Kubernetes dialect (`nullable`, boolean `exclusiveMinimum`,
`x-kubernetes-*`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_FILES = {
    "LeptonTrainingJob": "lepton.ai_leptontrainingjobs.yaml",
    "LeptonCompression": "lepton.ai_leptoncompressions.yaml",
    "LeptonEndpoint": "lepton.ai_leptonendpoints.yaml",
}
HOSTILE_STRINGS = (
    "",
    " ",
    "x" * 5000,
    "Ünïcødé-✓-名前",
    "a\nb",
    "${HOME}",
    "../../etc/passwd",
    "-leading-dash",
    "UPPER",
    "\u0000",
)


def spec_schema(kind: str) -> dict[str, Any]:
    """`.spec`'s schema from the CRD file as applied to the cluster."""
    crd = yaml.safe_load((REPO_ROOT / "crds" / CRD_FILES[kind]).read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"])


def _hostile() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(HOSTILE_STRINGS),
        st.text(max_size=12),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.sampled_from(["x", "name", "unknownField"]), st.integers(), max_size=2),
    )


def _string(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if "pattern" in schema:
        strategy: st.SearchStrategy[str] = st.from_regex(schema["pattern"], fullmatch=True)
    else:
        strategy = st.text(min_size=low, max_size=min(high or 24, 24))
    # Exactly at the length bounds, where no pattern says what the characters must be.
    edge = [] if "pattern" in schema or high is None else ["a" * low, "a" * high]
    drawn = st.one_of(strategy, st.sampled_from(edge)) if edge else strategy
    return drawn.filter(lambda s: low <= len(s) <= (high if high is not None else len(s)))


def _number(schema: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    low, high = schema.get("minimum"), schema.get("maximum")
    if integer:
        low = None if low is None else int(low) + (1 if schema.get("exclusiveMinimum") else 0)
        high = None if high is None else int(high) - (1 if schema.get("exclusiveMaximum") else 0)
        edges = [v for v in (low, high) if v is not None]
        ints = st.integers(min_value=low, max_value=high)
        return st.one_of(ints, st.sampled_from(edges)) if edges else ints
    floats = st.floats(
        min_value=low,
        max_value=high,
        exclude_min=bool(schema.get("exclusiveMinimum")),
        exclude_max=bool(schema.get("exclusiveMaximum")),
        allow_nan=False,
        allow_infinity=False,
    )
    edges = [v for v in (low, high) if v is not None and not _excluded(schema, v)]
    return st.one_of(floats, st.sampled_from(edges)) if edges else floats


def _excluded(schema: dict[str, Any], value: float) -> bool:
    return (value == schema.get("minimum") and bool(schema.get("exclusiveMinimum"))) or (
        value == schema.get("maximum") and bool(schema.get("exclusiveMaximum"))
    )


def _past_a_bound(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value just outside what the schema allows, where it says so."""
    outside: list[Any] = []
    step = 1 if schema.get("type") == "integer" else 1e-6
    if "minimum" in schema:
        outside.append(schema["minimum"] - (0 if schema.get("exclusiveMinimum") else step))
    if "maximum" in schema:
        outside.append(schema["maximum"] + (0 if schema.get("exclusiveMaximum") else step))
    if "maxLength" in schema:
        outside.append("a" * (schema["maxLength"] + 1))
    if "maxItems" in schema and "items" in schema:
        outside.append([None] * (schema["maxItems"] + 1))
    return st.sampled_from(outside) if outside else _hostile()


def conforming(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of this schema: its types, required fields, enums, patterns and bounds."""
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        base: st.SearchStrategy[Any] = _object(schema)
    elif kind == "object":
        values = schema.get("additionalProperties")
        value = conforming(values) if isinstance(values, dict) else st.text(max_size=8)
        keys = st.from_regex(r"[a-z]([-a-z0-9.]{0,10}[a-z0-9])?(/[a-z]{1,8})?", fullmatch=True)
        base = st.dictionaries(keys, value, max_size=3)
    elif kind == "array":
        low = schema.get("minItems", 0)
        high = min(schema.get("maxItems", low + 3), low + 3)
        base = st.lists(conforming(schema.get("items", {})), min_size=low, max_size=high)
    elif kind == "string":
        base = _string(schema)
    elif kind in ("integer", "number"):
        base = _number(schema, kind == "integer")
    elif kind == "boolean":
        base = st.booleans()
    else:
        base = _hostile()
    return st.one_of(st.none(), base) if schema.get("nullable") else base


def _object(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Any] = schema["properties"]
    required = set(schema.get("required", []))
    fields = {name: conforming(sub) for name, sub in properties.items()}
    return st.fixed_dictionaries(
        {name: fields[name] for name in properties if name in required},
        optional={name: fields[name] for name in properties if name not in required},
    )


Slot = tuple[Any, Any, dict[str, Any]]  # (the dict or list, the key or index, its schema)


def _slots(value: Any, schema: dict[str, Any]) -> list[Slot]:
    """Every place inside `value` that holds something, with the schema of what it holds."""
    found: list[Slot] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, {}) if properties else extra
            sub = sub if isinstance(sub, dict) else {}
            found.append((value, key, sub))
            found.extend(_slots(item, sub))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((value, index, schema.get("items", {})))
            found.extend(_slots(item, schema.get("items", {})))
    return found


@st.composite
def near_miss(draw: st.DrawFn, schema: dict[str, Any]) -> Any:
    """A conforming value with one thing wrong somewhere (or, now and then, nothing)."""
    value = draw(conforming(schema))
    slots = _slots(value, schema)
    objects = [v for v in [value, *(c[k] for c, k, _ in slots)] if isinstance(v, dict)]
    action = draw(st.sampled_from(["replace", "bound", "unknown", "drop", "none"]))
    if action in ("replace", "bound") and slots:
        container, key, sub = draw(st.sampled_from(slots))
        container[key] = draw(_past_a_bound(sub) if action == "bound" else _hostile())
    elif action == "unknown" and objects:
        draw(st.sampled_from(objects))["unknownField"] = draw(_hostile())
    elif action == "drop" and objects:
        target = draw(st.sampled_from(objects))
        if target:
            del target[draw(st.sampled_from(sorted(target)))]
    return value
