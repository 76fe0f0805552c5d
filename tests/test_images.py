"""Static checks of the two Dockerfiles (no Docker engine here to build them).

What can be checked without building: pinned bases, multi-stage with nothing installed in the
final stage, a numeric non-root USER, the operator image without the [runtime] extra, and that
everything the images name (sources, console scripts, ports) exists on the repository's side.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from e2e import images as local_images
from lepton_operator.settings import OperatorSettings
from tests.helm_chart import REPO_ROOT

IMAGES = REPO_ROOT / "images"
# Pinned to a patch release of the 3.11 slim image; never a floating tag.
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?$")
BUILD_TOOLS = ("apt-get install", "apt install", "gcc", "build-essential", "pip install", "/opt/uv")


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "a continuation line ends the file"
    return result


def stages(dockerfile: Path) -> list[Stage]:
    """The build stages, with ARGs declared before the first FROM substituted into FROM."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, rest in instructions(dockerfile.read_text()):
        if keyword == "ARG" and not found:
            arg, _, default = rest.partition("=")
            args[arg] = default
        elif keyword == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], words[0])
            stage_name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(image, stage_name))
        else:
            found[-1].instructions.append((keyword, rest))
    return found


def env(stage: Stage) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            pairs[key] = value
    return pairs


def pip_installs(dockerfile: Path) -> list[str]:
    return [run for stage in stages(dockerfile) for run in stage.all("RUN") if "pip install" in run]


@pytest.fixture(params=["operator", "runtime"])
def dockerfile(request: pytest.FixtureRequest) -> Path:
    path: Path = IMAGES / str(request.param) / "Dockerfile"
    return path


def test_multi_stage_on_a_pinned_python_3_11_slim(dockerfile: Path) -> None:
    built = stages(dockerfile)
    assert len(built) >= 2
    for stage in built:
        assert PINNED_PYTHON.match(stage.image), stage.image
        assert not stage.image.endswith(":latest")
    # The venv copied between stages only works on the very same interpreter.
    assert len({stage.image for stage in built}) == 1


def test_final_stage_runs_as_uid_1000_and_installs_nothing(dockerfile: Path) -> None:
    final = stages(dockerfile)[-1]
    users = final.all("USER")
    assert users, "no USER in the final stage: it would run as root"
    assert users[-1].split(":")[0] == "1000"
    for run in final.all("RUN"):
        for tool in BUILD_TOOLS:
            assert tool not in run, f"final stage runs {tool!r}: install in the build stage"
    copies = final.all("COPY")
    assert any(copy.startswith("--from=build ") for copy in copies)
    assert env(final)["HOME"] == "/tmp"


def test_build_context_holds_what_the_images_copy(dockerfile: Path) -> None:
    ignore = (dockerfile.parent / "Dockerfile.dockerignore").read_text()
    # An allowlist: everything is out (.venv, caches, e2e state) unless named.
    assert "*" in ignore.splitlines()
    for stage in stages(dockerfile):
        for copy in stage.all("COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _ = copy.split()
            for source in sources:
                assert (REPO_ROOT / source).exists(), source
                assert f"!{source}" in ignore, f"{source} is kept out of the build context"


def locked_install(target: str) -> str:
    """The install `tests/cli/test_base_install.py` proves: the lock as constraints, hashes too."""
    return (
        "/opt/uv/bin/uv pip install --no-cache --python /opt/lepton/bin/python "
        f"-c requirements.lock -b requirements.lock {target}"
    )


def test_images_bootstrap_uv_from_its_locked_entry(dockerfile: Path) -> None:
    bootstrap, _ = pip_installs(dockerfile)
    extract, _, install = bootstrap.partition(" > /tmp/uv.txt && ")
    assert install == "/opt/uv/bin/pip install --no-deps --require-hashes -r /tmp/uv.txt"
    awk = shlex.split(extract.removeprefix("python -m venv /opt/uv && "))
    assert awk[0] == "awk"
    entry = subprocess.run(awk, cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    lines = entry.splitlines()
    assert lines[0].startswith("uv==")
    assert len(lines) > 2
    assert all(line.strip().startswith("--hash=sha256:") for line in lines[1:])
    assert not lines[-1].endswith("\\")


def test_operator_image_has_no_torch() -> None:
    dockerfile = IMAGES / "operator" / "Dockerfile"
    _, install = pip_installs(dockerfile)
    assert install == locked_install(".")
    code = [args for _, args in instructions(dockerfile.read_text())]
    assert not any("[runtime]" in line or "torch" in line for line in code)


def test_operator_image_starts_the_operator_on_its_ports() -> None:
    final = stages(IMAGES / "operator" / "Dockerfile")[-1]
    assert final.all("ENTRYPOINT") == ['["lepton-operator"]']
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "lepton-operator" in scripts
    # Bytecode cannot be written on the chart's read-only root filesystem.
    assert env(final)["PYTHONDONTWRITEBYTECODE"] == "1"
    settings = OperatorSettings()
    assert final.all("EXPOSE") == [f"{settings.metrics_port} {settings.health_port}"]


def test_runtime_image_installs_the_runtime_extra_and_leaves_the_command_to_the_operator() -> None:
    dockerfile = IMAGES / "runtime" / "Dockerfile"
    _, install = pip_installs(dockerfile)
    assert install == locked_install('".[runtime]"')
    final = stages(dockerfile)[-1]
    assert final.all("ENTRYPOINT") == []
    assert final.all("EXPOSE") == [str(OperatorSettings().runtime_metrics_port)]
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert "runtime" in extras["optional-dependencies"]


def _install_spec(arguments: list[str]) -> tuple[str, str, str]:
    """(constraints, build constraints, extras) of a `uv pip install` argument list."""
    constraints = arguments[arguments.index("-c") + 1]
    build_constraints = arguments[arguments.index("-b") + 1]
    target = arguments[-1].strip('"')
    extras = target[target.index("[") :] if "[" in target else ""
    return Path(constraints).name, Path(build_constraints).name, extras


@pytest.mark.parametrize(("image", "extras"), [("runtime", "[runtime]"), ("operator", "")])
def test_the_real_nodes_images_install_what_the_dockerfiles_install(
    image: str, extras: str
) -> None:
    """e2e/images.py builds the images the real node runs without Docker; it must install the
    same packages as the documented production build: same lock, same extras."""
    _, dockerfile_install = pip_installs(IMAGES / image / "Dockerfile")
    from_dockerfile = _install_spec(shlex.split(dockerfile_install))
    from_recipe = _install_spec(local_images.install_arguments(extras))
    assert from_recipe == from_dockerfile
    assert from_dockerfile[2] == extras


def test_the_real_nodes_runtime_image_has_the_dockerfiles_environment() -> None:
    final = stages(IMAGES / "runtime" / "Dockerfile")[-1]
    wanted = env(final)
    recipe = dict(entry.split("=", 1) for entry in local_images.RUNTIME_ENV)
    for key in ("HOME", "MPLCONFIGDIR", "PYTHONUNBUFFERED"):
        assert recipe[key] == wanted[key], key
    # The venv's bin first on PATH in both.
    assert recipe["PATH"].split(":")[0] == wanted["PATH"].split(":")[0] == "/opt/lepton/bin"
