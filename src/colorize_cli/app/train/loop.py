"""The training loop: :func:`train` runs a :class:`~colorize_cli.app.train.trainer.Trainer` to
``config.steps``.

It reads the data (one or several sources, mixed by weight), fits the colour rebalancing, samples
the batches, steps, logs the losses to ``metrics.jsonl`` and a progress bar, and at every
``checkpoint_every`` steps (and at the end) saves the checkpoint, exports the weights and their
snapshot, and scores the validation photos. Under ``torchrun`` every process runs it; rank 0 writes.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from colorize_cli.app.data import BatchSampler, SourceMix, load_folder, mix_sources, parse_source
from colorize_cli.app.datasets import load_dataset
from colorize_cli.app.distributed import World, close_world, init_world
from colorize_cli.app.train.config import TrainConfig, _log
from colorize_cli.app.train.trainer import Trainer
from colorize_cli.models.losses import ColorRebalance


def train(config: TrainConfig, resume: bool = False, device: str = "cpu", progress: bool = True) -> Path:
    """Run (or continue) training to ``config.steps``; returns the path of the exported weights.

    Under ``torchrun --nproc-per-node N`` every process runs this with the same arguments: each takes
    ``batch_size / N`` images per step, DDP averages the gradients, and rank 0 writes the files.
    """
    world = init_world(device)
    ok = False
    try:
        path = _train(config, resume, world.device(device), progress, world)
        ok = True
        return path
    finally:
        close_world(world, ok)


def _load_data(config: TrainConfig, cache_dir: Path, world: World,
               log: Callable[[str], None]) -> tuple[list[str], SourceMix, torch.Tensor | None]:
    """The names of the training sources, their mix, and the validation photos (rank 0 alone reads those)."""
    if not world.is_main:
        world.barrier()  # rank 0 decodes the dataset into the cache first; the others read the cache
    specs = [config.dataset] if isinstance(config.dataset, str) else list(config.dataset)
    parts = []
    for spec in specs:
        name, weight = parse_source(spec)
        parts.append((name, load_dataset(name, round(config.size * 1.25), cache_dir), weight))
    mix = mix_sources(parts, config.source_balance)
    val_images = None
    if config.val and world.is_main:
        val_images = load_folder(Path(config.val), 128, cache_dir).images[: config.val_count]
    if world.is_main:
        world.barrier()
    for name, data, _ in parts:
        skipped = ", ".join(f"{v} {k}" for k, v in sorted(data.skipped.items())) or "none"
        log(f"dataset {name}: {len(data.images)} colour photos of {data.files} files (skipped: {skipped})")
    if len(mix.shares) > 1:
        log("draws: " + "; ".join(mix.describe()))
    return specs, mix, val_images


def _train(config: TrainConfig, resume: bool, device: str, progress: bool, world: World) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    log = _log if world.is_main else (lambda msg: None)
    trainer = Trainer(config, device, world)
    if resume:
        if not trainer.checkpoint_path.exists():
            raise FileNotFoundError(f"{trainer.checkpoint_path}: no checkpoint to resume from")
        trainer.resume()
        log(f"resumed {config.model} at step {trainer.step}")
    if world.distributed:
        log(f"data-parallel on {world.size} processes: {config.batch_size // world.size} images each per step")
    cache_dir = Path(config.cache_dir) if config.cache_dir else trainer.out / "cache"
    specs, mix, val_images = _load_data(config, cache_dir, world, log)
    if resume and config.rebalance != trainer.resumed_rebalance:
        log(f"colour rebalancing: {trainer.resumed_rebalance} in the checkpoint, {config.rebalance} from now on")
        trainer.rebalance = None
    if config.rebalance > 0 and trainer.rebalance is None:
        probe = BatchSampler(mix.images, config.size, 256, torch.Generator().manual_seed(1),
                             probabilities=mix.probabilities)
        trainer.rebalance = ColorRebalance.fit(probe.next()[1], config.rebalance)
    sampler = BatchSampler(mix.images, config.size, config.batch_size // world.size, trainer.rng,
                           probabilities=mix.probabilities)

    log_file = open(trainer.out / "metrics.jsonl", "a") if world.is_main else None  # noqa: SIM115
    export_path = trainer.out / f"{config.model}.safetensors"

    saved_at = -1

    def checkpoint() -> None:
        nonlocal saved_at
        saved_at = trainer.step  # on every rank: whether to checkpoint must never differ between ranks
        state = trainer.state_dict()  # every rank: the RNG states are gathered
        if not world.is_main:
            return
        trainer.save_checkpoint(state)
        trainer.export_weights(export_path, " + ".join(specs), state["seconds"])
        if val_images is not None:
            v = trainer.validate(val_images)
            log_file.write(json.dumps({"step": trainer.step, "val": v}) + "\n")
            log_file.flush()
            log(f"step {trainer.step}: val AuC {v['auc']:.2f} CF {v['cf']:.1f} (truth {v['cf_gt']:.1f}) "
                f"L1 {v['val_l1']:.4f}")

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
    t0, seen, logs = time.perf_counter(), 0, {}
    trainer.started = t0
    show = progress and world.is_main and sys.stderr.isatty()
    try:
        with Progress(*columns, disable=not show, transient=False) as bar:
            task = bar.add_task(f"train {config.model}", total=config.steps, completed=trainer.step, info="")
            while trainer.step < config.steps:
                l_norm, ab = sampler.next()
                logs = world.mean(trainer.train_step(l_norm, ab))  # the losses of the global batch
                seen += l_norm.shape[0] * world.size
                rate = seen / (time.perf_counter() - t0)
                if not all(math.isfinite(v) for v in logs.values()):
                    raise FloatingPointError(f"step {trainer.step}: loss is not finite ({logs})")
                info = " ".join(f"{k} {v:.4f}" for k, v in logs.items()) + f" {rate:.0f} img/s"
                bar.update(task, completed=trainer.step, info=info)
                if trainer.step % 50 == 0 and log_file is not None:
                    log_file.write(json.dumps({"step": trainer.step, **logs, "img_per_s": rate}) + "\n")
                    if not sys.stderr.isatty():
                        log(f"step {trainer.step}/{config.steps} {info}")
                if trainer.step % config.checkpoint_every == 0:
                    checkpoint()
                    if log_file is not None:
                        log_file.flush()
            if saved_at != trainer.step:
                checkpoint()
    finally:
        if log_file is not None:
            log_file.close()
    _check_in_step(trainer)
    log(f"done: step {trainer.step}, {time.perf_counter() - t0:.0f} s; weights {export_path}")
    return export_path


def _check_in_step(trainer: Trainer) -> None:
    """Data-parallel ranks must end with the same weights (DDP keeps them so); say so if they do not."""
    if not trainer.world.distributed:
        return
    sums = trainer.world.gather(sum(float(p.detach().double().sum()) for p in trainer.generator.parameters()))
    if max(sums) != min(sums):
        raise RuntimeError(f"the {trainer.world.size} processes ended with different weights (sums {sums})")
