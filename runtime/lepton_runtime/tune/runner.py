"""Tune a packaged model on the real Triton: one server in explicit model-control mode, each
candidate written as the model's config.pbtxt and (re)loaded through the repository API, then
measured under closed-loop load; the chosen candidate's config.pbtxt is left in place.

Reloading beats restarting the server per candidate: only the model's instances restart (the
python backend's stub processes), not the server, so a candidate costs its load plus its
measurement. The requests are random images of the model's input shape: throughput and
latency of a fixed-shape network do not depend on pixel values, and the tuning step needs no
dataset.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lepton_runtime.contract import (
    DynamicBatching,
    ExportFormat,
    InstanceGroup,
    TritonSettings,
    TuningMeasurement,
    TuningRequest,
    TuningResult,
)
from lepton_runtime.errors import JobError
from lepton_runtime.export.triton_config import TritonModelSpec, render_config
from lepton_runtime.serve.local import LocalTritonServer
from lepton_runtime.tune.load import closed_loop, single_image_requests
from lepton_runtime.tune.search import (
    Dimensions,
    choose,
    confirm_choice,
    grid_search,
    quick_search,
)

log = logging.getLogger(__name__)


def with_settings(spec: TritonModelSpec, settings: TritonSettings) -> TritonModelSpec:
    """The model's config with one candidate's batching and instance count."""
    preferred = [settings.preferred_batch_size] if settings.preferred_batch_size else []
    return dataclasses.replace(
        spec,
        max_batch_size=settings.max_batch_size,
        dynamic_batching=DynamicBatching(
            enabled=True,
            preferred_batch_sizes=preferred,
            max_queue_delay_microseconds=settings.max_queue_delay_microseconds,
        ),
        instance_group=InstanceGroup(count=settings.instances, kind=spec.instance_group.kind),
        model_format=settings.model_format,
    )


def write_config(model_dir: Path, spec: TritonModelSpec) -> None:
    """Replace config.pbtxt in one step (Triton reads it on the next load)."""
    scratch = model_dir / ".config.pbtxt.tmp"
    scratch.write_text(render_config(spec))
    scratch.replace(model_dir / "config.pbtxt")


class Tuner:
    """Measures candidates of one model on one running server."""

    def __init__(
        self,
        server: LocalTritonServer,
        model_dir: Path,
        spec: TritonModelSpec,
        request: TuningRequest,
    ) -> None:
        self.server = server
        self.model_dir = model_dir
        self.spec = spec
        self.request = request
        images = np.random.default_rng(0).standard_normal((32, *spec.input_shape), dtype=np.float32)
        self.payloads = single_image_requests(spec.name, images)

    def load(self, settings: TritonSettings) -> None:
        """Serve `settings`; a model that fails to load fails the run with Triton's reason."""
        write_config(self.model_dir, with_settings(self.spec, settings))
        try:
            self.server.load(self.spec.name)
        except JobError as error:
            raise JobError(f"{error} (with {settings.describe()})") from error

    def measure(self, settings: TritonSettings) -> TuningMeasurement:
        self.load(settings)
        results = [
            closed_loop(
                self.server.grpc_url,
                self.payloads,
                concurrency,
                self.request.seconds_per_candidate,
            )
            for concurrency in self.request.concurrency
        ]
        top = results[-1]
        p99 = max(result.p99_ms for result in results)
        measured = TuningMeasurement(
            settings=settings,
            throughput=round(top.throughput, 1),
            p50_ms=round(top.p50_ms, 3),
            p99_ms=round(p99, 3),
            within_budget=p99 <= self.request.latency_budget_ms,
        )
        log.info(
            "tuning %s: %s -> %.0f req/s, p99 %.2f ms",
            self.spec.name, settings.describe(), measured.throughput, measured.p99_ms,
        )  # fmt: skip
        return measured


def _rounded(measured: TuningMeasurement) -> TuningMeasurement:
    return measured.model_copy(
        update={"throughput": round(measured.throughput, 1), "p50_ms": round(measured.p50_ms, 3)}
    )


def tune(
    repository: str,
    spec: TritonModelSpec,
    request: TuningRequest,
    *,
    formats: Sequence[ExportFormat] = (),
    torch_threads: int = 1,
) -> TuningResult:
    """Search `request.space` for `spec`'s model in `repository`, whose files the python
    backend can run as `formats` (none: no choice of file); leave the choice's config."""
    started = time.perf_counter()
    try:
        dimensions = Dimensions.of(request.space, formats)
    except ValueError as error:
        raise JobError(str(error)) from error
    model_dir = Path(repository) / spec.name
    with LocalTritonServer(
        repository, torch_threads=torch_threads, explicit_model_control=True
    ) as server:
        tuner = Tuner(server, model_dir, spec, request)
        if request.strategy == "grid":
            measured = grid_search(dimensions, tuner.measure)
        else:
            measured = quick_search(
                dimensions, tuner.measure, request.min_gain, request.concurrency[-1]
            )
        measured = confirm_choice(measured, tuner.measure)
    chosen_at = measured.index(choose(measured))
    measured = [_rounded(m) for m in measured]  # the means of pooled samples
    chosen = measured[chosen_at]
    write_config(model_dir, with_settings(spec, chosen.settings))
    return TuningResult(
        chosen=chosen,
        candidates=measured,
        latency_budget_ms=request.latency_budget_ms,
        budget_met=chosen.within_budget,
        best_p99_ms=min(m.p99_ms for m in measured),
        seconds=round(time.perf_counter() - started, 1),
        grid_size=len(dimensions.all()),
        strategy=request.strategy,
    )
