"""One training step of a recipe: the discriminator's (or critic's) updates, then the generator's.

The generator loss is ``recon_weight·recon + adversarial + perceptual_weight·perceptual + kl_weight·KL``
(a classifying generator's reconstruction term is its cross-entropy over colour bins). The passes
run in bfloat16 autocast when the trainer's ``amp`` is on; the losses are computed in float32. Under
``torchrun`` the passes go through the DistributedDataParallel wrappers, which average the gradients.
"""

from __future__ import annotations

import torch
from torch import nn

from colorize_cli.app.train.hints import simulate_hints
from colorize_cli.color import AB_SCALE
from colorize_cli.models.colorspace import model_output_to_rgb
from colorize_cli.models.inputs import prepare_l
from colorize_cli.models.losses import (
    adversarial_loss,
    color_classification_loss,
    gradient_penalty,
    kl_divergence,
    l1_loss,
    reconstruction_loss,
)


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


class TrainStep:
    """The training step of :class:`~colorize_cli.app.train.trainer.Trainer` (which sets up the
    networks, optimisers and DDP wrappers this reads)."""

    def lr_factor(self, step: int) -> float:
        """The multiple of the base rates for optimiser step ``step + 1``: 1, then over the last
        ``lr_decay_steps`` steps before ``steps`` down linearly to 1/N (as pix2pix decays its rate)."""
        n, left = self.config.lr_decay_steps, self.config.steps - step
        return 1.0 if n <= 0 or left >= n else max(left, 1) / n

    def _set_rates(self) -> None:
        """Each optimiser group at its base rate times the schedule's factor for the coming step."""
        factor = self.lr_factor(self.step)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups if opt is not None else []:
                group["lr"] = group.setdefault("base_lr", group["lr"]) * factor

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
            elif getattr(g, "hints", False):  # a hint-taking model: hints simulated from the truth
                fake = self.g_step(l_in, *simulate_hints(ab, self.rng))
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
