"""docs/argocd-application.yaml: Applications that point at what this repository has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
APPLICATIONS = REPO_ROOT / "docs" / "argocd-application.yaml"


def _applications() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(APPLICATIONS.read_text()) if doc]


def test_the_example_has_an_application_for_the_chart_and_one_for_the_samples() -> None:
    paths = {app["spec"]["source"]["path"] for app in _applications()}
    assert paths == {"helm/lepton-operator", "samples"}
    for app in _applications():
        assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
        # Server-side apply is what e2e/test_no_drift.py shows to be drift-free.
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]


def test_sources_name_files_that_exist_and_the_chart_syncs_first() -> None:
    waves = {}
    for app in _applications():
        source = app["spec"]["source"]
        assert (REPO_ROOT / source["path"]).is_dir(), source["path"]
        include = source.get("directory", {}).get("include")
        if include is not None:
            assert (REPO_ROOT / source["path"] / include).is_file(), include
        if "helm" in source:
            assert (REPO_ROOT / source["path"] / "Chart.yaml").is_file()
        waves[source["path"]] = int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
    assert waves["helm/lepton-operator"] < waves["samples"]
