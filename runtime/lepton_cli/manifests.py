"""Read Lepton manifests from files and resolve the chain endpoint -> compression -> training.

The operator resolves a chain through the API server, one reference at a time, as each source
succeeds. Locally every object is in the files the user gave us, so the whole chain is resolved
up front: a missing or mistyped reference is reported before anything runs for minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lepton_operator.api.compression import LeptonCompression
from lepton_operator.api.endpoint import LeptonEndpoint
from lepton_operator.api.search import LeptonSearch
from lepton_operator.api.training import LeptonTrainingJob
from lepton_operator.resolve import REFERENCE_FIELDS, source_reference

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(Exception):
    """The manifests cannot be read or do not form a runnable pipeline (a message for people)."""


@dataclass(frozen=True)
class Manifest:
    """One YAML document and where it came from (for messages that point at the file)."""

    path: Path
    index: int
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", "?"))

    @property
    def name(self) -> str:
        metadata = self.body.get("metadata")
        return str(metadata.get("name", "?")) if isinstance(metadata, dict) else "?"

    @property
    def where(self) -> str:
        """`file.yaml#2 LeptonCompression/mnist-compressed`: precise enough to find it."""
        return f"{self.path}#{self.index + 1} {self.kind}/{self.name}"


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given; directories become their manifest files, sorted, non-recursively."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES)
        elif path.exists():
            files.append(path)
        else:
            raise ManifestError(f"{path}: no such file or directory")
    return files


def load_manifests(paths: list[Path]) -> list[Manifest]:
    """Every non-empty document of every file (multi-document YAML, `---` separated)."""
    manifests: list[Manifest] = []
    for path in expand_paths(paths):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as error:
            raise ManifestError(f"{path}: not valid YAML: {error}") from error
        except OSError as error:
            raise ManifestError(f"{path}: cannot read: {error}") from error
        for index, document in enumerate(documents):
            if document is None:
                continue
            if not isinstance(document, dict):
                raise ManifestError(f"{path}#{index + 1}: expected a mapping (a Kubernetes object)")
            manifests.append(Manifest(path, index, document))
    if not manifests:
        raise ManifestError(f"no manifests in {', '.join(str(p) for p in paths)}")
    return manifests


@dataclass(frozen=True)
class Pipeline:
    """The resolved chain: a training job or a search, then optionally a compression and an
    endpoint (a lone training job or search runs too)."""

    training: LeptonTrainingJob | None
    compression: LeptonCompression | None
    endpoint: LeptonEndpoint | None
    search: LeptonSearch | None = None


def _index(manifests: list[Manifest]) -> dict[tuple[str, str], Manifest]:
    seen: dict[tuple[str, str], Manifest] = {}
    for manifest in manifests:
        key = (manifest.kind, manifest.name)
        if key in seen:
            raise ManifestError(
                f"{manifest.where}: defined twice (also in {seen[key].where}): rename one"
            )
        seen[key] = manifest
    return seen


def _lookup(
    objects: dict[tuple[str, str], Manifest], owner: Manifest, kind: str, name: str
) -> Manifest:
    field = REFERENCE_FIELDS[kind]
    found = objects.get((kind, name))
    if found is None:
        known = sorted(n for k, n in objects if k == kind) or ["none"]
        raise ManifestError(
            f"{owner.where}: spec.source.{field}.name is {name!r}, but the manifests define no "
            f"{kind} of that name (defined: {', '.join(known)}): fix the name or add the {kind}"
        )
    return found


def _single(manifests: list[Manifest], kind: str) -> Manifest | None:
    matching = [m for m in manifests if m.kind == kind]
    if len(matching) > 1:
        names = ", ".join(m.name for m in matching)
        raise ManifestError(
            f"`lepton run` runs one pipeline, but the manifests define several {kind}s "
            f"({names}): put each pipeline in its own file"
        )
    return matching[0] if matching else None


def resolve_pipeline(manifests: list[Manifest]) -> Pipeline:
    """Follow the references from the last link of the chain back to its training job.

    Call only on manifests that passed validation: the typed models are parsed here.
    """
    objects = _index(manifests)
    endpoint_doc = _single(manifests, "LeptonEndpoint")
    compression_doc = _single(manifests, "LeptonCompression")
    root_doc = _single(manifests, "LeptonTrainingJob") or _single(manifests, "LeptonSearch")

    endpoint = LeptonEndpoint.model_validate(endpoint_doc.body) if endpoint_doc else None
    if endpoint_doc is not None and endpoint is not None:
        reference = source_reference(endpoint.spec.source)
        if reference is None:
            raise ManifestError(
                f"{endpoint_doc.where}: spec.source.modelURI serves a model from outside these "
                "manifests; `lepton run` runs a pipeline: use compressionRef, trainingJobRef or "
                "searchRef"
            )
        source_doc = _lookup(objects, endpoint_doc, *reference)
        if source_doc.kind == "LeptonCompression":
            compression_doc = source_doc
        else:
            compression_doc, root_doc = None, source_doc

    compression = (
        LeptonCompression.model_validate(compression_doc.body) if compression_doc else None
    )
    if compression_doc is not None and compression is not None:
        reference = source_reference(compression.spec.source)
        if reference is None or reference[0] not in ("LeptonTrainingJob", "LeptonSearch"):
            raise ManifestError(
                f"{compression_doc.where}: `lepton run` compresses the model trained by the "
                "manifests: set spec.source.trainingJobRef or searchRef"
            )
        root_doc = _lookup(objects, compression_doc, *reference)

    if root_doc is None:
        raise ManifestError(
            "the manifests define no LeptonTrainingJob or LeptonSearch: nothing to run"
        )
    if root_doc.kind == "LeptonSearch":
        search = LeptonSearch.model_validate(root_doc.body)
        _check_runnable(root_doc, search.spec.template.model.command)
        return Pipeline(None, compression, endpoint, search)
    training = LeptonTrainingJob.model_validate(root_doc.body)
    _check_runnable(root_doc, training.spec.model.command)
    return Pipeline(training, compression, endpoint)


def _check_runnable(doc: Manifest, command: list[str] | None) -> None:
    if command is not None:
        raise ManifestError(
            f"{doc.where}: model.command runs a user image, which needs a cluster; "
            "`lepton run` runs the built-in models (model.name) and factories"
        )
