"""The cluster's configuration and kwok stages, checked without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from e2e import cluster, topology


def test_default_pools_match_the_issue() -> None:
    config = topology.load()
    pools = {p.name: (p.nodes, p.gpus_per_node, p.gpu_product) for p in config.pools}
    assert pools == {
        "a100": (4, 8, "NVIDIA-A100-SXM4-80GB"),
        "h100": (2, 8, "NVIDIA-H100-80GB-HBM3"),
        "cpu": (2, 0, None),
    }
    assert config.total_gpus == 48


def test_gpu_nodes_are_tainted_labelled_and_annotated_for_kwok() -> None:
    config = topology.load()
    nodes = {n["metadata"]["name"]: n for n in topology.node_manifests(config)}
    assert sorted(nodes) == [
        "a100-0", "a100-1", "a100-2", "a100-3", "cpu-0", "cpu-1", "h100-0", "h100-1",
    ]  # fmt: skip
    gpu, cpu = nodes["h100-1"], nodes["cpu-0"]
    assert gpu["metadata"]["labels"][topology.POOL_LABEL] == "h100"
    assert gpu["metadata"]["labels"][topology.GPU_PRODUCT_LABEL] == "NVIDIA-H100-80GB-HBM3"
    assert gpu["spec"]["taints"] == [topology.GPU_TAINT]
    assert gpu["status"]["allocatable"][topology.GPU_RESOURCE] == "8"
    assert gpu["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"}
    assert cpu["metadata"]["labels"][topology.POOL_LABEL] == "cpu"
    assert cpu["spec"]["taints"] == []
    assert topology.GPU_RESOURCE not in cpu["status"]["allocatable"]


def test_config_rejects_unknown_fields(tmp_path: Path) -> None:
    bad = tmp_path / "cluster.yaml"
    bad.write_text(
        "pools:\n  - name: a100\n    nodes: 1\n    cpu: '8'\n    memory: 1Gi\n    gpu: 8\n"
    )
    with pytest.raises(ValidationError, match="gpu"):
        topology.load(bad)


def test_job_pod_stages_take_the_configured_run_time(tmp_path: Path) -> None:
    config = topology.ClusterConfig.model_validate(
        {"jobPodRunSeconds": 7.5, "pools": [{"name": "x", "nodes": 1, "cpu": "1", "memory": "1Gi"}]}
    )
    rendered = cluster._render_stages(config, tmp_path)
    stages = {
        doc["metadata"]["name"]: doc
        for path in rendered
        for doc in yaml.safe_load_all(path.read_text())
    }
    assert {"node-initialize", "pod-ready", "pod-delete"} <= set(stages)
    for name in ("pytorchjob-pod-complete", "pytorchjob-pod-fail"):
        assert stages[name]["spec"]["delay"]["durationMilliseconds"] == 7500
        owner_kinds = [
            e for e in stages[name]["spec"]["selector"]["matchExpressions"]
            if e["key"] == ".metadata.ownerReferences.[].kind"
        ]  # fmt: skip
        assert owner_kinds == [
            {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["PyTorchJob"]}
        ]
