"""What a weights file's config says about how it departs from its study, in model-card lines (the Hub's
card, written by :mod:`colorize_cli.app.publish`, and docs/models.md, by ``tools/model_cards.py``)."""

from __future__ import annotations

from colorize_cli.models import get_spec, saved_options
from colorize_cli.models.resnet import describe_trunk


def pretrained_parts(arch: str, config: dict) -> list[str]:
    """Card lines that say where a weights file was trained unlike its study: the pretrained networks
    (the trunk of ``regression``/``vae``, the perceptual loss of the LPIPS recipes) and the
    reconstruction loss, where ``--recon-loss`` changed it."""
    lines = []
    options = saved_options(arch, config.get("options"))
    if "trunk" in options:
        lines.append(f"- Trunk: {describe_trunk(options['trunk'])}")
    study_loss = get_spec(arch).recipe.recon_loss
    if config.get("recon_loss", study_loss) != study_loss:
        lines.append(f"- Reconstruction loss: {config['recon_loss'].upper()} on ab, not the study's "
                     f"{study_loss.upper()} (--recon-loss)")
    study_weight = get_spec(arch).recipe.perceptual_weight
    weight = config.get("perceptual_weight", study_weight)  # files from before --perceptual-weight: the recipe's
    if study_weight or weight:
        loss = config.get("perceptual_loss")
        if loss == "lpips":
            what = "the official LPIPS (v0.1, AlexNet, learned weights), as the study"
        elif loss:
            what = (f"the LPIPS-form distance on ImageNet-pretrained {loss} features (strides 2-32, unit-normalised "
                    "channels, no learned weights: LPIPS's baseline form), standing in for the study's LPIPS, "
                    "whose AlexNet weights could not be had")
        else:
            what = "not recorded in the weights"
        if not weight:
            what = f"off (--perceptual-weight 0; the study's weight is {study_weight:g})"
        elif weight != study_weight:
            what += f"; at weight {weight:g}, not the study's {study_weight:g} (--perceptual-weight)"
        lines.append(f"- Perceptual loss: {what}")
    return lines
