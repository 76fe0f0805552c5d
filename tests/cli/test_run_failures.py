"""A failing step or a Ctrl-C stops everything: no workers, no Triton, a reason, non-zero exit."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lepton_cli.main import main
from tests.cli.conftest import LEPTON, PIPELINE, REPO, lepton, processes_mentioning

EXIT_INTERRUPTED = 130


def _training_only(tmp_path: Path, dataset_uri: str) -> Path:
    training: dict[str, Any] = next(yaml.safe_load_all(PIPELINE.read_text()))
    training["spec"]["dataset"]["uri"] = dataset_uri
    path = tmp_path / "training.yaml"
    path.write_text(yaml.safe_dump(training))
    return path


def test_invalid_manifest_is_refused_before_running(tmp_path: Path) -> None:
    documents = list(yaml.safe_load_all(PIPELINE.read_text()))
    documents[0]["spec"]["resources"]["workers"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    result = lepton("run", "-f", str(path), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "spec.resources.workers" in result.stdout
    assert not (tmp_path / "out").exists()


def test_missing_dataset_folder_says_where_to_put_it(tmp_path: Path) -> None:
    manifest = _training_only(tmp_path, "pvc://datasets/digits")
    result = lepton(
        "run", "-f", str(manifest),
        "--volumes", str(tmp_path / "volumes"), "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 1
    assert f"{tmp_path / 'volumes'}/datasets/digits" in result.stdout
    assert "IDX files" in result.stdout


@pytest.mark.runtime
def test_failing_training_step_reports_the_runtimes_reason(tmp_path: Path) -> None:
    volumes = tmp_path / "volumes"
    corrupt = volumes / "datasets" / "digits"
    corrupt.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (corrupt / name).write_bytes(b"\x00\x00\x08\x03not an idx payload")
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (corrupt / name).write_bytes(b"\x00\x00\x08\x01")
    output = tmp_path / "out"
    result = lepton(
        "run", "-f", str(_training_only(tmp_path, "pvc://datasets/digits")),
        "--volumes", str(volumes), "--output", str(output),
    )  # fmt: skip
    assert result.returncode == 1
    assert "train failed:" in result.stdout
    assert "corrupt" in result.stdout
    assert not processes_mentioning(str(output))


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _start_run(output: Path, volumes: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*LEPTON, "run", "-f", str(PIPELINE), "--fast", "--volumes", str(volumes),
         "--output", str(output), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )  # fmt: skip


def _ctrl_c(run: subprocess.Popen[str]) -> str:
    """SIGINT to the whole process group (what Ctrl-C in a terminal does); the output."""
    try:
        os.killpg(run.pid, signal.SIGINT)
        stdout, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    return stdout


@pytest.mark.runtime
def test_ctrl_c_while_training_leaves_nothing_running(tmp_path: Path) -> None:
    output = tmp_path / "out"
    config = str(output / "jobs" / "train.json")
    run = _start_run(output, tmp_path / "volumes", "--epochs", "500")
    workers = min(2, os.cpu_count() or 1)
    # torchrun plus its workers (or the lone worker) have the config on their command line.
    expected = workers + 1 if workers > 1 else 1
    try:
        _wait_for(lambda: len(processes_mentioning(config)) >= expected, 120, "the workers")
        _wait_for(lambda: (output / "jobs" / "logs" / "train.log").stat().st_size > 0, 60, "logs")
    except BaseException:
        _ctrl_c(run)
        raise
    stdout = _ctrl_c(run)
    assert run.returncode == EXIT_INTERRUPTED, stdout
    assert "stopped: interrupted by SIGINT" in stdout
    assert not processes_mentioning(config)
    assert not processes_mentioning(str(output))


@pytest.mark.runtime
def test_ctrl_c_while_serving_shuts_triton_down(tmp_path: Path) -> None:
    output = tmp_path / "out"
    repository = f"--model-repository={output.resolve() / 'model-repository'}"
    run = _start_run(output, tmp_path / "volumes")
    try:
        _wait_for(lambda: processes_mentioning(repository), 240, "tritonserver")
    except BaseException:
        _ctrl_c(run)
        raise
    stdout = _ctrl_c(run)
    assert run.returncode == EXIT_INTERRUPTED, stdout
    assert "stopped: interrupted by SIGINT" in stdout
    assert not processes_mentioning(repository)
    assert not processes_mentioning(str(output))


def test_runtime_commands_are_delegated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`lepton train --config X` is the runtime's own command (what the pods run)."""
    termination = tmp_path / "termination"
    config = tmp_path / "config.json"
    config.write_text(
        '{"dataset": {"uri": "synthetic://mnist"}, "outputUri": "not a uri", '
        f'"runtime": {{"terminationMessagePath": "{termination}"}}}}'
    )
    with pytest.raises(SystemExit) as exited:
        main(["train", "--config", str(config)])
    assert exited.value.code == 1
    assert "outputUri" in termination.read_text()
