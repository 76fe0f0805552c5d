"""The base install (no extras, what the operator image holds) runs `lepton validate` and the
operator: nothing on those paths imports torch, tritonclient or matplotlib. numpy is there,
as a dependency of Optuna (LeptonSearch's samplers), and only the operator loads it.

The venv is built the way images and users install Lepton without extras: from the lock
(`uv pip install -c requirements.lock -b requirements.lock .`). Wheels come from uv's cache,
which `make setup` filled from the same lock, so the test makes no network request.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import REPO, SAMPLES

LOCK = REPO / "requirements.lock"
HEAVY = ("torch", "tritonclient", "pytriton", "matplotlib", "onnx")


def _run(*command: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = Path(sys.executable).parent / "uv"
    assert uv.exists(), f"{uv} is missing: `make setup` installs uv from requirements.lock"
    venv = tmp_path_factory.mktemp("base") / "venv"
    created = _run(uv, "venv", "--quiet", "--python", sys.executable, venv)
    assert created.returncode == 0, created.stderr
    installed = _run(
        uv, "pip", "install", "--quiet", "--offline", "--python", venv / "bin" / "python",
        "-c", LOCK, "-b", LOCK, REPO,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return venv


def test_the_base_install_holds_no_runtime_extra(base_venv: Path) -> None:
    modules = _run(
        base_venv / "bin" / "python",
        "-c",
        f"import importlib.util as u, sys; print(' '.join(m for m in {HEAVY!r} if u.find_spec(m)))",
    )
    assert modules.returncode == 0, modules.stderr
    assert modules.stdout.strip() == "", f"the base install has {modules.stdout}"


def test_validate_loads_no_numpy(base_venv: Path) -> None:
    loaded = _run(
        base_venv / "bin" / "python",
        "-c",
        "import sys, lepton_cli.validate; print('numpy' in sys.modules)",
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "False"


def test_validate_accepts_the_samples_on_the_base_install(base_venv: Path) -> None:
    checked = _run(base_venv / "bin" / "lepton", "validate", "-f", SAMPLES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("ok ") == sum(
        p.read_text().count("kind: Lepton") for p in SAMPLES.glob("*.yaml")
    )


def test_validate_rejects_the_invalid_samples_on_the_base_install(base_venv: Path) -> None:
    invalid = sorted((SAMPLES / "invalid").glob("*.yaml"))
    checked = _run(base_venv / "bin" / "lepton", "validate", "-f", SAMPLES / "invalid")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "Traceback" not in checked.stderr
    assert f"{len(invalid)} of {len(invalid)} manifests invalid" in checked.stdout
    for path in invalid:
        field = next(
            line.split(":", 1)[1].strip()
            for line in path.read_text().splitlines()
            if line.startswith("# field:")
        )
        assert f": {field}: " in checked.stdout, f"{path.name}: {field} not named"


def test_the_operator_loads_every_handler_on_the_base_install(base_venv: Path) -> None:
    helped = _run(base_venv / "bin" / "lepton-operator", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--peering" in helped.stdout
    # Importing the entry module registers every handler, as `kopf run -m` does.
    loaded = _run(
        base_venv / "bin" / "python",
        "-c",
        "import sys, lepton_operator.main; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'kopf', 'kubernetes', 'rich'}))",
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "['kopf', 'kubernetes']"
