"""`lepton run` of a LeptonSearch: the operator's own search plan, trials as local processes.

The cluster's search is `plan_search` fed by a watch of its trials' training jobs; here the
same function is fed by the trial processes this module starts, so a local search chooses,
promotes, prunes and ranks exactly as the operator does. A trial's training job is rendered
as the operator renders it and run as its pod would run it (`lepton_runtime train` with the
contract file); trials beyond what the cores allow wait, as jobs wait for admission.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from pydantic import ValidationError

from lepton_cli.processes import ProcessSupervisor
from lepton_cli.runtime_jobs import RuntimeJob, StepError, job_outcome, start_job
from lepton_cli.volumes import clear_checkpoints, prepare_dataset
from lepton_operator.api.search import LeptonSearch, SearchStatus, SearchTrial
from lepton_operator.api.training import LeptonTrainingJob
from lepton_operator.builders.runtime_config import StorageLayout, render_train_config
from lepton_operator.builders.search import render_trial
from lepton_operator.search import sampler
from lepton_operator.search.halving import job_name, last_run
from lepton_operator.search.plan import TrialObservation, plan_search
from lepton_operator.status import clipped, training_results
from lepton_runtime.contract import RuntimeOptions, TrainSummary

FINISHED_PHASES = ("Succeeded", "Failed")
POLL_SECONDS = 0.2


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Trial:
    """A trial's training job running here."""

    trial: str
    manifest: LeptonTrainingJob
    job: RuntimeJob
    process: subprocess.Popen[bytes]
    started: datetime


@dataclass(frozen=True)
class FinishedJob:
    """A trial's training job that reported its summary."""

    trial: str
    job: str
    summary: TrainSummary


@dataclass
class SearchRun:
    """The search's final status, and the trials' jobs that succeeded, in finishing order."""

    status: SearchStatus
    finished: list[FinishedJob] = field(default_factory=list)

    def summary_of(self, job: str) -> TrainSummary | None:
        return next((done.summary for done in self.finished if done.job == job), None)

    def best_job(self, search: LeptonSearch) -> LeptonTrainingJob | None:
        """The training job of the best trial's last rung: what a searchRef chains from."""
        best = next((row for row in self.status.trials if row.name == self.status.best_trial), None)
        if best is None:
            return None
        return LeptonTrainingJob.model_validate(render_trial(search, last_run(best)))


class LocalSearch:
    """Runs one search to its end; `on_change` sees every new status (the live table)."""

    def __init__(
        self,
        search: LeptonSearch,
        *,
        layout: StorageLayout,
        workdir: Path,
        supervisor: ProcessSupervisor,
        parallel: int,
        threads_per_trial: int,
        on_change: Callable[[SearchStatus], None],
    ) -> None:
        self.search = search.model_copy(update={"status": None})
        self.layout = layout
        self.workdir = workdir
        self.supervisor = supervisor
        self.parallel = max(1, parallel)
        self.threads_per_trial = threads_per_trial
        self.on_change = on_change
        self.observed: dict[str, TrialObservation] = {}
        self.waiting: list[SearchTrial] = []
        self.running: dict[str, _Trial] = {}
        self.finished: list[FinishedJob] = []

    def run(self) -> SearchRun:
        spec = self.search.spec
        prepare_dataset(spec.template.dataset.uri, self.layout)
        while True:
            plan = plan_search(
                self.search,
                self.observed,
                propose=partial(sampler.propose, spec),
                front=partial(sampler.pareto_front, spec),
                now=_now(),
            )
            self.search = self.search.model_copy(update={"status": plan.status})
            for row in plan.create:
                self.observed[job_name(row)] = TrialObservation("Pending")
                self.waiting.append(row)
            started = bool(self.waiting) and len(self.running) < self.parallel
            while self.waiting and len(self.running) < self.parallel:
                self._start(self.waiting.pop(0))
            if started:
                continue  # plan again: the table then shows the started trials Running
            self.on_change(plan.status)
            if plan.status.phase in FINISHED_PHASES and not self.running:
                return SearchRun(plan.status, self.finished)
            self._wait_for_a_trial()

    def _start(self, row: SearchTrial) -> None:
        name = job_name(row)
        try:
            manifest = LeptonTrainingJob.model_validate(render_trial(self.search, row))
        except ValidationError as error:  # as the operator: the row fails, another takes over
            message = clipped(f"its parameters make no valid training spec: {error}")
            self.observed[name] = TrialObservation("Failed", message=message)
            return
        if not row.rungs:  # a trial's first job starts afresh; its later rungs resume
            clear_checkpoints(manifest.spec.output.uri, self.layout)
        workdir = self.workdir / name
        runtime = RuntimeOptions(
            termination_message_path=str(workdir / "train.termination"),
            num_threads=self.threads_per_trial,
        )
        config = render_train_config(manifest.spec, self.layout, runtime)
        job = RuntimeJob("train", config, 1, workdir)
        started = _now()
        process = start_job(job, self.supervisor)
        self.running[name] = _Trial(row.name, manifest, job, process, started)
        self.observed[name] = TrialObservation("Running", start_time=started)

    def _wait_for_a_trial(self) -> None:
        while True:
            done = [
                name for name, trial in self.running.items() if trial.process.poll() is not None
            ]
            if done or not self.running:
                break
            time.sleep(POLL_SECONDS)
        for name in done:
            trial = self.running.pop(name)
            code = trial.process.wait()
            self.supervisor.stop(trial.process)
            self.observed[name] = self._observation(name, trial, code)

    def _observation(self, name: str, trial: _Trial, code: int) -> TrialObservation:
        finished = _now()
        try:
            outcome = job_outcome(trial.job, code)
        except StepError as failure:
            return TrialObservation(
                "Failed",
                message=clipped(failure.reason),
                start_time=trial.started,
                completion_time=finished,
            )
        summary = TrainSummary.model_validate_json(outcome.summary)
        self.finished.append(FinishedJob(trial.trial, name, summary))
        results = training_results(summary, trial.manifest.spec.output.uri, self.layout)
        return TrialObservation(
            "Succeeded", results=results, start_time=trial.started, completion_time=finished
        )
