"""One trainer for every model of the zoo.

The registered :class:`~colorize_cli.models.registry.Recipe` says what to train: an optional
discriminator, its adversarial loss and critic steps, the L1 weight. The loop is the same for all:
sample a batch of (L, ab), update the discriminator ``critic_steps`` times, update the generator
with ``adversarial + l1_weight * L1``. Checkpoints are plain dicts (nanoGPT style) written
atomically, and hold the RNG state so that ``--resume`` continues the same run.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from colorize_cli import metrics
from colorize_cli.color import model_output_to_rgb, rgb_to_model_input
from colorize_cli.data import BatchSampler, load_folder
from colorize_cli.losses import ColorRebalance, adversarial_loss, gradient_penalty, l1_loss
from colorize_cli.models import create_discriminator, create_model, get_spec
from colorize_cli.weights import export_generator


@dataclass
class TrainConfig:
    model: str
    dataset: str
    output: str
    steps: int = 10000
    batch_size: int = 32
    size: int = 64
    lr: float | None = None  # None: the recipe's
    val: str | None = None  # folder of held-out photos for grids and validation metrics
    val_count: int = 16
    checkpoint_every: int = 1000
    rebalance: float = 0.0  # strength λ of colour rebalancing of the L1 term (0 = off)
    seed: int = 0
    threads: int | None = None
    cache_dir: str | None = None


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Trainer:
    def __init__(self, config: TrainConfig, device: str = "cpu"):
        self.config = config
        self.device = torch.device(device)
        self.spec = get_spec(config.model)
        self.recipe = self.spec.recipe
        torch.manual_seed(config.seed)
        self.generator = create_model(config.model).to(self.device)
        lr = config.lr or self.recipe.lr
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=self.recipe.betas)
        self.discriminator: nn.Module | None = None
        self.opt_d = None
        if self.recipe.discriminator:
            self.discriminator = create_discriminator(
                self.recipe.discriminator, **self.recipe.discriminator_options).to(self.device)
            self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=self.recipe.betas)
        self.step = 0
        self.rng = torch.Generator().manual_seed(config.seed)
        self.rebalance: ColorRebalance | None = None
        self.out = Path(config.output)
        self.out.mkdir(parents=True, exist_ok=True)

    # ----- state -----
    def state_dict(self) -> dict:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict() if self.discriminator else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "step": self.step,
            "config": asdict(self.config),
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "rebalance": self.rebalance.weights if self.rebalance else None,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["config"]["model"] != self.config.model:
            raise ValueError(f"checkpoint is for model {state['config']['model']!r}, not {self.config.model!r}")
        self.generator.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])
        self.step = state["step"]
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("rebalance") is not None:
            self.rebalance = ColorRebalance(state["rebalance"])

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(self.checkpoint_path)

    def resume(self) -> None:
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        self.load_state_dict(state)

    # ----- one step -----
    def train_step(self, l_norm: torch.Tensor, ab: torch.Tensor) -> dict[str, float]:
        """One optimisation step of the recipe; returns the losses."""
        recipe, g, d = self.recipe, self.generator, self.discriminator
        l_norm, ab = l_norm.to(self.device), ab.to(self.device)
        g.train()
        fake = g(l_norm)
        logs: dict[str, float] = {}
        if d is not None:
            d.train()
            for _ in range(recipe.critic_steps):
                loss_d = 0.5 * (adversarial_loss(d(l_norm, ab), True, recipe.gan_loss)
                                + adversarial_loss(d(l_norm, fake.detach()), False, recipe.gan_loss))
                if recipe.gan_loss == "wgangp":
                    loss_d = loss_d + recipe.gp_weight * gradient_penalty(d, l_norm, ab, fake)
                self.opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                self.opt_d.step()
            logs["loss_d"] = float(loss_d.detach())
        weights = self.rebalance(ab) if self.rebalance is not None else None
        loss_l1 = l1_loss(fake, ab, weights)
        loss_g = recipe.l1_weight * loss_l1
        if d is not None:
            for p in d.parameters():
                p.requires_grad_(False)
            loss_adv = adversarial_loss(d(l_norm, fake), True, recipe.gan_loss)
            for p in d.parameters():
                p.requires_grad_(True)
            loss_g = loss_g + loss_adv
            logs["loss_adv"] = float(loss_adv.detach())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.step += 1
        logs["loss_l1"] = float(l1_loss(fake.detach(), ab))
        logs["loss_g"] = float(loss_g.detach())
        return logs

    # ----- validation -----
    @torch.no_grad()
    def validate(self, val_images: torch.Tensor) -> dict[str, float]:
        """Colorize the validation crops, save a grid, and return the EVAL.md metrics on them."""
        self.generator.eval()
        rgb = val_images.permute(0, 3, 1, 2).float().div(255)
        l_norm, ab = rgb_to_model_input(rgb)
        fake = self.generator(l_norm.to(self.device)).cpu()
        out = (model_output_to_rgb(l_norm, fake) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        gray = np.repeat((model_output_to_rgb(l_norm, torch.zeros_like(fake)) * 255).round().byte()
                         .permute(0, 2, 3, 1).numpy(), 1, axis=0)
        truth = val_images.numpy()
        rows = [metrics.image_metrics(o, t) for o, t in zip(out, truth)]
        summary = metrics.summarize(rows)
        summary["val_l1"] = float((fake - ab).abs().mean())
        save_grid([gray, out, truth], self.out / "samples" / f"step_{self.step:07d}.png")
        return summary


def save_grid(rows: list[np.ndarray], path: Path, columns: int = 8) -> None:
    """Save a grid: for each image a column of (gray, colorized, truth); ``rows`` are (N,H,W,3)."""
    n = min(len(rows[0]), columns)
    h, w = rows[0].shape[1:3]
    canvas = np.zeros((len(rows) * h, n * w, 3), dtype=np.uint8)
    for r, arr in enumerate(rows):
        for i in range(n):
            canvas[r * h:(r + 1) * h, i * w:(i + 1) * w] = arr[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)


def train(config: TrainConfig, resume: bool = False, device: str = "cpu", progress: bool = True) -> Path:
    """Run (or continue) training to ``config.steps``; returns the path of the exported weights."""
    if config.threads:
        torch.set_num_threads(config.threads)
    trainer = Trainer(config, device)
    if resume:
        if not trainer.checkpoint_path.exists():
            raise FileNotFoundError(f"{trainer.checkpoint_path}: no checkpoint to resume from")
        trainer.resume()
        _log(f"resumed {config.model} at step {trainer.step}")
    cache_dir = Path(config.cache_dir) if config.cache_dir else trainer.out / "cache"
    data = load_folder(Path(config.dataset), round(config.size * 1.25), cache_dir)
    skipped = ", ".join(f"{v} {k}" for k, v in sorted(data.skipped.items())) or "none"
    _log(f"dataset {config.dataset}: {len(data.images)} colour photos of {data.files} files (skipped: {skipped})")
    if config.rebalance > 0 and trainer.rebalance is None:
        probe = BatchSampler(data.images, config.size, 256, torch.Generator().manual_seed(1))
        trainer.rebalance = ColorRebalance.fit(probe.next()[1], config.rebalance)
    sampler = BatchSampler(data.images, config.size, config.batch_size, trainer.rng)
    val_images = None
    if config.val:
        val_images = load_folder(Path(config.val), 128, cache_dir).images[: config.val_count]

    log_file = open(trainer.out / "metrics.jsonl", "a")
    export_path = trainer.out / f"{config.model}.safetensors"

    def checkpoint() -> None:
        trainer.save_checkpoint()
        extra = {"step": trainer.step, "trained_on": config.dataset, "train_size": config.size}
        export_generator(trainer.generator, config.model, export_path, extra)
        export_generator(trainer.generator, config.model,
                         trainer.out / "snapshots" / f"step_{trainer.step:07d}.safetensors", extra)
        if val_images is not None:
            v = trainer.validate(val_images)
            log_file.write(json.dumps({"step": trainer.step, "val": v}) + "\n")
            log_file.flush()
            _log(f"step {trainer.step}: val AuC {v['auc']:.2f} CF {v['cf']:.1f} (truth {v['cf_gt']:.1f}) "
                 f"L1 {v['val_l1']:.4f}")

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
    t0, seen, logs = time.perf_counter(), 0, {}
    with Progress(*columns, disable=not (progress and sys.stderr.isatty()), transient=False) as bar:
        task = bar.add_task(f"train {config.model}", total=config.steps, completed=trainer.step, info="")
        while trainer.step < config.steps:
            l_norm, ab = sampler.next()
            logs = trainer.train_step(l_norm, ab)
            seen += l_norm.shape[0]
            rate = seen / (time.perf_counter() - t0)
            if not all(math.isfinite(v) for v in logs.values()):
                raise FloatingPointError(f"step {trainer.step}: loss is not finite ({logs})")
            info = " ".join(f"{k} {v:.4f}" for k, v in logs.items()) + f" {rate:.0f} img/s"
            bar.update(task, completed=trainer.step, info=info)
            if trainer.step % 50 == 0:
                log_file.write(json.dumps({"step": trainer.step, **logs, "img_per_s": rate}) + "\n")
                if not sys.stderr.isatty():
                    _log(f"step {trainer.step}/{config.steps} {info}")
            if trainer.step % config.checkpoint_every == 0:
                checkpoint()
                log_file.flush()
    if trainer.step % config.checkpoint_every != 0 or not export_path.exists():
        checkpoint()
    log_file.close()
    _log(f"done: step {trainer.step}, {time.perf_counter() - t0:.0f} s; weights {export_path}")
    return export_path
