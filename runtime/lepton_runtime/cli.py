"""`lepton` / `python -m lepton_runtime`: one subcommand per job kind.

Every subcommand reads a contract config, runs, and writes the result where Kubernetes picks it
up: the summary JSON on success, a one-line reason on failure (exit code 1). Add a subcommand
by writing a `_cmd_<name>(args) -> int` function and registering it in `build_parser`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ValidationError

from lepton_runtime.contract import (
    DEFAULT_TERMINATION_PATH,
    CompressConfig,
    PackageConfig,
    TrainConfig,
    load_config,
)
from lepton_runtime.errors import JobError
from lepton_runtime.termination import summary_json, write_termination_message

log = logging.getLogger("lepton_runtime")


def _termination_path_of(config_path: str) -> str:
    """The termination path named in a config that may not validate (best effort)."""
    try:
        raw = json.loads(Path(config_path).read_text())
        path = raw.get("runtime", {}).get("terminationMessagePath")
        return str(path) if path else DEFAULT_TERMINATION_PATH
    except (OSError, ValueError, AttributeError):
        return DEFAULT_TERMINATION_PATH


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"] if part != "config")
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"invalid config: {where}: {first['msg']}{more}"


def execute(command: str, config_path: str, job: Callable[[BaseModel], BaseModel]) -> int:
    """Load, run, report. Returns the process exit code."""
    termination = _termination_path_of(config_path)
    try:
        config = load_config(config_path, command)
        termination = config.runtime.termination_message_path
        summary = job(config)
    except ValidationError as error:
        reason = _one_line(error)
    except JobError as error:
        reason = error.reason
    except (OSError, ValueError) as error:
        reason = " ".join(f"{type(error).__name__}: {error}".split())
    else:
        write_termination_message(termination, summary_json(summary))
        if os.environ.get("RANK", "0") == "0":  # one copy on stdout under torchrun
            print(summary_json(summary))
        return 0
    log.error("%s failed: %s", command, reason)
    write_termination_message(termination, reason)
    return 1


def _cmd_train(args: argparse.Namespace) -> int:
    from lepton_runtime import train  # noqa: PLC0415 (torch loads only for the command run)

    def job(config: BaseModel) -> BaseModel:
        assert isinstance(config, TrainConfig)
        return train.run(config)

    return execute("train", args.config, job)


def _cmd_compress(args: argparse.Namespace) -> int:
    from lepton_runtime import compress  # noqa: PLC0415

    def job(config: BaseModel) -> BaseModel:
        assert isinstance(config, CompressConfig)
        return compress.run(config)

    return execute("compress", args.config, job)


def _cmd_package(args: argparse.Namespace) -> int:
    from lepton_runtime import package  # noqa: PLC0415

    def job(config: BaseModel) -> BaseModel:
        assert isinstance(config, PackageConfig)
        return package.run(config)

    return execute("package", args.config, job)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; other commands register themselves here."""
    parser = argparse.ArgumentParser(prog="lepton", description="Lepton runtime jobs")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, help_text in (
        ("train", _cmd_train, "train a model (torchrun-compatible DDP)"),
        ("compress", _cmd_compress, "prune, fine-tune and quantize under an accuracy guard"),
        ("package", _cmd_package, "write a Triton model repository"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", required=True, help="contract JSON file")
        sub.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    sys.exit(args.handler(args))
