"""The model registry: every colorization network the tool knows, by name.

A registered entry is a builder for the generator plus the data that describes how it is trained
(the *recipe*) and how it must be fed (size multiple or a fixed working size). Variants of one family
are entries with different options, never copies of a class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Recipe:
    """How a model is trained: which discriminator, which losses and their weights."""

    discriminator: str | None = None  # a name in models.discriminators, None = no adversary
    discriminator_options: dict[str, Any] = field(default_factory=dict)
    gan_loss: str = "bce"  # bce | lsgan | wgangp
    l1_weight: float = 100.0
    critic_steps: int = 1
    gp_weight: float = 10.0
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


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


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    study: str,
    description: str,
    recipe: Recipe,
    size_multiple: int = 1,
    fixed_size: int | None = None,
    **options: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder(**options)`` under ``name``; used as a decorator on the builder."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name, builder, study, description, recipe, size_multiple, fixed_size, dict(options)
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
