"""Data-parallel training under ``torchrun``: the same ``colorize train`` command on N processes.

``torchrun --nproc-per-node N -m colorize_cli train ...`` starts N copies; each reads RANK, WORLD_SIZE
and LOCAL_RANK from the environment, joins one process group (NCCL on CUDA, gloo on CPU), takes
``batch_size / N`` images of every step from its own random stream (the distributed equivalent of a
DistributedSampler for a sampler that draws random crops) and wraps the networks in
DistributedDataParallel, which averages the gradients. Rank 0 alone writes checkpoints, weights,
samples and logs. Without torchrun this is a world of one and nothing here does anything.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from colorize_cli.errors import OptionError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """A CUDA process uses the GPU of its local rank (``cuda`` -> ``cuda:LOCAL_RANK``)."""
        if self.distributed and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def gather(self, obj) -> list:
        """``obj`` of every rank, in rank order (a collective: every rank must call it)."""
        if not self.distributed:
            return [obj]
        out: list = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over the ranks of each value (losses of the global batch; a collective)."""
        if not self.distributed or not values:
            return values
        on = "cuda" if dist.get_backend() == "nccl" else "cpu"  # NCCL reduces GPU tensors only
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=on)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.size).cpu().tolist()))

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


# rank 0 may download and decode a dataset while the others wait in a barrier: allow for it
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


def world_size() -> int:
    """How many processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def init_world(device: str = "cpu") -> World:
    """Join the process group that torchrun describes in the environment (a world of one otherwise)."""
    size = world_size()
    if size <= 1:
        return World()
    if device.startswith("cuda:"):
        raise OptionError(f"{{device}} {device}: under torchrun each process takes the GPU of its local rank; "
                          "use {device} cuda (and CUDA_VISIBLE_DEVICES to choose the GPUs)")
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    world = World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device.startswith("cuda"):
        torch.cuda.set_device(world.local_rank)
    return world


def close_world(world: World, ok: bool = True) -> None:
    """Leave the process group: after a barrier when this rank finished, at once when it failed (a
    barrier would wait for ranks that are blocked elsewhere; torchrun ends the others)."""
    if world.distributed and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()
