"""The model registry: every colorization network the tool knows, by name.

A registered entry is a builder for the generator plus the data that describes how it is trained
(the *recipe*) and how it must be fed (size multiple or a fixed working size). Variants of one family
are entries with different options, never copies of a class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from colorize_cli.errors import OptionError

GAN_LOSSES = ("bce", "lsgan", "wgangp")
RECON_LOSSES = ("l1", "mse", "ce")
# critic steps of a WGAN-GP (Gulrajani et al. 2017; Cano & Moncada) when --gan-loss wgangp overrides a recipe
WGAN_CRITIC_STEPS = 5


@dataclass(frozen=True)
class Recipe:
    """How a model is trained: which discriminator, which losses and their weights.

    The generator loss is ``recon_weight * recon + adversarial + perceptual_weight * LPIPS +
    kl_weight * KL``; the trainer reads these fields and nothing else about the model.

    Attributes:
        discriminator: a name in ``models.discriminators``; None = no adversary.
        discriminator_options: its options (``norm``, ``output``, ``init``...).
        gan_loss: ``bce`` | ``lsgan`` (least squares) | ``wgangp`` (Wasserstein + gradient penalty).
        recon_loss: ``l1`` | ``mse``, on normalised ab; ``ce``: cross-entropy over quantised ab (Zhang et
            al. 2016), for a generator with a ``scores``/``decode`` classification head.
        recon_weight: its weight (pix2pix's λ = 100).
        critic_steps: discriminator updates per generator update.
        gp_weight: gradient penalty weight of ``wgangp``.
        perceptual_weight: weight of LPIPS between the colorized and the true photo (sRGB); 0 = off.
        kl_weight: β of a conditional VAE's KL term. A value > 0 means the generator is trained through
            its posterior: ``generator.reconstruct(l, ab) -> (ab, mu, logvar)``.
        lr, betas: Adam, for the generator and the discriminator.
    """

    discriminator: str | None = None
    discriminator_options: dict[str, Any] = field(default_factory=dict)
    gan_loss: str = "bce"
    recon_loss: str = "l1"
    recon_weight: float = 100.0
    critic_steps: int = 1
    gp_weight: float = 10.0
    perceptual_weight: float = 0.0
    kl_weight: float = 0.0
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)

    def __post_init__(self) -> None:
        if self.gan_loss not in GAN_LOSSES:
            raise ValueError(f"gan_loss {self.gan_loss!r}: use {', '.join(GAN_LOSSES)}")
        if self.recon_loss not in RECON_LOSSES:
            raise ValueError(f"recon_loss {self.recon_loss!r}: use {', '.join(RECON_LOSSES)}")
        if self.critic_steps < 1:
            raise ValueError(f"critic_steps {self.critic_steps}: at least 1")

    @property
    def l1_weight(self) -> float:
        """The weight of an L1 reconstruction term (0 when the recipe reconstructs with MSE)."""
        return self.recon_weight if self.recon_loss == "l1" else 0.0

    def with_gan_loss(self, kind: str) -> Recipe:
        """This recipe with another adversarial loss (``colorize train --gan-loss``).

        The discriminator follows the loss: a WGAN critic gives an unbounded score (no output Tanh),
        has no batch norm (the gradient penalty is per sample, batch norm mixes the samples; Gulrajani
        et al. §4) and takes ``WGAN_CRITIC_STEPS`` steps per generator step; going back to ``bce`` or
        ``lsgan`` restores the Tanh score and one step.
        """
        if kind not in GAN_LOSSES:
            raise OptionError(f"{{gan_loss}} {kind}: use {', '.join(GAN_LOSSES)}")
        if self.discriminator is None:
            raise OptionError(f"{{gan_loss}} {kind}: this model trains without a discriminator")
        if kind == self.gan_loss:
            return self
        options = dict(self.discriminator_options)
        if kind == "wgangp":
            options["output"] = "linear"
            if options.get("norm") == "batch":
                options["norm"] = "none"
            return replace(self, gan_loss=kind, discriminator_options=options,
                           critic_steps=max(self.critic_steps, WGAN_CRITIC_STEPS))
        options["output"] = "tanh"
        critic_steps = 1 if self.gan_loss == "wgangp" else self.critic_steps
        return replace(self, gan_loss=kind, discriminator_options=options, critic_steps=critic_steps)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    study: str
    description: str
    recipe: Recipe
    size_multiple: int = 1  # inputs are padded to a multiple of this
    fixed_size: int | None = None  # if set, the network only runs at this working size
    options: dict[str, Any] = field(default_factory=dict)
    # what an option a weights file's config does not name means: the value from before the option
    # existed (e.g. ``trunk="scratch"`` for files trained before the pretrained trunk), not today's default
    legacy_options: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    study: str,
    description: str,
    recipe: Recipe,
    size_multiple: int = 1,
    fixed_size: int | None = None,
    legacy_options: dict[str, Any] | None = None,
    **options: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder(**options)`` under ``name``; used as a decorator on the builder.
    ``legacy_options``: see :attr:`ModelSpec.legacy_options`."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name, builder, study, description, recipe, size_multiple, fixed_size, dict(options),
            dict(legacy_options or {}),
        )
        return builder

    return decorate


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The registered spec for ``name``; an unknown name is an error listing what exists."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown model {name!r}; registered models: {', '.join(list_models())}"
        ) from None


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the generator registered as ``name``; ``overrides`` replace its default options."""
    spec = get_spec(name)
    return spec.builder(**{**spec.options, **overrides})


def saved_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The builder options of a weights file of model ``name`` whose config holds ``options``: what the
    file does not name takes its :attr:`ModelSpec.legacy_options` value (then the registered default)."""
    return {**get_spec(name).legacy_options, **(options or {})}


def count_parameters(name: str, options: dict[str, Any] | None = None) -> int:
    """Parameters of the generator ``name`` built with its saved ``options`` (``colorize models``, cards)."""
    return sum(p.numel() for p in create_model(name, **saved_options(name, options)).parameters())
