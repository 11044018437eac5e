"""Model zoo. Importing this package registers every model family."""

from colorize_cli.models import unet  # noqa: F401  (registers unet-sn, unet-bn)
from colorize_cli.models.discriminators import create_discriminator
from colorize_cli.models.registry import (
    ModelSpec,
    Recipe,
    create_model,
    get_spec,
    list_models,
    register_model,
)

__all__ = [
    "ModelSpec",
    "Recipe",
    "create_discriminator",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
]
