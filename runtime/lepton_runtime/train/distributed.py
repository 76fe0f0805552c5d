"""torchrun-compatible process-group setup.

torchrun (and Kubeflow's PyTorchJob) describe the job through RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT. Without them we run as a single process with no process group at
all, so the same code path works under `python -m` and `torchrun`. The backend follows the
device: nccl with CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, artifacts and serves metrics."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group is active."""
        return self.world_size > 1

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Sum floats over all ranks (identity in a single process)."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return [float(v) for v in tensor.tolist()]

    def broadcast_from_main(self, value: T) -> T:
        """Rank 0's `value` on every rank: one decision, even where ranks measured differently
        (latency, or TorchScript name mangling that shifts archive sizes by a few bytes)."""
        if not self.distributed:
            return value
        holder: list[object] = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]  # type: ignore[return-value]

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.distributed:
            dist.barrier()


def init_distributed(num_threads: int | None = None) -> DistContext:
    """Join the process group described by torchrun's environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    # Processes sharing a node share its cores; oversubscription makes DDP slower than 1 process.
    threads = num_threads or max(1, (os.cpu_count() or 1) // max(1, local_world_size))
    torch.set_num_threads(threads)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank, world_size, local_rank, local_world_size, device)


def shutdown_distributed() -> None:
    """Leave the process group cleanly so torchrun sees a normal exit."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
