"""Model zoo. Importing this package registers every model family."""

# importing a family registers its models
from colorize_cli.models import autoencoder, encoder_unet, resnet, unet, vae  # noqa: F401
from colorize_cli.models.discriminators import create_discriminator
from colorize_cli.models.registry import (
    ModelSpec,
    Recipe,
    count_parameters,
    create_model,
    get_spec,
    list_models,
    register_model,
    saved_options,
)

__all__ = [
    "ModelSpec",
    "Recipe",
    "count_parameters",
    "create_discriminator",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
    "saved_options",
]
