"""What a training run is asked to do, and the rules of the configuration.

:class:`TrainConfig` holds the run's settings. The rules: which settings a model can train with (its
crop size, the batch, the losses: :func:`training_recipe`, :func:`check_run`), which perceptual
distance the run uses (:func:`load_perceptual`), what a resumed run must share with its checkpoint
(:func:`check_resume`), and what the exported weights record of how they were trained
(:func:`recorded_options`). Every refusal is one line that says what to do.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, replace

import torch

from colorize_cli.errors import OptionError
from colorize_cli.io.download import LOGGER
from colorize_cli.models import ModelSpec, Recipe
from colorize_cli.models.encoders import ENCODERS, EncoderWeightsError


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


class TrainSetupError(OptionError):
    """The run cannot start (checked before any data is read): the message is one line that says why, and
    names options as :class:`~colorize_cli.errors.OptionError` does."""


# rank r of a data-parallel run draws its crops (and noise) from seed + RANK_SEED_STRIDE * r
RANK_SEED_STRIDE = 7919


def _log(msg: str) -> None:
    LOGGER.info(msg)


def training_recipe(spec: ModelSpec, config: TrainConfig) -> Recipe:
    """The recipe the run trains with: the model's, with ``--gan-loss``, ``--recon-loss`` and
    ``--perceptual-weight`` in place of its own."""
    recipe = spec.recipe.with_gan_loss(config.gan_loss) if config.gan_loss else spec.recipe
    if config.recon_loss is not None:
        if config.recon_loss not in ("l1", "mse") or recipe.recon_loss == "ce":
            raise TrainSetupError(f"{{recon_loss}} {config.recon_loss}: use l1 or mse, for a model that "
                                  f"regresses ab (this one's loss is {recipe.recon_loss})")
        recipe = replace(recipe, recon_loss=config.recon_loss)
    if config.perceptual_weight is not None:
        if not config.perceptual_weight >= 0:
            raise TrainSetupError(f"{{perceptual_weight}} {config.perceptual_weight}: use a weight >= 0 (0 = off)")
        recipe = replace(recipe, perceptual_weight=config.perceptual_weight)
    return recipe


def check_run(spec: ModelSpec, config: TrainConfig, processes: int = 1) -> None:
    """The schedule, crop size and batch of ``config`` are ones ``spec`` can train with on ``processes``."""
    if config.lr_decay_steps < 0:
        raise TrainSetupError(f"{{lr_decay_steps}} {config.lr_decay_steps}: use a number of steps >= 0 (0 = off)")
    check_train_size(spec, config.size)
    check_batch(spec, config.size, config.batch_size, processes)


def check_train_size(spec: ModelSpec, size: int) -> None:
    """Training crops must be what the network can take: its fixed size, or a multiple of its size rule."""
    if spec.fixed_size and size != spec.fixed_size:
        raise TrainSetupError(f"{{size}} {size}: {spec.name} runs at {spec.fixed_size} px only; "
                              f"use {{size}} {spec.fixed_size}")
    if size % spec.size_multiple or size <= 0:
        fit = max(spec.size_multiple, round(size / spec.size_multiple) * spec.size_multiple)
        raise TrainSetupError(f"{{size}} {size}: {spec.name} needs a multiple of {spec.size_multiple} "
                              f"px; use e.g. {{size}} {fit}")


def check_batch(spec: ModelSpec, size: int, batch: int, processes: int = 1) -> None:
    """The batch splits evenly over the processes, and batch norm at the bottleneck needs two values
    per channel: crops that shrink to 1x1 there (pix2pix at 128 px) need 2 images per process."""
    if batch % processes:
        raise TrainSetupError(f"{{batch_size}} {batch}: must be a multiple of the {processes} "
                              f"processes (each takes an equal share)")
    values = (size // spec.size_multiple) ** 2 * (batch // processes)
    if values < 2:
        per = " per process" if processes > 1 else ""
        raise TrainSetupError(f"{{batch_size}} {batch} at {{size}} {size}: {spec.name}'s bottleneck is 1x1 with batch "
                              f"norm, which needs at least 2 images{per}; use {{batch_size}} {2 * processes} or "
                              f"{{size}} {2 * spec.size_multiple}")


# ``--perceptual``: ``lpips`` is the official LPIPS (AlexNet, downloaded); an encoder name is
# colorize_cli.engine.perceptual.EncoderDistance on it; ``auto``: LPIPS where its weights can be had, else the first
PERCEPTUAL_LOSSES = ("auto", "lpips", *ENCODERS)


def load_perceptual(model: str, choice: str = "auto"):
    """The distance of a recipe's perceptual term and its name (what the weights' config records): the
    official LPIPS, or the LPIPS-form distance on a pretrained encoder (``choice``, see
    :data:`PERCEPTUAL_LOSSES`). Its weights are loaded now, so that a run that cannot have them fails
    before training, not hours in."""
    if choice not in PERCEPTUAL_LOSSES:
        raise TrainSetupError(f"{{perceptual}} {choice}: use {', '.join(PERCEPTUAL_LOSSES)}")
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
                raise TrainSetupError(f"{model} trains with an LPIPS loss ({{perceptual}} lpips), whose pretrained "
                                      f"weights are unavailable: {reason}") from exc
            choice = module.DEFAULT_DISTANCE_ENCODER
            _log(f"{model}: the official LPIPS is unavailable ({reason}); its perceptual term is the "
                 f"{choice} feature distance instead (LPIPS's form without learned weights; --perceptual)")
    try:
        module.encoder_distance(probe, probe, encoder=choice)
    except EncoderWeightsError as exc:
        raise TrainSetupError(f"{model} trains with a perceptual loss on {choice} features: {exc}") from exc
    return functools.partial(module.encoder_distance, encoder=choice), choice


def check_resume(saved: dict, saved_perceptual: str | None, config: TrainConfig, spec: ModelSpec,
                 recipe: Recipe, perceptual: str | None) -> None:
    """What a run resumed from a checkpoint trained with ``saved`` (its config) must keep (the model,
    what the network sees, the adversarial and perceptual losses: a ``ValueError``), and which
    changes it says as it takes them up (the perceptual weight, the reconstruction loss, the blur)."""
    if saved["model"] != config.model:
        raise ValueError(f"checkpoint is for model {saved['model']!r}, not {config.model!r}")
    if saved.get("equalize", False) != config.equalize:
        raise OptionError(f"checkpoint was trained with {{equalize}} {saved.get('equalize', False)}, this run "
                         f"asks for {config.equalize}: resume with the same {{equalize}}")
    saved_loss = saved.get("gan_loss") or spec.recipe.gan_loss
    if recipe.discriminator and saved_loss != recipe.gan_loss:
        raise OptionError(f"checkpoint was trained with {{gan_loss}} {saved_loss}, this run asks for "
                         f"{recipe.gan_loss}: resume with the same {{gan_loss}}")
    if saved_perceptual != perceptual:
        raise OptionError(f"checkpoint was trained with the perceptual loss {saved_perceptual}, this run has "
                         f"{perceptual}: resume with {{perceptual}} {saved_perceptual}")
    saved_w = saved.get("perceptual_weight")  # None: the recipe's, as now when this run gives none
    saved_w = spec.recipe.perceptual_weight if saved_w is None else saved_w
    if saved_w != recipe.perceptual_weight:
        _log(f"--perceptual-weight: {saved_w:g} in the checkpoint, {recipe.perceptual_weight:g} from now on")
    saved_r = saved.get("recon_loss") or spec.recipe.recon_loss
    if saved_r != recipe.recon_loss:
        _log(f"--recon-loss: {saved_r} in the checkpoint, {recipe.recon_loss} from now on")
    if saved.get("blur") != config.blur:
        _log(f"--blur: {saved.get('blur')} in the checkpoint, {config.blur} from now on")


def recorded_options(config: TrainConfig, spec: ModelSpec, recipe: Recipe, perceptual: str | None) -> dict:
    """What the exported weights' config records of how the run trained, where it matters to their
    inference or their model card: the perceptual distance and its weight, --equalize, --init,
    --lr-decay-steps, and a reconstruction loss other than the study's."""
    extra: dict = {}
    if perceptual:
        extra["perceptual_loss"] = perceptual  # lpips, or the encoder of the LPIPS-form distance
    if recipe.perceptual_weight or spec.recipe.perceptual_weight:
        extra["perceptual_weight"] = recipe.perceptual_weight  # the weight used (0: turned off)
    if config.equalize:
        extra["equalize_l"] = True  # the network expects equalised L: the Colorizer does it too
    if config.init:
        extra["init"] = config.init  # the weights the run started from
    if config.lr_decay_steps:
        extra["lr_decay_steps"] = config.lr_decay_steps
    if recipe.recon_loss != spec.recipe.recon_loss:
        extra["recon_loss"] = recipe.recon_loss  # not the study's (the card says so)
    return extra
