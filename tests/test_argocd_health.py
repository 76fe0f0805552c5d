"""The chart's Argo CD health checks, run in Lua 5.1 (the dialect of Argo CD's gopher-lua)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helm_chart import CHART_DIR, REPO_ROOT

HEALTH_DIR = CHART_DIR / "argocd"
DOCS = REPO_ROOT / "docs" / "argocd.md"
JOB_KINDS = ("LeptonTrainingJob", "LeptonCompression")
KINDS = (*JOB_KINDS, "LeptonEndpoint", "LeptonSearch")

# lupa ships no type information: reach it through importlib and treat it as Any.
_lua51: Any = importlib.import_module("lupa.lua51")


def script(kind: str) -> Path:
    return HEALTH_DIR / f"health-{kind}.lua"


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """Run the kind's script the way Argo CD does: `obj` global in, a table returned."""
    lua = _lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script(kind).read_text())
    return str(result["status"]), str(result["message"])


def resource(
    kind: str,
    phase: str | None,
    message: str = "",
    generation: int = 1,
    observed: int | None = 1,
    **status: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "lepton.ai/v1alpha1",
        "kind": kind,
        "metadata": {"name": "mnist", "namespace": "ml", "generation": generation},
        "spec": {},
    }
    if phase is not None:
        body["status"] = {"phase": phase, "message": message, **status}
        if observed is not None:
            body["status"]["observedGeneration"] = observed
        body["status"]["conditions"] = [
            {"type": "Ready", "status": "True", "reason": "ChildrenCreated", "message": "ok"}
        ]
    return body


@pytest.mark.parametrize("kind", JOB_KINDS)
@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Pending", "Progressing"),
        ("Queued", "Progressing"),
        ("Running", "Progressing"),
        ("Succeeded", "Healthy"),
        ("Failed", "Degraded"),
        ("Suspended", "Suspended"),
        ("SomethingNew", "Unknown"),
    ],
)
def test_job_phase_maps_to_health(kind: str, phase: str, expected: str) -> None:
    status, message = health(kind, resource(kind, phase, "the reason"))
    assert status == expected
    assert message == f"{phase}: the reason"


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Pending", "Progressing"),
        ("Progressing", "Progressing"),
        ("Available", "Healthy"),
        ("Degraded", "Degraded"),
        ("Failed", "Degraded"),
    ],
)
def test_endpoint_phase_maps_to_health(phase: str, expected: str) -> None:
    status, message = health("LeptonEndpoint", resource("LeptonEndpoint", phase, "why"))
    assert (status, message) == (expected, f"{phase}: why")


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Pending", "Progressing"),
        ("Running", "Progressing"),
        ("Succeeded", "Healthy"),
        ("Failed", "Degraded"),
        ("Queued", "Unknown"),  # a search has no such phase
    ],
)
def test_search_phase_maps_to_health(phase: str, expected: str) -> None:
    status, message = health("LeptonSearch", resource("LeptonSearch", phase, "why"))
    assert (status, message) == (expected, f"{phase}: why")


def test_failed_job_carries_the_operators_message() -> None:
    body = resource(
        "LeptonTrainingJob", "Failed", "Secret 's3-creds' does not exist in namespace 'ml'"
    )
    assert health("LeptonTrainingJob", body) == (
        "Degraded",
        "Failed: Secret 's3-creds' does not exist in namespace 'ml'",
    )


def test_available_endpoint_without_message_says_where_it_serves() -> None:
    body = resource("LeptonEndpoint", "Available", url="http://mnist.ml.svc.cluster.local:8000")
    assert health("LeptonEndpoint", body) == (
        "Healthy",
        "Available: serving at http://mnist.ml.svc.cluster.local:8000",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_no_status_yet_is_progressing(kind: str) -> None:
    status, message = health(kind, resource(kind, None))
    assert status == "Progressing"
    assert "operator" in message


@pytest.mark.parametrize("kind", KINDS)
def test_status_of_an_older_generation_is_progressing(kind: str) -> None:
    healthy_phase = "Available" if kind == "LeptonEndpoint" else "Succeeded"
    status, message = health(kind, resource(kind, healthy_phase, generation=3, observed=2))
    assert status == "Progressing"
    assert "generation 3" in message


@pytest.mark.parametrize("kind", KINDS)
def test_status_without_observed_generation_is_read_as_is(kind: str) -> None:
    phase = "Failed"
    status, _ = health(kind, resource(kind, phase, "boom", generation=5, observed=None))
    assert status == "Degraded"


@pytest.mark.parametrize("kind", KINDS)
def test_docs_embed_each_script_verbatim_under_its_argocd_cm_key(kind: str) -> None:
    docs = DOCS.read_text()
    key = f"resource.customizations.health.lepton.ai_{kind}: |"
    match = re.search(rf"^( *){re.escape(key)}\n((?:\1  .*\n|\n)+)", docs, re.MULTILINE)
    assert match is not None, f"docs/argocd.md has no {key} block"
    indent = len(match.group(1)) + 2
    embedded = "".join(line[indent:] + "\n" for line in match.group(2).splitlines())
    assert embedded.strip() == script(kind).read_text().strip()
