"""The trainer: a run's networks, optimisers and random streams, set up from a :class:`TrainConfig`.

Its training step is :class:`~colorize_cli.app.train.step.TrainStep`, its state on disk
:class:`~colorize_cli.app.train.checkpoints.Checkpoints`; here are the set-up (the generator from
the registry, ``--init`` weights or its pretrained part; the discriminator of the recipe; Adam with
a group of its own for a pretrained encoder; the DDP wrappers under ``torchrun``) and validation.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from colorize_cli.app.distributed import World
from colorize_cli.app.train.checkpoints import Checkpoints
from colorize_cli.app.train.config import (
    RANK_SEED_STRIDE,
    TrainConfig,
    TrainSetupError,
    _log,
    check_run,
    load_perceptual,
    training_recipe,
)
from colorize_cli.app.train.hints import simulate_hints
from colorize_cli.app.train.step import TrainStep
from colorize_cli.engine import metrics
from colorize_cli.engine.hub import resolve
from colorize_cli.engine.networks import load_generator
from colorize_cli.errors import OptionError, error_text
from colorize_cli.io.images import save_pil
from colorize_cli.models import create_discriminator, create_model, get_spec, saved_options
from colorize_cli.models.colorspace import model_output_to_rgb, rgb_to_model_input
from colorize_cli.models.encoders import EncoderWeightsError
from colorize_cli.models.losses import ColorRebalance


class Trainer(Checkpoints, TrainStep):
    def __init__(self, config: TrainConfig, device: str = "cpu", world: World | None = None):
        self.config = config
        self.world = world = world if world is not None else World()
        self.device = torch.device(device)
        # bfloat16 autocast where it is fast and safe (no loss scaling needed): a GPU by default
        amp = config.amp if config.amp is not None else self.device.type == "cuda"
        if amp and self.device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
            _log("--amp: this GPU has no bfloat16; training in float32")
            amp = False
        self.amp = amp
        self.channels_last = self.device.type == "cuda"
        self.spec = get_spec(config.model)
        self.recipe = training_recipe(self.spec, config)
        check_run(self.spec, config, world.size)
        self.perceptual, self.perceptual_name = None, None
        if self.recipe.perceptual_weight:
            self.perceptual, self.perceptual_name = load_perceptual(config.model, config.perceptual)
        torch.manual_seed(config.seed)
        init_state, init_options = _read_init(config.init) if config.init else (None, None)
        # the builder options: --model-option, else those of the --init weights, else the registered ones
        self.model_options = config.model_options if config.model_options is not None else init_options
        misfit = f"{{init}} {config.init}: its weights do not fit {config.model}"
        try:
            self.generator = create_model(config.model, **(self.model_options or {}))
        except (TypeError, ValueError) as exc:  # an unknown option or value of --model-option (or --init's)
            if config.model_options is None and init_options:
                raise TrainSetupError(f"{misfit} (options {init_options}: {exc})") from exc
            raise TrainSetupError(f"{{model_option}} {self.model_options}: {config.model}: {exc}") from exc
        # the part a model starts from published weights (``load_pretrained``); None when it has none
        self.encoder = getattr(self.generator, "pretrained_encoder", None)
        if (config.freeze_encoder or config.encoder_lr != 1.0) and self.encoder is None:
            raise TrainSetupError(f"{{freeze_encoder}}/{{encoder_lr}}: {config.model} has no pretrained encoder")
        if init_state is not None:
            # a model built on another (the hint model on the flagship) starts its own parts afresh
            added = tuple(getattr(self.generator, "parts_beyond_init", ()))
            try:
                missing, unexpected = self.generator.load_state_dict(init_state, strict=False)
            except RuntimeError as exc:
                raise TrainSetupError(f"{misfit} with options {self.model_options or {}} (other layers)") from exc
            if unexpected or any(not (added and k.startswith(added)) for k in missing):
                raise TrainSetupError(f"{misfit} with options {self.model_options or {}} (other layers)")
        elif config.pretrained and self.encoder is not None:
            try:
                self.generator.load_pretrained()
            except EncoderWeightsError as exc:
                raise TrainSetupError(str(exc)) from exc
        self.generator.to(self.device)
        lr = config.lr or self.recipe.lr
        self.opt_g = torch.optim.Adam(self._param_groups(lr), lr=lr, betas=self.recipe.betas)
        self.discriminator: nn.Module | None = None
        self.opt_d = None
        if self.recipe.discriminator:
            options = {**self.recipe.discriminator_options, **(config.discriminator_options or {})}
            self.discriminator = create_discriminator(self.recipe.discriminator, **options).to(self.device)
            self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=self.recipe.betas)
        self._set_base_rates()
        if self.channels_last:
            for net in (self.generator, self.discriminator):
                if net is not None:
                    net.to(memory_format=torch.channels_last)
        # under torchrun the training pass calls DDP wrappers, which average the gradients
        self._g_parallel = self._d_parallel = None
        if world.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self._g_parallel = DistributedDataParallel(self._g_pass(), device_ids=ids)
            if self.discriminator is not None:
                self._d_parallel = DistributedDataParallel(self.discriminator, device_ids=ids)
            torch.manual_seed(config.seed + RANK_SEED_STRIDE * world.rank)  # each rank its own noise
        self.step = 0
        self.seconds_before = 0.0  # training wall time of earlier runs of this checkpoint
        self.started = time.perf_counter()
        self.rng = torch.Generator().manual_seed(config.seed + RANK_SEED_STRIDE * world.rank)
        self.rebalance: ColorRebalance | None = None
        self.out = Path(config.output)
        self.out.mkdir(parents=True, exist_ok=True)

    def _set_base_rates(self) -> None:
        """Record each optimiser group's base rate (the recipe's or --lr, x --encoder-lr for a pretrained
        encoder) from the config, so that a resumed run with other rates takes them up."""
        lr = self.config.lr or self.recipe.lr
        bases = [lr] if self.encoder is None else [lr, lr * self.config.encoder_lr]
        for group, base in zip(self.opt_g.param_groups, bases, strict=True):
            group["base_lr"] = base
        if self.opt_d is not None:
            for group in self.opt_d.param_groups:
                group["base_lr"] = lr

    def _param_groups(self, lr: float) -> list[dict]:
        """The generator's parameters for Adam: a pretrained encoder in a group of its own (its rate
        ``encoder_lr`` x ``lr``, and no updates while frozen), the rest at ``lr``."""
        # a model may keep part of itself frozen (the hint model's flagship): ``trainable_parameters``
        chosen = getattr(self.generator, "trainable_parameters", self.generator.parameters)()
        learns = {id(p) for p in chosen}
        if self.encoder is None:
            return [{"params": [p for p in self.generator.parameters() if id(p) in learns], "lr": lr}]
        enc = {id(p) for p in self.encoder.parameters()}
        rest = [p for p in self.generator.parameters() if id(p) not in enc and id(p) in learns]
        for p in self.encoder.parameters():
            p.requires_grad_(not self.config.freeze_encoder and id(p) in learns)
        return [{"params": rest, "lr": lr}, {"params": list(self.encoder.parameters()), "lr": lr * self.config.encoder_lr}]

    def predict(self, l_norm: torch.Tensor, hints: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        """The generator's ab for normalised L, as inference runs it (a fixed-size network sees L
        resized to its size, and its ab is resized back); ``hints`` for a hint-taking model."""
        self.generator.eval()
        l_in = self.model_input(l_norm.to(self.device), training=False)
        if hints:
            return self.generator(l_in, *(h.to(self.device) for h in hints))
        size = self.spec.fixed_size
        if size and tuple(l_in.shape[-2:]) != (size, size):
            small = F.interpolate(l_in, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            return F.interpolate(self.generator(small), size=l_in.shape[-2:], mode="bilinear",
                                 align_corners=False)
        return self.generator(l_in)

    @torch.no_grad()
    def validate(self, val_images: torch.Tensor) -> dict[str, float]:
        """Colorize the validation crops, save a grid, and return the EVAL.md metrics on them."""
        self.generator.eval()
        rgb = val_images.permute(0, 3, 1, 2).float().div(255)
        l_norm, ab = rgb_to_model_input(rgb)
        # a hint-taking model is judged with hints simulated from the truth, the same ones every time
        hints = simulate_hints(ab, torch.Generator().manual_seed(0)) if getattr(self.generator, "hints", False) else ()
        fake = self.predict(l_norm, hints).cpu()
        out = (model_output_to_rgb(l_norm, fake) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        gray = np.repeat((model_output_to_rgb(l_norm, torch.zeros_like(fake)) * 255).round().byte()
                         .permute(0, 2, 3, 1).numpy(), 1, axis=0)
        truth = val_images.numpy()
        rows = [metrics.image_metrics(o, t) for o, t in zip(out, truth)]
        summary = metrics.summarize(rows)
        summary["val_l1"] = float((fake - ab).abs().mean())
        save_grid([gray, out, truth], self.out / "samples" / f"step_{self.step:07d}.png")
        return summary


def _read_init(source: str) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The generator weights and builder options of ``--init`` (a weights.toml name, a file or an
    ``hf://`` reference), as float32; a one-line :class:`TrainSetupError` when they cannot be had."""
    try:
        net, config = load_generator(resolve(source))
    except (KeyError, OSError, ValueError, RuntimeError) as exc:
        reason = exc.template if isinstance(exc, OptionError) else error_text(exc)
        raise TrainSetupError(f"{{init}} {source}: {reason}") from exc
    return net.state_dict(), saved_options(config["arch"], config.get("options")) or None


def save_grid(rows: list[np.ndarray], path: Path, columns: int = 8) -> None:
    """Save a grid: for each image a column of (gray, colorized, truth); ``rows`` are (N,H,W,3)."""
    n = min(len(rows[0]), columns)
    h, w = rows[0].shape[1:3]
    canvas = np.zeros((len(rows) * h, n * w, 3), dtype=np.uint8)
    for r, arr in enumerate(rows):
        for i in range(n):
            canvas[r * h:(r + 1) * h, i * w:(i + 1) * w] = arr[i]
    save_pil(Image.fromarray(canvas), path)
