"""Run a resolved pipeline on this machine: train -> compress -> package -> serve -> query.

Every step is rendered by the operator's own builders (`render_*_config`) and run by the
runtime's own command, so a manifest that works here works in a cluster and the other way
round; only where the pods would find their volumes differs (`StorageLayout`).
"""

from __future__ import annotations

import math
import os
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytriton
from rich.console import Console
from rich.markup import escape

from lepton_cli.inference import query_endpoint
from lepton_cli.local_search import LocalSearch
from lepton_cli.manifests import Pipeline
from lepton_cli.processes import ProcessSupervisor, interrupts_ignored
from lepton_cli.progress import StepProgress, step_progress
from lepton_cli.results import (
    CompressionOutcome,
    LossSample,
    RunSummary,
    SearchOutcome,
    ServingOutcome,
    TrainingOutcome,
)
from lepton_cli.runtime_jobs import JobOutcome, RuntimeJob, free_loopback_port, run_job
from lepton_cli.search_view import SearchDisplay
from lepton_cli.volumes import clear_checkpoints, prepare_dataset
from lepton_operator.api.common import DatasetSpec
from lepton_operator.api.training import LeptonTrainingJob
from lepton_operator.builders.endpoint import model_name
from lepton_operator.builders.runtime_config import (
    StorageLayout,
    render_compress_config,
    render_package_config,
    render_train_config,
)
from lepton_operator.resolve import source_dataset, source_seed
from lepton_operator.search import sampler
from lepton_runtime.contract import (
    CompressSummary,
    PackageConfig,
    PackageSummary,
    RuntimeOptions,
    TrainSummary,
    TuningResult,
)
from lepton_runtime.contract import DatasetSpec as RuntimeDataset
from lepton_runtime.data.synthetic import parse_synthetic_uri
from lepton_runtime.errors import JobError
from lepton_runtime.serve.local import LocalTritonServer
from lepton_runtime.train.loop import batches_per_epoch

TRAIN_LABELS_FILE = "train-labels-idx1-ubyte"
# A python-backend model runs the same TorchScript file that pytorch_libtorch would load (or,
# for a weight-shared model, its compact model.lpc: the same weights).
FALLBACK_BACKEND = "python"


@dataclass(frozen=True)
class RunOptions:
    """How to run the pipeline locally."""

    output_dir: Path
    volumes_dir: Path
    max_workers: int
    """Cap on local worker processes (a spec asking for 8 GPUs' worth still runs on a laptop)."""
    resume: bool = False
    """Keep checkpoints of an earlier run to the same output (a new run starts afresh)."""
    serve_limit: int | None = None
    """Query the endpoint with only the first N held-out samples."""
    concurrency: int = 4
    """Concurrent clients querying the endpoint."""


def default_max_workers() -> int:
    """One worker per core: more only makes DDP on the CPU slower."""
    return max(1, os.cpu_count() or 1)


def available_triton_backends() -> set[str]:
    """Backends bundled with the local tritonserver (nvidia-pytriton ships python only)."""
    folder = Path(pytriton.__file__).parent / "tritonserver" / "backends"
    return {p.name for p in folder.iterdir() if p.is_dir()} if folder.exists() else set()


def training_samples(uri: str, layout: StorageLayout) -> int | None:
    """Training-set size (for the progress bar), read from the IDX header; None if unknown."""
    if uri.startswith("synthetic://"):
        return parse_synthetic_uri(uri)[0]
    local = layout.to_local_path(uri)
    if local is None:
        return None
    path = Path(local) / TRAIN_LABELS_FILE
    if not path.exists():
        return None
    with path.open("rb") as handle:
        header = handle.read(8)
    return int(struct.unpack(">I", header[4:8])[0]) if len(header) == 8 else None


def steps_per_epoch(samples: int | None, batch_size: int, workers: int) -> int:
    """Optimiser steps per epoch by the runtime's own rule; 0 when the data size is unknown."""
    return 0 if samples is None else batches_per_epoch(samples, batch_size, workers)


class LocalPipelineRunner:
    """Runs the steps in order with progress bars; any failure or Ctrl-C ends all children."""

    def __init__(self, pipeline: Pipeline, options: RunOptions, console: Console) -> None:
        self.pipeline = pipeline
        self.options = options
        self.console = console
        self.layout = StorageLayout(str(options.volumes_dir.resolve()))
        self.jobs_dir = options.output_dir.resolve() / "jobs"
        self.step_seconds: dict[str, float] = {}
        self.supervisor = ProcessSupervisor()
        self.best_trial_job: LeptonTrainingJob | None = None

    @contextmanager
    def _step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.step_seconds[name] = round(time.perf_counter() - started, 2)

    def _runtime_options(self, command: str, metrics_port: int | None) -> RuntimeOptions:
        return RuntimeOptions(
            termination_message_path=str(self.jobs_dir / f"{command}.termination"),
            metrics_port=metrics_port,
        )

    def _note(self, outcome: JobOutcome) -> None:
        if outcome.exit_note is not None:
            self.console.print(f"[yellow]note:[/yellow] {escape(outcome.exit_note)}")

    def _workers(self, requested: int) -> int:
        return max(1, min(requested, self.options.max_workers))

    # ----------------------------------------------------------------------------- steps

    def _source_job(self) -> LeptonTrainingJob:
        """The training job the later steps chain from: the pipeline's, or the best trial's."""
        job = self.pipeline.training or self.best_trial_job
        assert job is not None  # resolve_pipeline gives one or a search; run() checks the search
        return job

    def train(self, progress: StepProgress) -> TrainingOutcome:
        job = self._source_job()
        spec = job.spec
        prepare_dataset(spec.dataset.uri, self.layout)
        if not self.options.resume and clear_checkpoints(spec.output.uri, self.layout):
            self.console.print("[dim]checkpoints of an earlier run removed (--resume keeps them)")
        workers = self._workers(spec.resources.workers)
        per_epoch = steps_per_epoch(
            training_samples(spec.dataset.uri, self.layout),
            spec.hyperparameters.batch_size,
            workers,
        )
        total = per_epoch * spec.hyperparameters.epochs or None
        task = progress.add_task(
            f"train {job.metadata.name} ({workers} workers)", total=total, status="starting"
        )
        port = free_loopback_port()
        config = render_train_config(spec, self.layout, self._runtime_options("train", port))
        samples: list[LossSample] = []

        def on_metrics(gauges: dict[str, float]) -> None:
            step = int(gauges.get("lepton_train_step", 0))
            loss = gauges.get("lepton_train_loss", math.nan)
            epoch = int(gauges.get("lepton_train_epoch", 0))
            if step > 0 and math.isfinite(loss) and (not samples or samples[-1].step != step):
                samples.append(LossSample(step=step, loss=loss))
            progress.update(
                task,
                completed=step,
                status=f"epoch {min(epoch + 1, spec.hyperparameters.epochs)}"
                f"/{spec.hyperparameters.epochs} loss {loss:.3f}",
            )

        with self._step("train"):
            outcome = run_job(
                RuntimeJob("train", config, workers, self.jobs_dir),
                self.supervisor,
                on_metrics,
                port,
            )
        self._note(outcome)
        summary = TrainSummary.model_validate_json(outcome.summary)
        progress.update(
            task,
            completed=total or 1,
            total=total or 1,
            status=f"accuracy {summary.accuracy:.2%}",
        )
        return TrainingOutcome(
            name=job.metadata.name,
            workers=workers,
            steps_per_epoch=per_epoch,
            summary=summary,
            loss_samples=samples,
        )

    def compress(self, progress: StepProgress) -> CompressionOutcome:
        compression = self.pipeline.compression
        assert compression is not None
        training = self._source_job()
        spec = compression.spec
        dataset: DatasetSpec | None = (
            spec.evaluation.dataset if spec.evaluation is not None else source_dataset(training)
        )
        assert dataset is not None  # a training job always names its dataset
        prepare_dataset(dataset.uri, self.layout)
        trials = spec.accuracy_guard.max_trials
        task = progress.add_task(
            f"compress {compression.metadata.name}", total=trials, status="baseline"
        )
        port = free_loopback_port()
        config = render_compress_config(
            spec,
            source_model_uri=training.spec.output.uri,  # what the job's status.results reports
            dataset=dataset,
            layout=self.layout,
            runtime=self._runtime_options("compress", port),
            seed=source_seed(training),
        )

        def on_metrics(gauges: dict[str, float]) -> None:
            done = int(gauges.get("lepton_compress_step", 0))
            progress.update(task, completed=done, status=f"trial {min(done + 1, trials)}")

        with self._step("compress"):
            job_outcome = run_job(
                RuntimeJob(
                    "compress", config, self._workers(spec.resources.workers), self.jobs_dir
                ),
                self.supervisor,
                on_metrics,
                port,
            )
        self._note(job_outcome)
        summary = CompressSummary.model_validate_json(job_outcome.summary)
        outcome = CompressionOutcome(name=compression.metadata.name, summary=summary)
        progress.update(
            task,
            completed=trials,
            status=f"{outcome.size_ratio:.1f}x smaller, accuracy {summary.final_accuracy:.2%}",
        )
        return outcome

    def package(self, progress: StepProgress) -> tuple[PackageConfig, TuningResult | None]:
        endpoint = self.pipeline.endpoint
        assert endpoint is not None
        source = self.pipeline.compression or self._source_job()
        task = progress.add_task(f"package {endpoint.metadata.name}", total=1, status="")
        config = render_package_config(
            endpoint.spec,
            model_uri=source.spec.output.uri,
            model_name=model_name(endpoint),
            repository=str((self.options.output_dir / "model-repository").resolve()),
            layout=self.layout,
            runtime=self._runtime_options("package", None),
        )
        if config.backend not in available_triton_backends():
            config = config.model_copy(update={"backend": FALLBACK_BACKEND})
        if config.tuning is not None:
            progress.update(task, status="tuning on the local Triton")
        with self._step("package"):
            outcome = run_job(RuntimeJob("package", config, 1, self.jobs_dir), self.supervisor)
            self._note(outcome)
        summary = PackageSummary.model_validate_json(outcome.summary)
        status = f"{config.backend} backend"
        if summary.tuning is not None:
            chosen = summary.tuning.chosen
            status += f", tuned: {chosen.throughput:,.0f} req/s at p99 {chosen.p99_ms:.1f} ms"
        progress.update(task, completed=1, status=status)
        return config, summary.tuning

    def serve(
        self, progress: StepProgress, package: PackageConfig, tuning: TuningResult | None = None
    ) -> ServingOutcome:
        endpoint = self.pipeline.endpoint
        assert endpoint is not None
        from lepton_runtime.data import load_splits  # noqa: PLC0415 (torch: only when serving)

        dataset = self._source_job().spec.dataset
        _, test = load_splits(
            RuntimeDataset(
                uri=self.layout.to_runtime_uri(dataset.uri), test_limit=self.options.serve_limit
            )
        )
        images, labels = test.images.numpy(), test.labels.numpy()
        task = progress.add_task(
            f"serve {endpoint.metadata.name} on Triton", total=len(labels), status="starting"
        )
        server = LocalTritonServer(package.repository, torch_threads=1)
        with self._step("serve"):
            try:
                server.start()
                progress.update(task, status=f"http://{server.url}")
                result = query_endpoint(
                    server.url,
                    package.model_name,
                    images,
                    labels,
                    concurrency=self.options.concurrency,
                    on_request=lambda: progress.advance(task),
                )
            finally:
                with interrupts_ignored():
                    server.stop()
        progress.update(task, status=f"accuracy {result.accuracy:.2%}")
        return ServingOutcome(
            name=endpoint.metadata.name,
            model_name=package.model_name,
            backend_requested=endpoint.spec.triton.backend,
            backend_served=package.backend,
            result=result,
            tuning=tuning,
        )

    def search(self) -> tuple[SearchOutcome, TrainingOutcome | None]:
        """The search to its end, with its live table; the best trial becomes the source of
        the steps after it."""
        search = self.pipeline.search
        assert search is not None
        spec = search.spec
        parallel = self._workers(spec.budget.parallel_trials)
        display = SearchDisplay(f"search {search.metadata.name}", self.console)
        runner = LocalSearch(
            search,
            layout=self.layout,
            workdir=self.jobs_dir / "trials",
            supervisor=self.supervisor,
            parallel=parallel,
            threads_per_trial=max(1, self.options.max_workers // parallel),
            on_change=display.update,
        )
        with self._step("search"), display:
            run = runner.run()
        display.print_final(run.status)
        front_spec = spec.model_copy(
            update={"objective": spec.objective.model_copy(update={"minimize": ["parameters"]})}
        )
        outcome = SearchOutcome(
            name=search.metadata.name,
            status=run.status,
            parameters_front=sampler.pareto_front(front_spec, run.status.trials),
        )
        self.best_trial_job = run.best_job(search)
        if self.best_trial_job is None:
            return outcome, None
        best_name = self.best_trial_job.metadata.name
        summary = run.summary_of(best_name)
        assert summary is not None  # the best trial completed: its last job reported
        training = TrainingOutcome(name=best_name, workers=1, steps_per_epoch=0, summary=summary)
        return outcome, training

    # ----------------------------------------------------------------------------- all

    def run(self, manifests: list[str], overrides: list[str]) -> RunSummary:
        """All steps; the children are gone when this returns or raises."""
        started = time.perf_counter()
        self.options.output_dir.mkdir(parents=True, exist_ok=True)
        progress = step_progress(self.console)
        search: SearchOutcome | None = None
        compression: CompressionOutcome | None = None
        serving: ServingOutcome | None = None
        try:
            if self.pipeline.search is not None:
                search, training = self.search()
                if training is None and (self.pipeline.compression or self.pipeline.endpoint):
                    raise JobError(
                        f"search {self.pipeline.search.metadata.name} found no trial to chain "
                        f"from: {search.status.message}"
                    )
            with progress:
                if self.pipeline.search is None:
                    training = self.train(progress)
                compression = self.compress(progress) if self.pipeline.compression else None
                if self.pipeline.endpoint is not None:
                    serving = self.serve(progress, *self.package(progress))
        finally:
            with interrupts_ignored():
                self.supervisor.stop_all()
        return RunSummary(
            manifests=manifests,
            output_dir=str(self.options.output_dir),
            volumes_dir=str(self.options.volumes_dir),
            overrides=overrides,
            training=training,
            search=search,
            compression=compression,
            serving=serving,
            step_seconds=self.step_seconds,
            total_seconds=round(time.perf_counter() - started, 2),
        )
