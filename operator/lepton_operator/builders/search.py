"""A search's trial -> its LeptonTrainingJob: the template with the trial's parameters."""

from __future__ import annotations

import re
from typing import Any

from lepton_operator.api.base import GROUP_VERSION, NAME_MAX, OBJECT_NAME_PATTERN
from lepton_operator.api.search import LeptonSearch, SearchTrial
from lepton_operator.builders.meta import MANAGED_BY, OWNER_LABELS, PART_OF, owner_reference
from lepton_operator.builders.names import dns_label, label_value
from lepton_operator.search.halving import job_name
from lepton_operator.search.space import parse_params, trial_spec

SEARCH_LABEL = OWNER_LABELS["LeptonSearch"]
TRIAL_LABEL = "lepton.ai/trial"
RUNG_LABEL = "lepton.ai/rung"
_SHORTENED_MAX = 63


def _is_object_name(name: str) -> bool:
    return len(name) <= NAME_MAX and re.fullmatch(OBJECT_NAME_PATTERN, name) is not None


def trial_name(search_name: str, number: int) -> str:
    """`<search>-<number>`, three digits at least; shortened with a hash when too long."""
    suffix = f"-{number:03d}"
    whole = f"{search_name}{suffix}"
    return whole if _is_object_name(whole) else dns_label(search_name, suffix, _SHORTENED_MAX)


def trial_output_uri(template_uri: str, name: str) -> str:
    """Every trial writes under the template's output, in a directory of its own."""
    return f"{template_uri.rstrip('/')}/{name}"


def render_trial(search: LeptonSearch, row: SearchTrial) -> dict[str, Any]:
    """The training job of the trial's current rung, owned by the search (deleting it
    deletes its trials). Every rung of a trial writes to the same output, so a later rung
    resumes from the checkpoints of the one before."""
    spec, meta = search.spec, search.metadata
    params = parse_params(spec.space, row.params)
    trial = trial_spec(spec.template, params, spec.budget)
    trial.output = trial.output.model_copy(
        update={"uri": trial_output_uri(spec.template.output.uri, row.name)}
    )
    limits = [spec.objective.max_parameters, trial.model.max_parameters]
    if trial.model.command is None and any(limits):
        # Over the limit, the trial's job fails before training instead of after it.
        tightest = min(limit for limit in limits if limit is not None)
        trial.model = trial.model.model_copy(update={"max_parameters": tightest})
    labels = {
        "app.kubernetes.io/name": PART_OF,
        "app.kubernetes.io/component": "trial",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        SEARCH_LABEL: label_value(meta.name),
        TRIAL_LABEL: str(row.number),
    }
    if spec.algorithm.name == "hyperband" and row.epochs is not None:
        # A rung trains the first epochs of the full run's learning-rate schedule.
        trial.hyperparameters = trial.hyperparameters.model_copy(
            update={"epochs": row.epochs, "schedule_epochs": trial.hyperparameters.epochs}
        )
        labels[RUNG_LABEL] = str(row.rung)
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "LeptonTrainingJob",
        "metadata": {
            "name": job_name(row),
            "namespace": meta.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference("LeptonSearch", meta)],
        },
        "spec": trial.to_wire(),
    }
