"""One trainer for every model of the zoo.

The registered :class:`~colorize_cli.models.registry.Recipe` says what to train: an optional
discriminator, its adversarial loss and critic steps, the reconstruction loss and the weights of the
other terms. The loop is the same for all, and reads only the recipe: sample a batch of (L, ab),
update the discriminator ``critic_steps`` times, update the generator with
``recon_weight·recon + adversarial + perceptual_weight·perceptual + kl_weight·KL`` (the perceptual
distance: the official LPIPS or its form on a pretrained encoder, ``--perceptual``). Checkpoints are plain
dicts (nanoGPT style) written atomically, and hold the RNG state so that ``--resume`` continues the
same run. Under ``torchrun`` the same loop runs data-parallel (:mod:`colorize_cli.app.distributed`); on a
GPU it runs in bfloat16 autocast with channels-last tensors unless ``--no-amp``.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from colorize_cli.app.data import BatchSampler, load_folder, mix_sources, parse_source
from colorize_cli.app.datasets import load_dataset
from colorize_cli.app.distributed import World, close_world, init_world
from colorize_cli.color import AB_SCALE, model_output_to_rgb, rgb_to_model_input
from colorize_cli.engine import metrics
from colorize_cli.engine.hub import resolve
from colorize_cli.engine.weights import export_generator, load_generator
from colorize_cli.io.atomic import atomic_write
from colorize_cli.io.images import save_pil
from colorize_cli.models import ModelSpec, create_discriminator, create_model, get_spec, saved_options
from colorize_cli.models.encoders import ENCODERS, EncoderWeightsError
from colorize_cli.models.losses import (
    ColorRebalance,
    adversarial_loss,
    color_classification_loss,
    gradient_penalty,
    kl_divergence,
    l1_loss,
    reconstruction_loss,
)
from colorize_cli.preprocess import prepare_l


@dataclass
class TrainConfig:
    model: str
    dataset: str | list[str]  # one or several PATH|NAME[:WEIGHT] (colorize_cli.app.data.parse_source)
    output: str
    steps: int = 10000
    batch_size: int = 32
    size: int = 64
    lr: float | None = None  # None: the recipe's
    lr_decay_steps: int = 0  # the rates fall linearly over the last N steps before --steps (0 = constant)
    val: str | None = None  # folder of held-out photos for grids and validation metrics
    val_count: int = 16
    checkpoint_every: int = 1000
    rebalance: float = 0.0  # strength λ of colour rebalancing of the L1 term (0 = off)
    seed: int = 0
    threads: int | None = None
    cache_dir: str | None = None
    gan_loss: str | None = None  # bce | lsgan | wgangp; None: the recipe's
    recon_loss: str | None = None  # l1 | mse on ab instead of the recipe's; None: the recipe's
    blur: bool = False  # Gaussian blur (k=5, σ=0.7) of the L input, in training only
    equalize: bool = False  # histogram equalisation of the L input (recorded in the weights for inference)
    model_options: dict | None = None  # overrides of the registered generator options (e.g. width)
    discriminator_options: dict | None = None  # overrides of the recipe's discriminator options
    amp: bool | None = None  # bfloat16 autocast (+ channels-last on CUDA); None: on for CUDA, off on CPU
    pretrained: bool = True  # start a model's pretrained part (its ``load_pretrained``) from published weights
    freeze_encoder: bool = False  # train everything but a pretrained encoder (batch-norm statistics frozen too)
    encoder_lr: float = 1.0  # the pretrained encoder's learning rate, as a multiple of --lr
    source_balance: float = 0.5  # within a dataset, source folder s is drawn ∝ n_s ** this (0 = equal, 1 = by size)
    perceptual: str = "auto"  # a perceptual term's distance: auto | lpips | an encoder name (PERCEPTUAL_LOSSES)
    perceptual_weight: float | None = None  # the perceptual term's weight; None: the recipe's (0 = off)
    init: str | None = None  # start the generator from these weights (a weights.toml name or a file)


class TrainSetupError(ValueError):
    """The run cannot start (checked before any data is read): the message is one line that says why."""


# rank r of a data-parallel run draws its crops (and noise) from seed + RANK_SEED_STRIDE * r
RANK_SEED_STRIDE = 7919


class _Scores(nn.Module):
    """A classifying generator's training pass, its class ``scores(l)``, as a ``forward`` (for DDP)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return self.net.scores(l_norm)


class _Posterior(nn.Module):
    """A conditional VAE's training pass, ``reconstruct(l, ab)``, as a ``forward`` (which is what
    DistributedDataParallel hooks)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, l_norm: torch.Tensor, ab: torch.Tensor):
        return self.vae.reconstruct(l_norm, ab)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_train_size(spec: ModelSpec, size: int) -> None:
    """Training crops must be what the network can take: its fixed size, or a multiple of its size rule."""
    if spec.fixed_size and size != spec.fixed_size:
        raise TrainSetupError(f"--size {size}: {spec.name} runs at {spec.fixed_size} px only; "
                              f"use --size {spec.fixed_size}")
    if size % spec.size_multiple or size <= 0:
        fit = max(spec.size_multiple, round(size / spec.size_multiple) * spec.size_multiple)
        raise TrainSetupError(f"--size {size}: {spec.name} needs a multiple of {spec.size_multiple} "
                              f"px; use e.g. --size {fit}")


def check_batch(spec: ModelSpec, size: int, batch: int, processes: int = 1) -> None:
    """The batch splits evenly over the processes, and batch norm at the bottleneck needs two values
    per channel: crops that shrink to 1x1 there (pix2pix at 128 px) need 2 images per process."""
    if batch % processes:
        raise TrainSetupError(f"--batch-size {batch}: must be a multiple of the {processes} "
                              f"processes (each takes an equal share)")
    values = (size // spec.size_multiple) ** 2 * (batch // processes)
    if values < 2:
        per = " per process" if processes > 1 else ""
        raise TrainSetupError(f"--batch-size {batch} at --size {size}: {spec.name}'s bottleneck is 1x1 with batch "
                              f"norm, which needs at least 2 images{per}; use --batch-size {2 * processes} or "
                              f"--size {2 * spec.size_multiple}")


# ``--perceptual``: ``lpips`` is the official LPIPS (AlexNet, downloaded); an encoder name is
# colorize_cli.engine.perceptual.EncoderDistance on it; ``auto``: LPIPS where its weights can be had, else the first
PERCEPTUAL_LOSSES = ("auto", "lpips", *ENCODERS)


def load_perceptual(model: str, choice: str = "auto"):
    """The distance of a recipe's perceptual term and its name (what the weights' config records): the
    official LPIPS, or the LPIPS-form distance on a pretrained encoder (``choice``, see
    :data:`PERCEPTUAL_LOSSES`). Its weights are loaded now, so that a run that cannot have them fails
    before training, not hours in."""
    if choice not in PERCEPTUAL_LOSSES:
        raise TrainSetupError(f"--perceptual {choice}: use {', '.join(PERCEPTUAL_LOSSES)}")
    try:
        module = importlib.import_module("colorize_cli.engine.perceptual")
    except ImportError as exc:
        raise TrainSetupError(f"{model} trains with a perceptual loss, but colorize_cli.engine.perceptual cannot be "
                              f"imported ({exc})") from exc
    probe = torch.zeros(1, 3, 64, 64)
    if choice in ("auto", "lpips"):
        try:
            module.lpips_distance(probe, probe)
            return module.lpips_distance, "lpips"
        except module.WeightsUnavailable as exc:
            reason = " ".join(str(exc).split())
            if choice == "lpips":
                raise TrainSetupError(f"{model} trains with an LPIPS loss (--perceptual lpips), whose pretrained "
                                      f"weights are unavailable: {reason}") from exc
            choice = module.DEFAULT_DISTANCE_ENCODER
            _log(f"{model}: the official LPIPS is unavailable ({reason}); its perceptual term is the "
                 f"{choice} feature distance instead (LPIPS's form without learned weights; --perceptual)")
    try:
        module.encoder_distance(probe, probe, encoder=choice)
    except EncoderWeightsError as exc:
        raise TrainSetupError(f"{model} trains with a perceptual loss on {choice} features: {exc}") from exc
    return functools.partial(module.encoder_distance, encoder=choice), choice


class Trainer:
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
        self.recipe = self.spec.recipe.with_gan_loss(config.gan_loss) if config.gan_loss else self.spec.recipe
        if config.recon_loss is not None:
            if config.recon_loss not in ("l1", "mse") or self.recipe.recon_loss == "ce":
                raise TrainSetupError(f"--recon-loss {config.recon_loss}: use l1 or mse, for a model that "
                                      f"regresses ab (this one's loss is {self.recipe.recon_loss})")
            self.recipe = replace(self.recipe, recon_loss=config.recon_loss)
        if config.perceptual_weight is not None:
            if not config.perceptual_weight >= 0:
                raise TrainSetupError(f"--perceptual-weight {config.perceptual_weight}: use a weight >= 0 (0 = off)")
            self.recipe = replace(self.recipe, perceptual_weight=config.perceptual_weight)
        if config.lr_decay_steps < 0:
            raise TrainSetupError(f"--lr-decay-steps {config.lr_decay_steps}: use a number of steps >= 0 (0 = off)")
        check_train_size(self.spec, config.size)
        check_batch(self.spec, config.size, config.batch_size, world.size)
        self.perceptual, self.perceptual_name = None, None
        if self.recipe.perceptual_weight:
            self.perceptual, self.perceptual_name = load_perceptual(config.model, config.perceptual)
        torch.manual_seed(config.seed)
        init_state, init_options = _read_init(config.init) if config.init else (None, None)
        # the builder options: --model-option, else those of the --init weights, else the registered ones
        self.model_options = config.model_options if config.model_options is not None else init_options
        misfit = f"--init {config.init}: its weights do not fit {config.model}"
        try:
            self.generator = create_model(config.model, **(self.model_options or {}))
        except (TypeError, ValueError) as exc:  # an unknown option or value of --model-option (or --init's)
            if config.model_options is None and init_options:
                raise TrainSetupError(f"{misfit} (options {init_options}: {exc})") from exc
            raise TrainSetupError(f"--model-option {self.model_options}: {config.model}: {exc}") from exc
        # the part a model starts from published weights (``load_pretrained``); None when it has none
        self.encoder = getattr(self.generator, "pretrained_encoder", None)
        if (config.freeze_encoder or config.encoder_lr != 1.0) and self.encoder is None:
            raise TrainSetupError(f"--freeze-encoder/--encoder-lr: {config.model} has no pretrained encoder")
        if init_state is not None:
            try:
                self.generator.load_state_dict(init_state)
            except RuntimeError as exc:
                raise TrainSetupError(f"{misfit} with options {self.model_options or {}} (other layers)") from exc
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

    def lr_factor(self, step: int) -> float:
        """The multiple of the base rates for optimiser step ``step + 1``: 1, then over the last
        ``lr_decay_steps`` steps before ``steps`` down linearly to 1/N (as pix2pix decays its rate)."""
        n, left = self.config.lr_decay_steps, self.config.steps - step
        return 1.0 if n <= 0 or left >= n else max(left, 1) / n

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

    def _set_rates(self) -> None:
        """Each optimiser group at its base rate times the schedule's factor for the coming step."""
        factor = self.lr_factor(self.step)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups if opt is not None else []:
                group["lr"] = group.setdefault("base_lr", group["lr"]) * factor

    def _param_groups(self, lr: float) -> list[dict]:
        """The generator's parameters for Adam: a pretrained encoder in a group of its own (its rate
        ``encoder_lr`` x ``lr``, and no updates while frozen), the rest at ``lr``."""
        if self.encoder is None:
            return [{"params": list(self.generator.parameters()), "lr": lr}]
        enc = {id(p) for p in self.encoder.parameters()}
        rest = [p for p in self.generator.parameters() if id(p) not in enc]
        for p in self.encoder.parameters():
            p.requires_grad_(not self.config.freeze_encoder)
        return [{"params": rest, "lr": lr}, {"params": list(self.encoder.parameters()), "lr": lr * self.config.encoder_lr}]

    def _train_mode(self) -> None:
        self.generator.train()
        if self.encoder is not None and self.config.freeze_encoder:
            self.encoder.eval()  # a frozen encoder keeps its ImageNet batch-norm statistics

    def _g_pass(self) -> nn.Module:
        if self.recipe.kl_weight:
            return _Posterior(self.generator)
        return _Scores(self.generator) if self.recipe.recon_loss == "ce" else self.generator

    @property
    def g_step(self) -> nn.Module:
        """What the generator's training pass calls: ``g(l)``, a classifier's ``scores(l)``, or a VAE's
        ``(ab, mu, logvar)`` of (l, ab)."""
        return self._g_parallel if self._g_parallel is not None else self._g_pass()

    @property
    def d_step(self) -> nn.Module | None:
        """What the discriminator's updates call."""
        return self._d_parallel if self._d_parallel is not None else self.discriminator

    # ----- state -----
    def state_dict(self) -> dict:
        """The whole state (a collective under torchrun: every rank's RNG states are gathered)."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        rngs = self.world.gather((self.rng.get_state(), torch.get_rng_state(), cuda))
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict() if self.discriminator else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "step": self.step,
            "seconds": self.seconds,
            "config": asdict(self.config),
            "rng_ranks": rngs,  # (sampler, torch CPU, CUDA or None) of each rank
            "rebalance": self.rebalance.weights if self.rebalance else None,
            "perceptual_loss": self.perceptual_name,
        }

    def load_state_dict(self, state: dict) -> None:
        saved = state["config"]
        if saved["model"] != self.config.model:
            raise ValueError(f"checkpoint is for model {saved['model']!r}, not {self.config.model!r}")
        if saved.get("equalize", False) != self.config.equalize:
            raise ValueError(f"checkpoint was trained with --equalize {saved.get('equalize', False)}, this run "
                             f"asks for {self.config.equalize}: resume with the same --equalize")
        saved_loss = saved.get("gan_loss") or self.spec.recipe.gan_loss
        if self.recipe.discriminator and saved_loss != self.recipe.gan_loss:
            raise ValueError(f"checkpoint was trained with --gan-loss {saved_loss}, this run asks for "
                             f"{self.recipe.gan_loss}: resume with the same --gan-loss")
        saved_p = state.get("perceptual_loss", self.perceptual_name)
        if saved_p != self.perceptual_name:
            raise ValueError(f"checkpoint was trained with the perceptual loss {saved_p}, this run has "
                             f"{self.perceptual_name}: resume with --perceptual {saved_p}")
        saved_w = saved.get("perceptual_weight")  # None: the recipe's, as now when this run gives none
        saved_w = self.spec.recipe.perceptual_weight if saved_w is None else saved_w
        if saved_w != self.recipe.perceptual_weight:
            _log(f"--perceptual-weight: {saved_w:g} in the checkpoint, {self.recipe.perceptual_weight:g} from now on")
        saved_r = saved.get("recon_loss") or self.spec.recipe.recon_loss
        if saved_r != self.recipe.recon_loss:
            _log(f"--recon-loss: {saved_r} in the checkpoint, {self.recipe.recon_loss} from now on")
        if saved.get("blur") != self.config.blur:
            _log(f"--blur: {saved.get('blur')} in the checkpoint, {self.config.blur} from now on")
        try:
            self.generator.load_state_dict(state["generator"])
        except RuntimeError as exc:
            legacy = " ".join(f"--model-option {k}={v}" for k, v in self.spec.legacy_options.items())
            hint = f"; a checkpoint from before that option needs {legacy}" if legacy else ""
            raise ValueError(f"checkpoint's generator does not fit {self.config.model} with options "
                             f"{self.model_options or {}}{hint}") from exc
        self.opt_g.load_state_dict(state["opt_g"])  # its rates are set anew at each step (_set_rates)
        if self.encoder is not None:  # a later phase may unfreeze the encoder or change its rate
            self._param_groups(self.config.lr or self.recipe.lr)  # (un)freezes the encoder's parameters
            if saved.get("freeze_encoder", False) != self.config.freeze_encoder:
                _log(f"--freeze-encoder: {saved.get('freeze_encoder', False)} in the checkpoint, "
                     f"{self.config.freeze_encoder} from now on")
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])
        self._set_base_rates()  # the checkpoint's groups carry its rates; this run's config sets them
        self.step = state["step"]
        self.seconds_before = state.get("seconds", 0.0)
        ranks = state.get("rng_ranks") or [(state["rng"], state["torch_rng"], None)]  # older checkpoints
        if len(ranks) == self.world.size:
            rng, torch_rng, *cuda = ranks[self.world.rank]
            self.rng.set_state(rng)
            torch.set_rng_state(torch_rng)
            if cuda and cuda[0] is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(cuda[0], self.device)
        else:  # another number of processes: a fresh stream per rank, still reproducible
            seed = self.config.seed + RANK_SEED_STRIDE * self.world.rank + self.step
            self.rng.manual_seed(seed)
            torch.manual_seed(seed)
            if self.world.is_main:
                _log(f"resuming {len(ranks)} process(es) on {self.world.size}: new random streams from step {self.step}")
        if state.get("rebalance") is not None:
            self.rebalance = ColorRebalance(state["rebalance"])
        # a resumed run may change the rebalancing strength (a fine-tuning phase): train() refits
        self.resumed_rebalance = state["config"].get("rebalance", 0.0)

    @property
    def seconds(self) -> float:
        """Wall time spent training this checkpoint, over all its runs."""
        return self.seconds_before + time.perf_counter() - self.started

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save_checkpoint(self, state: dict | None = None) -> None:
        with atomic_write(self.checkpoint_path) as f:
            torch.save(state if state is not None else self.state_dict(), f)

    def resume(self) -> None:
        # on the CPU: RNG states must stay there; load_state_dict copies the rest onto the device
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        self.load_state_dict(state)

    # ----- one step -----
    def model_input(self, l_norm: torch.Tensor, training: bool) -> torch.Tensor:
        """What the generator sees of L: blurred in training (``--blur``), equalised (``--equalize``)."""
        return prepare_l(l_norm, blur=training and self.config.blur, equalize=self.config.equalize)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _judge(self, critic: nn.Module, l_in: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """A discriminator's scores, computed in autocast, returned in float32 for the losses."""
        with self._autocast():
            return critic(l_in, ab).float()

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_step(self, l_norm: torch.Tensor, ab: torch.Tensor) -> dict[str, float]:
        """One optimisation step of the recipe (``critic_steps`` discriminator updates, then one
        generator update); returns the losses (of this process's share of the batch)."""
        recipe, g, d = self.recipe, self.generator, self.discriminator
        l_norm, ab = self._to_device(l_norm), self._to_device(ab)
        l_in = self.model_input(l_norm, training=True)
        self._train_mode()
        self._set_rates()
        scores = None
        with self._autocast():
            if recipe.kl_weight:
                fake, mu, logvar = self.g_step(l_in, ab)  # a conditional VAE: z from q(z | L, ab)
                mu, logvar = mu.float(), logvar.float()
            elif recipe.recon_loss == "ce":
                scores = self.g_step(l_in).float()  # class scores; the colours are their annealed mean
                fake = g.decode(scores, l_in.shape[-2:])
            else:
                fake = self.g_step(l_in)
        fake = fake.float()
        logs: dict[str, float] = {}
        if d is not None:
            d.train()
            # pix2pix halves the discriminator's loss; a Wasserstein critic's loss is E[D(fake)] - E[D(real)]
            scale = 1.0 if recipe.gan_loss == "wgangp" else 0.5
            for _ in range(recipe.critic_steps):
                loss_d = scale * (adversarial_loss(self._judge(self.d_step, l_in, ab), True, recipe.gan_loss)
                                  + adversarial_loss(self._judge(self.d_step, l_in, fake.detach()), False,
                                                     recipe.gan_loss))
                if recipe.gan_loss == "wgangp":
                    penalty = gradient_penalty(lambda li, x: self._judge(self.d_step, li, x), l_in, ab, fake)
                    loss_d = loss_d + recipe.gp_weight * penalty
                    logs["loss_gp"] = float(penalty.detach())
                self.opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                self.opt_d.step()
            logs["loss_d"] = float(loss_d.detach())
        weights = self.rebalance(ab) if self.rebalance is not None else None
        if scores is not None:
            loss_ce = color_classification_loss(scores, ab, g.bins * AB_SCALE, weights)
            loss_g = recipe.recon_weight * loss_ce
            logs["loss_ce"] = float(loss_ce.detach())
        else:
            loss_g = recipe.recon_weight * reconstruction_loss(fake, ab, recipe.recon_loss, weights)
        if recipe.perceptual_weight:
            # on the photo as it comes out: the true L with the predicted or the true ab, in sRGB
            loss_p = self.perceptual(model_output_to_rgb(l_norm, fake), model_output_to_rgb(l_norm, ab)).mean()
            loss_g = loss_g + recipe.perceptual_weight * loss_p
            logs["loss_perceptual"] = float(loss_p.detach())
        if recipe.kl_weight:
            loss_kl = kl_divergence(mu, logvar)
            loss_g = loss_g + recipe.kl_weight * loss_kl
            logs["loss_kl"] = float(loss_kl.detach())
        if d is not None:
            for p in d.parameters():
                p.requires_grad_(False)
            # the unwrapped discriminator: no gradient of its own here, so DDP has nothing to reduce
            loss_adv = adversarial_loss(self._judge(d, l_in, fake), True, recipe.gan_loss)
            for p in d.parameters():
                p.requires_grad_(True)
            loss_g = loss_g + loss_adv
            logs["loss_adv"] = float(loss_adv.detach())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.step += 1
        logs["loss_l1"] = float(l1_loss(fake.detach(), ab))
        if recipe.recon_loss == "mse":
            logs["loss_mse"] = float(((fake.detach() - ab) ** 2).mean())
        logs["loss_g"] = float(loss_g.detach())
        return logs

    def predict(self, l_norm: torch.Tensor) -> torch.Tensor:
        """The generator's ab for normalised L, as inference runs it (a fixed-size network sees L
        resized to its size, and its ab is resized back)."""
        self.generator.eval()
        l_in = self.model_input(l_norm.to(self.device), training=False)
        size = self.spec.fixed_size
        if size and tuple(l_in.shape[-2:]) != (size, size):
            small = F.interpolate(l_in, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            return F.interpolate(self.generator(small), size=l_in.shape[-2:], mode="bilinear",
                                 align_corners=False)
        return self.generator(l_in)

    # ----- validation -----
    @torch.no_grad()
    def validate(self, val_images: torch.Tensor) -> dict[str, float]:
        """Colorize the validation crops, save a grid, and return the EVAL.md metrics on them."""
        self.generator.eval()
        rgb = val_images.permute(0, 3, 1, 2).float().div(255)
        l_norm, ab = rgb_to_model_input(rgb)
        fake = self.predict(l_norm).cpu()
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
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise TrainSetupError(f"--init {source}: {reason}") from exc
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
        extra = {"step": trainer.step, "trained_on": " + ".join(specs), "train_size": config.size,
                 "train_batch": config.batch_size, "train_seconds": round(state["seconds"])}
        if trainer.perceptual_name:
            extra["perceptual_loss"] = trainer.perceptual_name  # lpips, or the encoder of the LPIPS-form distance
        if trainer.recipe.perceptual_weight or trainer.spec.recipe.perceptual_weight:
            extra["perceptual_weight"] = trainer.recipe.perceptual_weight  # the weight used (0: turned off)
        if config.equalize:
            extra["equalize_l"] = True  # the network expects equalised L: the Colorizer does it too
        if config.init:
            extra["init"] = config.init  # the weights the run started from
        if config.lr_decay_steps:
            extra["lr_decay_steps"] = config.lr_decay_steps
        if trainer.recipe.recon_loss != trainer.spec.recipe.recon_loss:
            extra["recon_loss"] = trainer.recipe.recon_loss  # not the study's (the card says so)
        options = trainer.model_options
        export_generator(trainer.generator, config.model, export_path, extra, options)
        export_generator(trainer.generator, config.model,
                         trainer.out / "snapshots" / f"step_{trainer.step:07d}.safetensors", extra, options)
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
