"""One compression job: baseline, guarded trials, export of the kept trial."""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lepton_runtime.compress.codebook import fine_tune_centroids, share_weights
from lepton_runtime.compress.fold import fold_batch_norms
from lepton_runtime.compress.prune import (
    apply_sparsity,
    check_reachable,
    count_weights,
    cubic_schedule,
    make_permanent,
    measure_sparsity,
)
from lepton_runtime.compress.quantize import quantize
from lepton_runtime.compress.trials import TrialPlan, plan_trials, verdict
from lepton_runtime.contract import CompressConfig, CompressSummary, Trial
from lepton_runtime.data import Split, load_splits
from lepton_runtime.errors import JobError
from lepton_runtime.export.artifacts import (
    ModelCard,
    example_input,
    load_float_model,
    model_from_compact,
    write_artifacts,
)
from lepton_runtime.export.compact import encode_compact
from lepton_runtime.export.onnx import OnnxRuntimeModule, static_int8_onnx_bytes
from lepton_runtime.export.torchscript import load_torchscript, to_torchscript, torchscript_bytes
from lepton_runtime.train.distributed import DistContext, init_distributed, shutdown_distributed
from lepton_runtime.train.loop import batches_per_epoch, evaluate, shard_batches, train_step
from lepton_runtime.train.measure import latency_ms
from lepton_runtime.train.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """A trial's shippable result."""

    trial: Trial
    model: nn.Module
    """What the TorchScript export traces: the quantized, or the weight-shared float model."""
    packed: bytes
    """The DEFLATE-packed TorchScript of `model`."""
    weights: tuple[int, int] = (0, 0)
    """(all, non-zero) conv and linear weights of the pruned model."""
    compact: bytes | None = None
    """model.lpc, for codebook trials: the file the python backend serves."""
    onnx: bytes | None = None
    """model.onnx of a static-int8 trial, quantized by ONNX Runtime (when onnx is exported)."""


CPU = DistContext(0, 1, 0, 1, torch.device("cpu"))
"""Quantization and weight sharing run on every rank alike, on the CPU, unsharded."""


def fine_tune(
    model: nn.Module, train: Split, config: CompressConfig, ctx: DistContext, round_index: int
) -> None:
    """Recover accuracy after a pruning round (DDP across workers when there are several)."""
    pruning = config.pruning
    steps = round(
        pruning.fine_tune_epochs * batches_per_epoch(len(train), pruning.batch_size, ctx.world_size)
    )
    if steps == 0:
        return
    net: nn.Module = DistributedDataParallel(model) if ctx.distributed else model
    optimizer = torch.optim.Adam(net.parameters(), lr=pruning.learning_rate)
    # Linear decay to zero: the round ends in a settled minimum for the next pruning step.
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    net.train()
    done, epoch = 0, 0
    while done < steps:
        seed = config.seed * 1000 + round_index
        for images, labels in shard_batches(train, pruning.batch_size, ctx, seed=seed, epoch=epoch):
            train_step(
                net,
                optimizer,
                images.to(ctx.device),
                labels.to(ctx.device),
                autocast=None,
                step=done,
            )
            decay.step()
            done += 1
            if done >= steps:
                break
        epoch += 1
    model.eval()


def _shipped(model: nn.Module, card: ModelCard) -> tuple[torch.jit.ScriptModule, bytes]:
    """The packed TorchScript we would export, and the module loaded back from it."""
    packed = torchscript_bytes(to_torchscript(model, example_input(card)))
    return load_torchscript(packed), packed


def share_and_encode(
    model: nn.Module, bits: int, card: ModelCard, train: Split, config: CompressConfig
) -> tuple[nn.Module, bytes]:
    """Fold batch norms, weight-share, fine-tune the shared values, and encode model.lpc.

    Returns the model rebuilt from the encoded bytes, so what is measured is what is served.
    """
    shared, codebooks = share_weights(fold_batch_norms(model), bits)
    spec = config.codebook
    batches = shard_batches(train, spec.batch_size, CPU, seed=config.seed + 1, epoch=0)
    codebooks = fine_tune_centroids(
        shared, codebooks, batches, spec.fine_tune_steps, spec.learning_rate
    )
    compact = encode_compact(shared.state_dict(), codebooks)
    return model_from_compact(card, compact), compact


def run_trial(
    index: int,
    plan: TrialPlan,
    *,
    baseline: nn.Module,
    card: ModelCard,
    data: tuple[Split, Split],
    config: CompressConfig,
    ctx: DistContext,
) -> Candidate:
    """Prune on the schedule with fine-tuning, quantize (or share weights), and measure the
    shipped artifact."""
    train, test = data
    model = copy.deepcopy(baseline).to(ctx.device)
    method = config.pruning.method
    if plan.sparsity > 0 and method != "none":
        for round_index, sparsity in enumerate(cubic_schedule(plan.sparsity, config.pruning.steps)):
            apply_sparsity(model, method, sparsity)
            fine_tune(model, train, config, ctx, round_index)
        make_permanent(model)
    model = model.cpu().eval()
    compact: bytes | None = None
    onnx: bytes | None = None
    onnx_accuracy: float | None = None
    if plan.codebook_bits is not None:
        shipped, compact = share_and_encode(model, plan.codebook_bits, card, train, config)
        packed = torchscript_bytes(to_torchscript(shipped, example_input(card)))
        served: nn.Module = shipped
    else:
        calibration = [
            images for images, _ in shard_batches(train, 64, CPU, seed=config.seed, epoch=0)
        ][: config.calibration_batches]
        shipped = quantize(model, plan.quantization, calibration)
        served, packed = _shipped(shipped, card)
        if plan.quantization == "static-int8" and "onnx" in config.export_formats:
            onnx = static_int8_onnx_bytes(model, example_input(card), calibration)
            onnx_accuracy = evaluate(OnnxRuntimeModule(onnx), test)
    trial = Trial(
        index=index,
        sparsity=measure_sparsity(model, method if method != "none" else "l1-unstructured"),
        quantization=plan.quantization,
        codebook_bits=plan.codebook_bits,
        size_bytes=len(compact if compact is not None else packed),
        accuracy=evaluate(served, test),
        onnx_accuracy=onnx_accuracy,
        accuracy_drop=0.0,
        latency_ms=latency_ms(served, test.images),
        kept=False,
        reason="",
    )
    return Candidate(trial, shipped, packed, count_weights(model), compact, onnx)


def run(config: CompressConfig) -> CompressSummary:
    """Compress the source model; JobError (and nothing exported) if no trial passes."""
    ctx = init_distributed(config.runtime.num_threads)
    progress = Progress("compress", config.runtime.metrics_port if ctx.is_main else None)
    try:
        summary = _compress(config, ctx, progress)
        # Rank 0 still exports while the others are done: leaving the process group then
        # aborted a rank in gloo's teardown ("terminate called without an active exception",
        # exit -6, once in a clean-clone make test). Every rank leaves together.
        ctx.barrier()
        return summary
    finally:
        progress.close()
        shutdown_distributed()


def _compress(config: CompressConfig, ctx: DistContext, progress: Progress) -> CompressSummary:
    baseline, card = load_float_model(config.source_model_uri)
    if config.pruning.method != "none":
        check_reachable(baseline, config.pruning.method, config.pruning.target_sparsity)
    train, test = load_splits(config.dataset)
    torch.manual_seed(config.seed)
    baseline_scripted, baseline_packed = _shipped(baseline, card)
    baseline_size, baseline_accuracy, baseline_latency = ctx.broadcast_from_main(
        (
            len(baseline_packed),
            evaluate(baseline_scripted, test),
            latency_ms(baseline_scripted, test.images),
        )
    )
    progress.accuracy.set(baseline_accuracy)
    log.info(
        "baseline: accuracy %.4f, %d bytes, %.3f ms",
        baseline_accuracy,
        baseline_size,
        baseline_latency,
    )

    trials: list[Trial] = []
    kept: Candidate | None = None
    for index, plan in enumerate(
        plan_trials(config.pruning, config.quantization, config.accuracy_guard, config.codebook)
    ):
        candidate = run_trial(
            index, plan, baseline=baseline, card=card, data=(train, test), config=config, ctx=ctx
        )
        measured = ctx.broadcast_from_main(candidate.trial)
        # Every file exported is served somewhere: the guard holds the least accurate.
        guarded = min(
            measured.accuracy,
            measured.accuracy if measured.onnx_accuracy is None else measured.onnx_accuracy,
        )
        passes, reason = verdict(baseline_accuracy, guarded, config.accuracy_guard)
        trial = measured.model_copy(
            update={
                "accuracy_drop": baseline_accuracy - guarded,
                "kept": passes,
                "reason": ("kept: " if passes else "dropped: ") + reason,
            }
        )
        trials.append(trial)
        progress.step.set(index + 1)
        log.info(
            "trial %d: sparsity %.3f %s%s, %d bytes, accuracy %.4f -> %s",
            index,
            trial.sparsity,
            trial.quantization,
            f" {trial.codebook_bits} bits" if trial.codebook_bits else "",
            trial.size_bytes,
            trial.accuracy,
            trial.reason,
        )
        if passes:
            kept = dataclasses.replace(candidate, trial=trial)
            break
    if kept is None:
        best = max(trials, key=lambda t: t.accuracy)
        raise JobError(
            f"no trial met the accuracy guard after {len(trials)} trials; best was trial "
            f"{best.index} ({best.reason.removeprefix('dropped: ')}); nothing exported"
        )

    final = kept.trial
    out_card = card.model_copy(
        update={
            "quantization": final.quantization,
            "codebook_bits": final.codebook_bits,
            "sparsity": final.sparsity,
            "files": [],
            "metrics": {"accuracy": final.accuracy, "baselineAccuracy": baseline_accuracy},
        }
    )
    written = out_card
    if ctx.is_main:
        written = write_artifacts(
            config.output_uri,
            out_card,
            kept.model,
            state_dict=False,
            formats=tuple(config.export_formats),
            packed_torchscript=kept.packed,
            compact=kept.compact,
            onnx_model=kept.onnx,
        )
    files, file_sizes = ctx.broadcast_from_main((written.files, written.file_sizes))
    return CompressSummary(
        baseline_accuracy=baseline_accuracy,
        final_accuracy=final.accuracy,
        size_bytes_before=baseline_size,
        size_bytes_after=final.size_bytes,
        sparsity=final.sparsity,
        latency_ms_before=baseline_latency,
        latency_ms_after=final.latency_ms,
        quantization=final.quantization,
        codebook_bits=final.codebook_bits,
        parameters=kept.weights[0],
        nonzero_parameters=kept.weights[1],
        file_sizes=file_sizes,
        trials=trials,
        model_uri=config.output_uri,
        formats=files,
    )
