"""`lepton`: run Lepton manifests on this machine, check them offline, or run one runtime job.

lepton run -f samples/mnist-pipeline.yaml        train -> compress -> serve, locally
lepton validate -f samples/                      what the apiserver would reject, offline
lepton train --config FILE                       the pods' command (also compress, package)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from lepton_cli.manifests import ManifestError, load_manifests, resolve_pipeline
from lepton_cli.overrides import Overrides, apply_overrides
from lepton_cli.processes import Interrupted, interrupts_as_exceptions
from lepton_cli.validate import check_manifests, print_problems, validate_files

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130
RUNTIME_COMMANDS = ("train", "compress", "package")


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="run a pipeline of manifests locally (torchrun workers, real Triton)",
        description="Run LeptonTrainingJob -> LeptonCompression -> LeptonEndpoint manifests on "
        "this machine with the runtime the pods use, then query the endpoint and report.",
    )
    run.add_argument(
        "-f",
        "--filename",
        dest="files",
        type=Path,
        action="extend",
        nargs="+",
        required=True,
        help="manifest files or directories",
    )
    run.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="output directory (default ./runs/<timestamp>)",
    )
    run.add_argument(
        "--volumes",
        type=Path,
        default=None,
        help="folder holding one folder per pvc:// claim "
        "(default ${LEPTON_CACHE:-~/.cache/lepton}/volumes)",
    )
    run.add_argument(
        "--fast",
        action="store_true",
        help="synthetic data, tiny model, one epoch: a smoke test in seconds",
    )
    run.add_argument("--epochs", type=int, default=None, help="override training epochs")
    run.add_argument(
        "--max-workers",
        type=int,
        default=None,
        help="cap on local worker processes (default: the CPU count)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="resume from checkpoints of an earlier run to the same output URI",
    )
    run.add_argument(
        "--serve-limit",
        type=int,
        default=None,
        help="query the endpoint with only the first N held-out samples",
    )
    run.add_argument("--concurrency", type=int, default=4, help="concurrent clients of Triton")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lepton", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run(commands)
    validate = commands.add_parser(
        "validate", help="check manifests offline (schema and CEL rules of the CRDs)"
    )
    validate.add_argument(
        "-f",
        "--filename",
        dest="files",
        type=Path,
        action="extend",
        nargs="+",
        required=True,
        help="manifest files or directories",
    )
    for name in RUNTIME_COMMANDS:
        job = commands.add_parser(name, help=f"run the runtime's {name} job (the pods' command)")
        job.add_argument("--config", required=True, help="contract JSON file")
        job.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _run(args: argparse.Namespace, console: Console) -> int:
    # Heavy imports (torch, numpy, tritonclient, matplotlib) only for the command that needs
    # them: `lepton validate` runs on the base install, without the [runtime] extra.
    from lepton_cli.local_pipeline import (  # noqa: PLC0415
        LocalPipelineRunner,
        RunOptions,
        default_max_workers,
    )
    from lepton_cli.plots import write_plots  # noqa: PLC0415
    from lepton_cli.report import print_report, write_summary  # noqa: PLC0415
    from lepton_cli.runtime_jobs import StepError  # noqa: PLC0415
    from lepton_cli.volumes import VolumeError, default_volumes_dir  # noqa: PLC0415
    from lepton_runtime.errors import JobError  # noqa: PLC0415

    overrides = Overrides(fast=args.fast, epochs=args.epochs)
    manifests = apply_overrides(load_manifests(args.files), overrides)
    problems = check_manifests(manifests)
    if any(p.errors for p in problems):
        print_problems([p for p in problems if p.errors], console)
        console.print("[red]not running: fix the fields above (`lepton validate` checks them)")
        return EXIT_INVALID
    pipeline = resolve_pipeline(manifests)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    options = RunOptions(
        output_dir=args.output or Path("runs") / stamp,
        volumes_dir=args.volumes or default_volumes_dir(),
        max_workers=args.max_workers or default_max_workers(),
        resume=args.resume,
        serve_limit=args.serve_limit,
        concurrency=args.concurrency,
    )
    applied = [f"{k}={v}" for k, v in vars(overrides).items() if v not in (None, False)]
    console.print(
        f"running {', '.join(m.where for m in manifests)}"
        + (f" with {', '.join(applied)}" if applied else "")
    )
    runner = LocalPipelineRunner(pipeline, options, console)
    try:
        with interrupts_as_exceptions():
            summary = runner.run([str(p) for p in args.files], applied)
    except Interrupted as stop:
        console.print(f"[red]stopped: {stop}; workers and Triton were shut down")
        return EXIT_INTERRUPTED
    except StepError as failure:
        console.print(f"[red]{escape(failure.step)} failed:[/red] {escape(failure.reason)}")
        console.print(f"log: {failure.log_path}; workers and Triton were shut down")
        return EXIT_FAILED
    except (JobError, VolumeError) as error:
        console.print(f"[red]failed:[/red] {escape(str(error))}")
        return EXIT_FAILED
    plots = write_plots(
        options.output_dir, summary.training, summary.compression, summary.search, summary.serving
    )
    summary = summary.model_copy(update={"plots": [str(p) for p in plots]})
    write_summary(summary, options.output_dir)
    print_report(summary, console)
    return 0


def _delegate_to_runtime(args: argparse.Namespace) -> int:
    from lepton_runtime.cli import main as runtime_main  # noqa: PLC0415

    argv = ["-v"] if args.verbose else []
    try:
        runtime_main([*argv, args.command, "--config", args.config])
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else EXIT_FAILED
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    args = build_parser().parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    try:
        if args.command == "run":
            code = _run(args, console)
        elif args.command == "validate":
            code = validate_files(args.files, console)
        else:
            code = _delegate_to_runtime(args)
    except ManifestError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
        code = EXIT_INVALID
    sys.exit(code)
