"""Golden files: rendered manifests compared with reviewed YAML under tests/golden/.

Regenerate after an intended change with `UPDATE_GOLDEN=1 make unit`, then review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


class _GoldenDumper(yaml.SafeDumper):
    """Readable goldens: multi-line strings (rendered JSON) as blocks, no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_GoldenDumper.add_representer(str, _represent_str)


def assert_matches_golden(name: str, manifests: list[dict[str, Any]]) -> None:
    path = GOLDEN_DIR / f"{name}.yaml"
    rendered = yaml.dump_all(manifests, Dumper=_GoldenDumper, sort_keys=False, width=100)
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(rendered)
    assert path.exists(), f"{path.name} missing: run with UPDATE_GOLDEN=1 and review it"
    assert rendered == path.read_text(), f"{path.name} differs: review, then UPDATE_GOLDEN=1"
