"""Does requirements.lock still pin what pyproject.toml asks for? (`make lock-check`)

The lock is compiled by `make lock` (uv, every extra, hashes). Re-running the resolver to compare
would need the package registry; this check needs nothing but the two files, so it is the same
on every machine and in a test. It compares the direct dependencies, the only part a person
edits: every requirement of the project and its extras must be pinned at a version its specifier
allows, and every pin the lock attributes to the project (`# via lepton (pyproject.toml)`) must
still be asked for. Transitive pins are uv's business: they were resolved together with these.

    python -m tests.lockfile            # exit 1 and say what to do when they disagree
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[1]
# The platform the lock is compiled for (Makefile: --python-version / --python-platform).
LOCK_ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
PROJECT_MARK = "(pyproject.toml)"


@dataclass(frozen=True)
class Pin:
    """One `name==version` entry of the lock and whether the project itself asks for it."""

    version: Version
    direct: bool


def read_pins(lock_text: str) -> dict[NormalizedName, Pin]:
    """The lock's entries: `name==version \\` lines, their hashes, then `# via ...` comments."""
    entries: dict[NormalizedName, tuple[Version, list[str]]] = {}
    current: list[str] | None = None
    for line in lock_text.splitlines():
        stripped = line.strip()
        if line and not line[0].isspace() and "==" in line and not line.startswith("#"):
            name, _, rest = line.partition("==")
            current = []
            entries[canonicalize_name(name.split("[")[0])] = (
                Version(rest.split()[0].rstrip("\\").split(";")[0].strip()),
                current,
            )
        elif current is not None and stripped.startswith("#"):
            current.append(stripped)
    return {
        name: Pin(version, any(PROJECT_MARK in note for note in notes))
        for name, (version, notes) in entries.items()
    }


def declared_requirements(pyproject: dict[str, object]) -> list[Requirement]:
    """The project's requirements and those of every extra, for the lock's platform."""
    project = pyproject["project"]
    assert isinstance(project, dict)
    lines: list[str] = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    requirements = [Requirement(line) for line in lines]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(LOCK_ENVIRONMENT)]


def disagreements(pyproject: dict[str, object], lock_text: str) -> list[str]:
    """One sentence per difference between what is asked for and what is pinned."""
    pins = read_pins(lock_text)
    problems: list[str] = []
    asked: set[NormalizedName] = set()
    for requirement in declared_requirements(pyproject):
        name = canonicalize_name(requirement.name)
        asked.add(name)
        pin = pins.get(name)
        if pin is None or not pin.direct:
            # A pin that is only there for another package was not compiled from this request.
            problems.append(
                f"pyproject.toml asks for {requirement}, which requirements.lock "
                "does not pin for it"
            )
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(
                f"pyproject.toml asks for {requirement}, requirements.lock pins {pin.version}"
            )
    problems.extend(
        f"requirements.lock pins {name}=={pin.version} for pyproject.toml, which no longer asks "
        "for it"
        for name, pin in sorted(pins.items())
        if pin.direct and name not in asked
    )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pyproject", type=Path, default=REPO_ROOT / "pyproject.toml")
    parser.add_argument("--lock", type=Path, default=REPO_ROOT / "requirements.lock")
    args = parser.parse_args(argv)
    problems = disagreements(tomllib.loads(args.pyproject.read_text()), args.lock.read_text())
    for problem in problems:
        print(f"lock-check: {problem}", file=sys.stderr)
    if problems:
        print("lock-check: run `make lock` and commit requirements.lock", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
