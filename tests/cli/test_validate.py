"""`lepton validate`: valid samples pass, every invalid sample fails naming its field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lepton_cli.main import main
from tests.cli.conftest import SAMPLES

VALID = sorted(SAMPLES.glob("*.yaml"))
INVALID = sorted((SAMPLES / "invalid").glob("*.yaml"))
# The CEL rules' messages are ours, so the apiserver's text after `<field>: Invalid value: ` is
# exactly what the offline check must print too. The schema's own messages (bounds, patterns:
# "... in body should ...") are the apiserver's wording and differ offline.
RULE_MESSAGE = re.compile(r"Invalid value: (?!.* in body should)(.+)$")


def _header(path: Path, key: str) -> str:
    for line in path.read_text().splitlines():
        if line.startswith(f"# {key}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path.name} has no '# {key}:' header")


def _validate(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(["validate", "-f", *(str(p) for p in paths)])
    code = exited.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().out


def test_valid_samples_print_ok_per_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _validate(capsys, *VALID)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines and all(line.startswith("ok ") for line in lines)
    assert any("LeptonEndpoint/mnist" in line for line in lines)


def test_a_directory_is_every_manifest_in_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _validate(capsys, SAMPLES)
    assert code == 0
    assert out.count("ok ") == sum(p.read_text().count("kind: Lepton") for p in VALID)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_sample_names_the_field(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _validate(capsys, path)
    assert code == 1
    field = _header(path, "field")
    errors = [line for line in out.splitlines() if line.startswith("error ")]
    assert any(f": {field}: " in line for line in errors), out
    rule = RULE_MESSAGE.search(_header(path, "expect"))
    if rule is not None:
        assert rule.group(1) in out


def test_mixed_files_fail_and_still_report_the_valid_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = _validate(capsys, VALID[0], INVALID[0])
    assert code == 1
    assert "ok " in out and "error " in out and "1 of " in out


def test_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out = _validate(capsys, tmp_path / "nope.yaml")
    assert code == 2
    assert "nope.yaml: no such file or directory" in out


def test_broken_yaml_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    code, out = _validate(capsys, broken)
    assert code == 2
    assert "broken.yaml: not valid YAML" in out
