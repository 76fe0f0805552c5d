"""No drift for Argo CD: an applied sample stays as applied while the operator reconciles it.

Argo CD (with `ServerSideApply=true`, see docs/argocd-application.yaml) applies the manifests
from Git with server-side apply under its field manager, and shows an Application OutOfSync when
a dry-run apply of the same manifests would change the live object. That holds only if the
operator never writes `spec`: it writes `status` (a subresource), and `metadata` (its finalizer
and annotations, which Argo CD does not diff). This test applies the sample pipeline as Argo CD
would, lets the operator take it to Succeeded/Available (kwok plays the pods), and checks:
- the spec is what the first apply left (the manifest plus the API server's defaults), to the
  byte, and `metadata.generation` never moved (a spec write by anyone would bump it);
- no field manager other than Argo CD's owns a field under `spec`;
- a dry-run re-apply (Argo CD's diff) and a real re-apply change neither spec nor generation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import kubectl, pipeline, wait_for_phase

pytestmark = pytest.mark.e2e

ARGOCD_MANAGER = "argocd-controller"
# The phase each of the sample's resources ends in.
FINAL_PHASES = {
    ("LeptonTrainingJob", "mnist"): "Succeeded",
    ("LeptonCompression", "mnist-compressed"): "Succeeded",
    ("LeptonEndpoint", "mnist"): "Available",
}


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _items(output: str) -> dict[tuple[str, str], dict[str, Any]]:
    """kubectl's JSON (one object, or a List of them) keyed by (kind, name)."""
    loaded: dict[str, Any] = json.loads(output)
    items = loaded["items"] if loaded.get("kind") == "List" else [loaded]
    return {_key(item): item for item in items}


def _apply(manifest: Path, namespace: str, *extra: str) -> dict[tuple[str, str], dict[str, Any]]:
    result = kubectl(
        "apply", "--server-side", f"--field-manager={ARGOCD_MANAGER}",
        "-n", namespace, "-f", str(manifest), "-o", "json", "--show-managed-fields", *extra,
    )  # fmt: skip
    return _items(result.stdout)


def _live(manifest: Path, namespace: str) -> dict[tuple[str, str], dict[str, Any]]:
    # kubectl leaves managedFields out of its output unless asked.
    output = kubectl(
        "get", "-n", namespace, "-f", str(manifest), "-o", "json", "--show-managed-fields"
    ).stdout  # fmt: skip
    return _items(output)


def _canonical(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def _spec_owners(obj: dict[str, Any]) -> set[str]:
    """The field managers that own at least one field under `spec` (any operation)."""
    return {
        entry["manager"]
        for entry in obj["metadata"].get("managedFields", [])
        if "f:spec" in entry.get("fieldsV1", {})
    }


def _argocd_entry(obj: dict[str, Any]) -> dict[str, Any]:
    (entry,) = [
        entry
        for entry in obj["metadata"]["managedFields"]
        if entry["manager"] == ARGOCD_MANAGER and entry["operation"] == "Apply"
    ]
    return dict(entry)


def _is_subset(wanted: Any, actual: Any) -> bool:
    """Every value the manifest sets is in the live object (which also has defaults)."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(
            key in actual and _is_subset(value, actual[key]) for key, value in wanted.items()
        )
    return bool(wanted == actual)


def test_an_applied_sample_shows_no_drift_after_the_operator_reconciles_it(
    operator: OperatorProcess, custom: Any, namespace: str, volumes: None, tmp_path: Path
) -> None:
    # samples/mnist-pipeline.yaml, plus the pod annotations through which kwok reports what the
    # runtime would (see e2e/lepton_resources.py): without them the jobs cannot succeed here.
    documents = pipeline()
    manifest = tmp_path / "mnist-pipeline.yaml"
    manifest.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    wanted = {_key(document): document["spec"] for document in documents}

    applied = _apply(manifest, namespace)
    assert set(applied) == set(FINAL_PHASES)
    for key, obj in applied.items():
        assert _is_subset(wanted[key], obj["spec"]), key

    for (kind, name), phase in FINAL_PHASES.items():
        wait_for_phase(custom, kind, namespace, name, phase)
    reconciled = _live(manifest, namespace)
    for key, obj in reconciled.items():
        # The operator did its work: it wrote status (for this generation) and metadata...
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"], key
        # ...and nothing under spec: same generation, the same bytes, owned by Argo CD alone.
        assert obj["metadata"]["generation"] == applied[key]["metadata"]["generation"], key
        assert _canonical(obj["spec"]) == _canonical(applied[key]["spec"]), key
        assert _spec_owners(obj) == {ARGOCD_MANAGER}, obj["metadata"]["managedFields"]

    # What Argo CD's server-side diff does: a dry-run apply of the manifests from Git.
    dry_run = _apply(manifest, namespace, "--dry-run=server")
    for key, obj in dry_run.items():
        assert obj["metadata"]["generation"] == reconciled[key]["metadata"]["generation"], key
        assert _canonical(obj["spec"]) == _canonical(reconciled[key]["spec"]), key

    # A real re-apply (a sync, or self-heal) is a no-op for spec: the API server keeps Argo CD's
    # managedFields entry as it was (same fields, same time), and the generation stays.
    reapplied = _apply(manifest, namespace)
    for key, obj in reapplied.items():
        assert obj["metadata"]["generation"] == applied[key]["metadata"]["generation"], key
        assert _canonical(obj["spec"]) == _canonical(applied[key]["spec"]), key
        assert _argocd_entry(obj) == _argocd_entry(reconciled[key]), key
        assert _spec_owners(obj) == {ARGOCD_MANAGER}, key
