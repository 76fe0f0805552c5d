"""One training run: data, model, DDP, checkpoints, progress, artifacts, summary."""

from __future__ import annotations

import copy
import io
import logging
import random
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lepton_runtime import storage
from lepton_runtime.contract import TrainConfig, TrainSummary
from lepton_runtime.data import Split, load_splits
from lepton_runtime.errors import JobError
from lepton_runtime.export.artifacts import STATE_DICT, make_card, write_artifacts
from lepton_runtime.models import build_model, spec_fingerprint
from lepton_runtime.train.checkpoint import (
    TrainState,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from lepton_runtime.train.distributed import DistContext, init_distributed, shutdown_distributed
from lepton_runtime.train.loop import (
    augment,
    batches_per_epoch,
    evaluate,
    seed_modules,
    shard_batches,
    step_seeds,
    train_step,
)
from lepton_runtime.train.measure import count_parameters, latency_ms
from lepton_runtime.train.optim import make_optimizer, make_schedule
from lepton_runtime.train.progress import Progress

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Same seed, same initial weights on every rank (DDP also broadcasts them)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _autocast_factory(ctx: DistContext, enabled: bool) -> Callable[[], torch.autocast] | None:
    if not enabled or ctx.device.type != "cuda":
        return None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return lambda: torch.autocast(device_type="cuda", dtype=dtype)


def weights_size(output_uri: str, model: nn.Module) -> int:
    """Bytes of the model.pt under `output_uri`: the file's size when it is local, else the
    size of the same serialization (write_artifacts saves the state dict the same way)."""
    path = storage.local_path(storage.join(output_uri, STATE_DICT))
    if path is not None:
        return path.stat().st_size
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _export(
    config: TrainConfig, ctx: DistContext, model: nn.Module, test_split: Split, accuracy: float
) -> tuple[int, float]:
    """Write the artifacts and measure them on rank 0: (size of model.pt, latency in ms)."""
    size_bytes, latency = 0, 0.0
    if ctx.is_main:
        # Export probes and traces with CPU inputs, so it gets a CPU copy (a no-op on CPU runs)
        # and model.pt holds CPU tensors; the latency is measured where the run trained.
        exported = copy.deepcopy(model).cpu() if ctx.device.type != "cpu" else model
        card = make_card(config.model, exported, metrics={"accuracy": accuracy})
        write_artifacts(config.output_uri, card, exported)
        size_bytes = weights_size(config.output_uri, exported)
        latency = latency_ms(model, test_split.images, device=ctx.device)
    # One measurement for every rank, so each returns the same summary.
    return ctx.broadcast_from_main((size_bytes, latency))


def run(config: TrainConfig) -> TrainSummary:
    """Train the model described by `config`; every rank returns the same summary."""
    ctx = init_distributed(config.runtime.num_threads)
    try:
        return _train(config, ctx)
    finally:
        shutdown_distributed()


def _train(config: TrainConfig, ctx: DistContext) -> TrainSummary:
    hp = config.hyperparameters
    train_split, test_split = load_splits(config.dataset)
    seed_everything(hp.seed)
    model = build_model(config.model).to(ctx.device)
    parameters = count_parameters(model)
    if config.max_parameters is not None and parameters > config.max_parameters:
        raise JobError(
            f"the model has {parameters:,} trainable parameters, over model.maxParameters "
            f"{config.max_parameters:,}: not trained; make the model smaller or raise the limit"
        )
    fingerprint = spec_fingerprint(config.model)
    steps_per_epoch = batches_per_epoch(len(train_split), hp.batch_size, ctx.world_size)
    optimizer = make_optimizer(model, hp)
    # A run that is to be continued with more epochs (a search's next rung) keeps one
    # schedule: the resumed scheduler state only lines up with the same length.
    schedule_epochs = max(hp.schedule_epochs or hp.epochs, hp.epochs)
    schedule = make_schedule(optimizer, steps_per_epoch * schedule_epochs)

    state = TrainState(fingerprint=fingerprint)
    resumed_from: int | None = None
    if config.checkpoint.dir and config.checkpoint.resume:
        saved = load_checkpoint(config.checkpoint.dir, fingerprint)
        if saved is not None:
            state = saved
            model.load_state_dict(saved.model)
            optimizer.load_state_dict(saved.optimizer)
            schedule.load_state_dict(saved.scheduler)
            resumed_from = saved.step
            log.info("resumed from step %d (epoch %d)", saved.step, saved.epoch + 1)

    net: nn.Module = DistributedDataParallel(model) if ctx.distributed else model
    autocast = _autocast_factory(ctx, hp.mixed_precision)
    progress = Progress("train", config.runtime.metrics_port if ctx.is_main else None)
    last_checkpoint: str | None = None

    def checkpoint() -> None:
        nonlocal last_checkpoint
        if config.checkpoint.dir and ctx.is_main:
            state.model = model.state_dict()
            state.optimizer = optimizer.state_dict()
            state.scheduler = schedule.state_dict()
            last_checkpoint = str(save_checkpoint(config.checkpoint.dir, state))

    train_seconds = 0.0
    trained_samples = 0
    try:
        while state.epoch < hp.epochs:
            net.train()
            progress.epoch.set(state.epoch + 1)
            started = time.perf_counter()
            epoch_samples = 0
            losses: list[float] = []
            batches = shard_batches(
                train_split,
                hp.batch_size,
                ctx,
                seed=hp.seed,
                epoch=state.epoch,
                skip=state.batch_in_epoch,
            )
            for images, labels in batches:
                augmentation_seed, modules_seed = step_seeds(hp.seed, state.step, ctx.rank)
                seed_modules(modules_seed, ctx.device)  # dropout's masks
                inputs = (
                    augment(images, torch.Generator().manual_seed(augmentation_seed))
                    if config.dataset.augment
                    else images
                )
                loss = train_step(
                    net,
                    optimizer,
                    inputs.to(ctx.device, non_blocking=True),
                    labels.to(ctx.device, non_blocking=True),
                    autocast=autocast,
                    step=state.step,
                )
                schedule.step()
                losses.append(loss)
                state.step += 1
                state.batch_in_epoch += 1
                epoch_samples += len(labels) * ctx.world_size
                progress.step.set(state.step)
                progress.loss.set(loss)
                progress.samples_per_second.set(
                    epoch_samples / max(time.perf_counter() - started, 1e-9)
                )
                if state.step % config.checkpoint.every_steps == 0:
                    checkpoint()
            seconds = time.perf_counter() - started
            train_seconds += seconds
            trained_samples += epoch_samples
            mean_loss = ctx.all_reduce_sum([sum(losses) / max(len(losses), 1)])[0] / ctx.world_size
            accuracy = evaluate(model, test_split, ctx)
            state.loss_history.append(mean_loss)
            state.accuracy_history.append(accuracy)
            state.epoch_seconds.append(seconds)
            state.epoch += 1
            state.batch_in_epoch = 0
            progress.accuracy.set(accuracy)
            progress.samples_per_second.set(epoch_samples / max(seconds, 1e-9))
            log.info(
                "epoch %d/%d loss %.4f accuracy %.4f (%.1fs)",
                state.epoch,
                hp.epochs,
                mean_loss,
                accuracy,
                seconds,
            )
            checkpoint()
    finally:
        progress.close()

    accuracy = (
        state.accuracy_history[-1] if state.accuracy_history else evaluate(model, test_split, ctx)
    )
    size_bytes, latency = _export(config, ctx, model, test_split, accuracy)
    ctx.barrier()
    if config.checkpoint.dir and checkpoint_path(config.checkpoint.dir).exists():
        last_checkpoint = str(checkpoint_path(config.checkpoint.dir))
    return TrainSummary(
        accuracy=accuracy,
        loss=state.loss_history[-1] if state.loss_history else float("nan"),
        epochs=state.epoch,
        steps=state.step,
        samples_per_second=trained_samples / train_seconds if train_seconds else 0.0,
        world_size=ctx.world_size,
        model_uri=config.output_uri,
        last_checkpoint=last_checkpoint,
        resumed_from_step=resumed_from,
        loss_history=state.loss_history,
        accuracy_history=state.accuracy_history,
        epoch_seconds=state.epoch_seconds,
        parameters=parameters,
        latency_ms=latency,
        size_bytes=size_bytes,
    )
