"""`lepton validate`: the checks the apiserver would make, without a cluster.

The checks themselves live with the API models (`validate_manifest`): this module only reads
files and words the outcome, so the CLI, the tests and the operator can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from lepton_cli.manifests import Manifest, load_manifests
from lepton_operator.api.validation import FieldError, validate_manifest


@dataclass(frozen=True)
class ManifestProblems:
    """A manifest and everything wrong with it (nothing when it is fine)."""

    manifest: Manifest
    errors: list[FieldError]


def check_manifests(manifests: list[Manifest]) -> list[ManifestProblems]:
    """One entry per manifest, in file order."""
    return [ManifestProblems(m, validate_manifest(m.body)) for m in manifests]


def print_problems(results: list[ManifestProblems], console: Console) -> None:
    """`ok <where>` per valid manifest; one line per error, naming the field, for the others."""
    for result in results:
        where = escape(result.manifest.where)
        if not result.errors:
            console.print(f"[green]ok[/green] {where}", soft_wrap=True)
            continue
        for error in result.errors:
            console.print(
                f"[red]error[/red] {where}: [bold]{escape(error.path)}[/bold]: "
                f"{escape(error.message)}",
                soft_wrap=True,
            )


def validate_files(paths: list[Path], console: Console) -> int:
    """Exit status of `lepton validate`: 0 when every manifest is valid, else 1."""
    results = check_manifests(load_manifests(paths))
    print_problems(results, console)
    invalid = sum(1 for r in results if r.errors)
    if invalid:
        console.print(f"{invalid} of {len(results)} manifests invalid")
        return 1
    return 0
