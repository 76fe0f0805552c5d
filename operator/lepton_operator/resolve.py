"""Resolve a compression's or endpoint's source: the artifact to use, or why not yet.

Pure: the handler fetches the referenced resource, these functions decide.
"""

from __future__ import annotations

from collections.abc import Callable

from lepton_operator.api.base import SecretReference
from lepton_operator.api.common import DatasetSpec, ModelSourceRefs
from lepton_operator.api.compression import LeptonCompression
from lepton_operator.api.search import LeptonSearch
from lepton_operator.api.training import LeptonTrainingJob
from lepton_operator.status import Blocker

SourceResource = LeptonTrainingJob | LeptonCompression | LeptonSearch
REFERENCE_FIELDS = {
    "LeptonTrainingJob": "trainingJobRef",
    "LeptonCompression": "compressionRef",
    "LeptonSearch": "searchRef",
}


def source_reference(source: ModelSourceRefs) -> tuple[str, str] | None:
    """(kind, name) of the referenced Lepton resource, or None for a plain modelURI."""
    if source.training_job_ref is not None:
        return "LeptonTrainingJob", source.training_job_ref.name
    if source.compression_ref is not None:
        return "LeptonCompression", source.compression_ref.name
    if source.search_ref is not None:
        return "LeptonSearch", source.search_ref.name
    return None


def _field(kind: str) -> str:
    return REFERENCE_FIELDS[kind]


def source_blocker(
    kind: str, name: str, namespace: str, found: SourceResource | None
) -> Blocker | None:
    """Why the referenced source cannot be used yet (None once it has succeeded)."""
    if found is None:
        return Blocker(
            "SourceNotFound",
            f"{kind} {name!r} does not exist in namespace {namespace!r}: create it or fix "
            f"spec.source.{_field(kind)}.name",
        )
    status = found.status
    phase = status.phase if status is not None else "Pending"
    if phase == "Failed":
        detail = status.message if status is not None and status.message else "no details"
        return Blocker(
            "SourceFailed",
            f"{kind} {name!r} failed ({detail}): fix and re-create it, or point "
            f"spec.source at another model",
            phase="Failed",
        )
    results = status.results if status is not None else None
    if phase != "Succeeded" or results is None or results.model_uri is None:
        return Blocker(
            "WaitingForSource", f"waiting for {kind} {name!r} to succeed (it is {phase})"
        )
    return None


CYCLE_SEARCH_LIMIT = 32  # hops; a longer chain of compressions is not worth following


def reference_cycle(start: str, next_of: Callable[[str], str | None]) -> list[str] | None:
    """The names around a cycle of compressionRefs that leads back to `start`
    (`[a, b, a]`), or None. None of the resources on a cycle can ever start, so waiting on
    one is reported as the cycle, not as "waiting for the source"."""
    chain = [start]
    current: str | None = start
    while len(chain) <= CYCLE_SEARCH_LIMIT:
        current = next_of(chain[-1])
        if current is None:
            return None
        chain.append(current)
        if current == start:
            return chain
        if current in chain[:-1]:
            return None  # a cycle further on, not through `start`: its members report it
    return None


def cycle_blocker(cycle: list[str]) -> Blocker:
    path = " -> ".join(cycle)
    return Blocker(
        "SourceCycle",
        f"spec.source.compressionRef leads back to this compression ({path}): none of them "
        f"can start; point one of them at a trainingJobRef or a modelURI",
    )


def source_model_uri(found: SourceResource) -> str:
    """The artifact URI of a source that succeeded (source_blocker returned None)."""
    assert found.status is not None and found.status.results is not None
    uri = found.status.results.model_uri
    assert uri is not None
    return uri


def source_dataset(found: SourceResource) -> DatasetSpec | None:
    """The data a source was trained or evaluated on, for compressions that name none."""
    if isinstance(found, LeptonTrainingJob):
        return found.spec.dataset
    if isinstance(found, LeptonSearch):
        return found.spec.template.dataset
    return found.spec.evaluation.dataset if found.spec.evaluation is not None else None


def source_seed(found: SourceResource | None) -> int:
    if isinstance(found, LeptonTrainingJob):
        return found.spec.hyperparameters.seed
    if isinstance(found, LeptonSearch):
        return found.spec.template.hyperparameters.seed
    return 0


def source_output_secret(found: SourceResource) -> SecretReference | None:
    """The Secret that reads where the source wrote its model."""
    output = found.spec.template.output if isinstance(found, LeptonSearch) else found.spec.output
    return output.secret_ref
