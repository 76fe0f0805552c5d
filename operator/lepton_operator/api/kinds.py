"""The Lepton kinds and everything the CRD needs besides the schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from lepton_operator.api.base import API_GROUP
from lepton_operator.api.compression import CompressionSpec, CompressionStatus
from lepton_operator.api.endpoint import EndpointSpec, EndpointStatus
from lepton_operator.api.search import SearchSpec, SearchStatus
from lepton_operator.api.training import TrainingJobSpec, TrainingJobStatus


@dataclass(frozen=True)
class PrinterColumn:
    """A column of `kubectl get`."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def to_crd(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")
PHASE = PrinterColumn("Phase", ".status.phase", description="Lifecycle phase")


@dataclass(frozen=True)
class KindInfo:
    """Names, models and presentation of one custom resource kind."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    description: str
    printer_columns: tuple[PrinterColumn, ...]
    # CEL rules that need the whole object (metadata, or oldSelf across spec and status).
    root_rules: tuple[dict[str, str], ...] = field(default=())

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{API_GROUP}"


# Once a job runs, changing what it trains on would make its status describe another job.
_TRAINING_FROZEN_ONCE_RUNNING = {
    "rule": "!has(oldSelf.status) || !has(oldSelf.status.phase) || "
    "oldSelf.status.phase in ['Pending', 'Queued'] || "
    "(self.spec.model == oldSelf.spec.model && self.spec.dataset == oldSelf.spec.dataset && "
    "self.spec.resources == oldSelf.spec.resources)",
    "message": "spec.model, spec.dataset and spec.resources cannot change once the job has "
    "started: create a new LeptonTrainingJob instead",
}
_COMPRESSION_FROZEN_ONCE_RUNNING = {
    "rule": "!has(oldSelf.status) || !has(oldSelf.status.phase) || "
    "oldSelf.status.phase in ['Pending', 'Queued'] || self.spec.source == oldSelf.spec.source",
    "message": "spec.source cannot change once the compression has started: create a new "
    "LeptonCompression instead",
}
# Names become Service and Deployment names, which are DNS-1035 labels.
_ENDPOINT_NAME_IS_DNS_LABEL = {
    "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && "
    "size(self.metadata.name) <= 63",
    "message": "the name becomes the Service's name: use at most 63 lowercase letters, digits "
    "and '-', starting with a letter",
    "fieldPath": ".metadata.name",
}

TRAINING = KindInfo(
    kind="LeptonTrainingJob",
    plural="leptontrainingjobs",
    singular="leptontrainingjob",
    short_names=("ltj",),
    spec_model=TrainingJobSpec,
    status_model=TrainingJobStatus,
    description="LeptonTrainingJob trains a PyTorch model with torchrun/DDP on a GPU node pool.",
    printer_columns=(
        PHASE,
        PrinterColumn("Pool", ".status.pool", description="Node pool the job runs on"),
        PrinterColumn("Workers", ".spec.resources.workers", "integer"),
        PrinterColumn("GPUs", ".status.gpus", "integer", "GPUs held over all workers"),
        PrinterColumn("Accuracy", ".status.results.accuracy", "number"),
        AGE,
    ),
    root_rules=(_TRAINING_FROZEN_ONCE_RUNNING,),
)

COMPRESSION = KindInfo(
    kind="LeptonCompression",
    plural="leptoncompressions",
    singular="leptoncompression",
    short_names=("lcomp",),
    spec_model=CompressionSpec,
    status_model=CompressionStatus,
    description="LeptonCompression prunes, fine-tunes and quantizes a trained model under an "
    "accuracy guard and exports it for Triton.",
    printer_columns=(
        PHASE,
        PrinterColumn("Sparsity", ".status.results.sparsity", "number"),
        PrinterColumn("Size ratio", ".status.results.sizeRatio", "number", "Times smaller"),
        PrinterColumn(
            "Accuracy drop", ".status.results.accuracyDrop", "number", "Percentage points"
        ),
        AGE,
    ),
    root_rules=(_COMPRESSION_FROZEN_ONCE_RUNNING,),
)

ENDPOINT = KindInfo(
    kind="LeptonEndpoint",
    plural="leptonendpoints",
    singular="leptonendpoint",
    short_names=("lep",),
    spec_model=EndpointSpec,
    status_model=EndpointStatus,
    description="LeptonEndpoint serves a model with NVIDIA Triton Inference Server over the "
    "Open Inference Protocol (KServe v2).",
    printer_columns=(
        PHASE,
        PrinterColumn("Ready", ".status.readyReplicas", "integer", "Replicas that serve"),
        PrinterColumn("URL", ".status.url"),
        AGE,
    ),
    root_rules=(_ENDPOINT_NAME_IS_DNS_LABEL,),
)

# A search's trials were chosen for its space, objective and algorithm: changing them midway
# would mix trials of two searches. The budget may change (raise maxTrials to go on).
_SEARCH_FROZEN_ONCE_STARTED = {
    "rule": "!has(oldSelf.status) || !has(oldSelf.status.phase) || "
    "oldSelf.status.phase == 'Pending' || "
    "(self.spec.template == oldSelf.spec.template && self.spec.space == oldSelf.spec.space && "
    "self.spec.objective == oldSelf.spec.objective && "
    "self.spec.algorithm == oldSelf.spec.algorithm)",
    "message": "spec.template, spec.space, spec.objective and spec.algorithm cannot change once "
    "the search has started (spec.budget can): create a new LeptonSearch instead",
}

SEARCH = KindInfo(
    kind="LeptonSearch",
    plural="leptonsearches",
    singular="leptonsearch",
    short_names=("lsearch",),
    spec_model=SearchSpec,
    status_model=SearchStatus,
    description="LeptonSearch searches architectures and hyperparameters: every trial is a "
    "LeptonTrainingJob.",
    printer_columns=(
        PHASE,
        PrinterColumn("Completed", ".status.completedTrials", "integer", "Completed trials"),
        PrinterColumn("Best", ".status.bestTrial", description="The best trial"),
        PrinterColumn("Accuracy", ".status.results.accuracy", "number"),
        AGE,
    ),
    root_rules=(_SEARCH_FROZEN_ONCE_STARTED,),
)

ALL_KINDS: tuple[KindInfo, ...] = (TRAINING, COMPRESSION, ENDPOINT, SEARCH)
