"""The trace replay of bench.scheduling on a trace small enough to reason about by hand."""

from __future__ import annotations

from pathlib import Path

from bench import trace

NODES = "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,1,8,V100\nn1,64000,1,8,V100\nc0,64000,1,0,\n"
HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
HEADER += "deletion_time,scheduled_time\n"


def _write(tmp_path: Path, pods: list[str]) -> tuple[Path, Path]:
    (tmp_path / "nodes.csv").write_text(NODES)
    (tmp_path / "pods.csv").write_text(HEADER + "\n".join(pods) + "\n")
    return tmp_path / "nodes.csv", tmp_path / "pods.csv"


def test_spreading_fragments_what_binpack_keeps_whole(tmp_path: Path) -> None:
    # Two small tasks, then one that needs a whole node; none leaves.
    nodes, pods = _write(
        tmp_path,
        [
            "p0,1,1,1,300,,LS,Running,0,100,0",  # a fractional GPU: one whole GPU
            "p1,1,1,1,1000,,LS,Running,1,100,1",
            "p2,1,1,8,1000,,LS,Running,2,100,2",
            "cpu,1,1,0,0,,LS,Running,3,100,3",  # CPU-only: not replayed
        ],
    )
    tasks = trace.load_tasks(pods)
    assert [t.gpus for t in tasks] == [1, 1, 8]
    loaded = trace.load_nodes(nodes)
    binpack = trace.fill(loaded, tasks, trace.operator_policy("binpack", []))
    spread = trace.fill(loaded, tasks, trace.kube_default)
    assert binpack == {
        "alloc_ratio_first_failure": None,
        "alloc_ratio_saturation": 10 / 16,
        "placed_jobs": 3,
    }
    assert spread == {
        "alloc_ratio_first_failure": 2 / 16,
        "alloc_ratio_saturation": 2 / 16,
        "placed_jobs": 2,
    }


def test_a_task_waits_in_the_queue_until_one_leaves(tmp_path: Path) -> None:
    nodes, pods = _write(
        tmp_path,
        [
            "a,1,1,8,1000,,LS,Running,0,50,0",
            "b,1,1,8,1000,,LS,Running,0,60,0",
            "c,1,1,8,1000,V100,LS,Running,10,100,10",  # waits 40 s for `a` to leave
        ],
    )
    result = trace.run(nodes, pods)
    for policy in ("binpack", "least-loaded", "spread", "kube-default"):
        figures = result["policies"][policy]
        assert figures["started"] == 3
        assert figures["mean_wait_s"] == round(40 / 3, 1)
    assert result["gpus"] == 16 and result["gpu_tasks"] == 3
    assert result["decision_ms_p99"] > 0
