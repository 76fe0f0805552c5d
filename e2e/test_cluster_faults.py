"""Fault paths of `cluster-up`: each names the component and its log, and leaves nothing running.

These start a second, throwaway control plane in a temporary state directory next to the
session's cluster, whose API server port serves as the port that is already in use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e import cluster, processes

pytestmark = pytest.mark.e2e


@pytest.fixture
def second_cluster_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    state = tmp_path / "cluster"
    monkeypatch.setattr(cluster, "STATE_DIR", state)
    monkeypatch.setattr(cluster, "KUBECONFIG", state / "kubeconfig")
    yield state
    cluster.down(quiet=True)


def _nothing_left_running(state: Path) -> bool:
    # down() forgets pid files, so look for any process whose command line names this state dir.
    return not any(
        str(state) in processes._cmdline(int(pid.name))
        for pid in Path("/proc").iterdir()
        if pid.name.isdigit()
    )


def test_up_on_a_running_cluster_leaves_it_as_it_is(kubeconfig_path: Path) -> None:
    before = json.loads((cluster.STATE_DIR / "ports.json").read_text())
    pids_before = {p.name: p.pid for p in processes.recorded(cluster.STATE_DIR)}

    endpoints = cluster.up()

    assert endpoints.ports == before
    assert {p.name: p.pid for p in processes.recorded(cluster.STATE_DIR)} == pids_before


def test_port_in_use_names_the_component_and_its_log(
    kubeconfig_path: Path, second_cluster_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session cluster's API server port (STATE_DIR already points at the second cluster).
    server = yaml.safe_load(kubeconfig_path.read_text())["clusters"][0]["cluster"]["server"]
    taken = int(server.rsplit(":", 1)[1])
    fresh = [processes.free_port() for _ in cluster.PORT_NAMES]
    fresh[cluster.PORT_NAMES.index("kube-apiserver")] = taken
    ports = iter(fresh)
    monkeypatch.setattr(processes, "free_port", lambda: next(ports))

    with pytest.raises(processes.ComponentError) as error:
        cluster.up(build_missing=False)

    message = str(error.value)
    assert message.startswith("kube-apiserver could not bind its port (address already in use)")
    assert str(second_cluster_dir / "logs" / "kube-apiserver.log") in message
    assert _nothing_left_running(second_cluster_dir)


def test_component_exiting_early_names_itself_and_its_log(
    kubeconfig_path: Path, second_cluster_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_start = processes.start

    def start_with_bad_flag(
        state: Path, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> processes.Managed:
        if name == "kube-scheduler":
            # An unknown flag makes it exit at once, as a broken build or bad config would.
            args = [*args, "--no-such-flag"]
        return real_start(state, name, args, env)

    monkeypatch.setattr(processes, "start", start_with_bad_flag)

    with pytest.raises(processes.ComponentError) as error:
        cluster.up(build_missing=False)

    message = str(error.value)
    assert message.startswith("kube-scheduler exited early")
    assert str(second_cluster_dir / "logs" / "kube-scheduler.log") in message
    assert "no-such-flag" in message
    assert _nothing_left_running(second_cluster_dir)
