"""A child of the same name that is not the resource's own is reported, never taken over."""

from __future__ import annotations

from typing import Any

from lepton_operator.scheduling.views import foreign_controller


def child(*references: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "mnist", "ownerReferences": list(references)}}


def reference(kind: str, name: str, uid: str, *, controller: bool = True) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "name": name, "uid": uid, "controller": controller}


def test_the_resources_own_child_is_its_own() -> None:
    assert foreign_controller(child(reference("LeptonTrainingJob", "mnist", "u1")), "u1") is None


def test_a_child_of_a_namesake_that_was_deleted_is_not_its_own() -> None:
    # Same kind and name, another uid: the one before, whose children are being collected.
    theirs = child(reference("LeptonTrainingJob", "mnist", "u0"))
    assert foreign_controller(theirs, "u1") == "LeptonTrainingJob/mnist"


def test_an_object_nobody_controls_is_not_adopted() -> None:
    assert foreign_controller(child(), "u1") == "nobody"
    owned_not_controlled = child(reference("ConfigMap", "x", "u1", controller=False))
    assert foreign_controller(owned_not_controlled, "u1") == "nobody"
