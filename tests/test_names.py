"""Every child name and label value derived from a resource name is valid, stable and distinct
(builders/names.py), over names the API server accepts for a custom resource."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lepton_operator.api.compression import LeptonCompression
from lepton_operator.api.training import LeptonTrainingJob
from lepton_operator.builders.jobs import (
    ResolvedModelSource,
    compression_job_name,
    render_compression_children,
    render_training_children,
    training_job_name,
)
from lepton_operator.builders.names import (
    DNS_LABEL_MAX,
    PYTORCHJOB_NAME_MAX,
    dns_label,
    is_dns_label,
    is_label_value,
    label_value,
)
from tests.factories import make_compression, make_training_job
from tests.test_builders import A100, SETTINGS

# What the API server accepts as a custom resource's name: a DNS-1123 subdomain.
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
label_parts = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
cr_names = (
    st.lists(label_parts, min_size=1, max_size=6)
    .map(".".join)
    .filter(lambda name: len(name) <= 253 and DNS_SUBDOMAIN.match(name) is not None)
)


def _metadata_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's metadata and every pod template's under it."""
    found = [manifest["metadata"]]
    spec = manifest.get("spec", {})
    templates = [r["template"] for r in spec.get("pytorchReplicaSpecs", {}).values()]
    if "template" in spec:
        templates.append(spec["template"])
    return found + [t["metadata"] for t in templates if "metadata" in t]


@settings(max_examples=300, deadline=None)
@given(name=cr_names)
def test_every_pytorchjob_name_leaves_room_for_the_replicas_hostnames(name: str) -> None:
    for job_name in (training_job_name(_training(name)), compression_job_name(_compression(name))):
        assert is_dns_label(job_name, PYTORCHJOB_NAME_MAX), job_name
        for replica in ("-master-0", "-worker-1022"):
            assert is_dns_label(job_name + replica, DNS_LABEL_MAX)
    assert is_label_value(label_value(name))


@settings(max_examples=100, deadline=None)
@given(name=cr_names)
def test_every_rendered_child_has_a_valid_name_and_valid_label_values(name: str) -> None:
    source = ResolvedModelSource("pvc://artifacts/x", _training("mnist").spec.dataset)
    children = [
        *render_training_children(_training(name), A100, SETTINGS),
        *render_compression_children(_compression(name), source, A100, SETTINGS),
    ]
    for child in children:
        assert DNS_SUBDOMAIN.match(child["metadata"]["name"]), child["metadata"]["name"]
        assert len(child["metadata"]["name"]) <= 253
        for metadata in _metadata_of(child):
            for key, value in metadata.get("labels", {}).items():
                assert is_label_value(value), (key, value)
        # The owner is named exactly by the ownerReference, whatever the label says.
        assert child["metadata"]["ownerReferences"][0]["name"] == name


@given(first=cr_names, second=cr_names)
def test_different_names_get_different_children_and_the_same_name_the_same(
    first: str, second: str
) -> None:
    assert training_job_name(_training(first)) == training_job_name(_training(first))
    if first != second:
        assert dns_label(first, limit=PYTORCHJOB_NAME_MAX) != dns_label(
            second, limit=PYTORCHJOB_NAME_MAX
        )
        assert label_value(first) != label_value(second)


def test_a_name_that_fits_is_kept_as_it_is() -> None:
    assert training_job_name(_training("mnist")) == "mnist"
    assert compression_job_name(_compression("mnist")) == "mnist-compress"
    assert label_value("mnist.v2") == "mnist.v2"
    dotted = training_job_name(_training("mnist.v2"))
    assert dotted.startswith("mnist-v2-") and is_dns_label(dotted)
    assert training_job_name(_training("7up")).startswith("x-7up-")


def _training(name: str) -> LeptonTrainingJob:
    return LeptonTrainingJob.model_validate(make_training_job(name=name))


def _compression(name: str) -> LeptonCompression:
    return LeptonCompression.model_validate(make_compression(name=name))
