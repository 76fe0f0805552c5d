"""Shared building blocks of the Lepton API: the model base class and small reusable types.

Every Lepton resource is described by pydantic models that are the single source of truth:
the CRD schemas in ``crds/`` are generated from them and the operator parses every object it
reads through them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

API_GROUP = "lepton.ai"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

# Upper bounds on strings and lists keep the CEL cost estimate of the apiserver finite:
# without them it assumes a 3 MiB string for every field and refuses the rules.
NAME_MAX = 253
TEXT_MAX = 1024
URI_MAX = 2048
LIST_MAX = 64

# A DNS-1123 subdomain: the shape of every Kubernetes object name we reference.
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A Kubernetes resource quantity such as "500m", "4", "16Gi".
QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"


class LeptonModel(BaseModel):
    """Base of every Lepton API model: camelCase on the wire, unknown fields rejected.

    ``use_attribute_docstrings`` turns the docstring under each field into its description,
    which ends up in the CRD schema and so in ``kubectl explain``.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


ObjectName = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=OBJECT_NAME_PATTERN)]
Quantity = Annotated[str, Field(max_length=64, pattern=QUANTITY_PATTERN)]


class LocalObjectReference(LeptonModel):
    """A reference to an object of a known kind in the same namespace."""

    name: ObjectName
    """Name of the referenced object (same namespace as this resource)."""


class SecretReference(LeptonModel):
    """A Secret in the same namespace holding credentials; Lepton never copies its data."""

    name: ObjectName
    """Name of the Secret. For s3:// it holds AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
    (and optionally AWS_ENDPOINT_URL, AWS_REGION)."""


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(LeptonModel):
    """One observation of the resource's state, in the shape of metav1.Condition."""

    type: str = Field(max_length=316)
    """Kind of condition in CamelCase, e.g. Ready, Succeeded, Available."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = Field(max_length=1024)
    """Machine-readable CamelCase reason for the last transition, e.g. WaitingForSource."""
    message: str = Field(default="", max_length=32768)
    """Human-readable details: what happened and what to do about it."""
    last_transition_time: datetime
    """When status last changed (not when the message or reason changed)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation the condition was computed from."""


JobPhase = Literal["Pending", "Queued", "Running", "Succeeded", "Failed", "Suspended"]
EndpointPhase = Literal["Pending", "Queued", "Progressing", "Available", "Degraded", "Failed"]


class ObjectMeta(LeptonModel):
    """The parts of metadata the operator reads; everything else is ignored, not rejected."""

    model_config = ConfigDict(extra="ignore")

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    creation_timestamp: str = ""  # RFC 3339, UTC: orders the admission queue
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
