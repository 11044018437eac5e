"""A conditional VAE for colorization: several plausible colorizations of one photo.

Gong et al. call their model a VAE, but it is a ResNet-18 autoencoder trained with MSE, with no
latent distribution. This is a true conditional VAE in the form of BicycleGAN's cVAE (Zhu et al.
2017), without its discriminator:

    training:   q(z | L, ab): conv encoder of (L, ab) ─► μ, log σ²  (a global code of ``latent_dim``)
                z = μ + σ·ε  ─► decoder(L, z) ─► ab      loss = recon_weight·L1 + kl_weight·KL(q ‖ N(0, I))
    inference:  z ~ N(0, I) (``sample_latents``), or z = 0 ─► decoder(L, z) ─► ab

Gong et al.'s network is "a pre-trained ResNet-18 model [...] and an upsampling network": with the
default ``trunk`` the decoder is the ``regression`` network (a pretrained encoder cut at stride 8,
standing in for that ResNet-18, and the upsampling head) with z replicated over the trunk's map and
concatenated to it. With ``trunk="scratch"`` (the weights files from before the option) the decoder is
the zoo's U-Net with z replicated over the image and concatenated to L as extra input channels
(BicycleGAN's ``add_to_input``). ``forward(l)`` uses z = 0, the prior's mode: one
deterministic "typical" colorization, which is what evaluation and ONNX export see;
``forward(l, z)`` decodes the code ``z`` (N, latent_dim) given, e.g. ``sample_latents(n, generator)``.
"""

from __future__ import annotations

import torch
from torch import nn

from colorize_cli.models.registry import Recipe, register_model
from colorize_cli.models.resnet import SCRATCH, ResNet18Regression
from colorize_cli.models.unet import UNet


class ConditionalVAE(nn.Module):
    """Encoder q(z | L, ab) and decoder p(ab | L, z).

    Args:
        width: channels of the first stage of the decoder U-Net and of the encoder.
        depth: stride-2 stages of the U-Net (inputs must be multiples of ``2**depth``) and the encoder.
        latent_dim: size of the global latent code (BicycleGAN: 8).
        trunk: ``"scratch"``: a U-Net decoder of ``width`` and ``depth``; an encoder name: the regression
            network on that pretrained trunk, its head at 2x ``width`` channels (64 for width 32).
    """

    def __init__(self, width: int = 32, depth: int = 4, latent_dim: int = 8, trunk: str = SCRATCH) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        layers: list[nn.Module] = []
        cin = 3
        for i in range(depth):
            cout = width * min(2**i, 8)
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.encoder = nn.Sequential(*layers)
        self.to_mu = nn.Linear(cin, latent_dim)
        self.to_logvar = nn.Linear(cin, latent_dim)
        if trunk == SCRATCH:
            self.decoder = UNet(width=width, depth=depth, in_channels=1 + latent_dim)
        else:
            self.decoder = ResNet18Regression(width=2 * width, trunk=trunk, code_channels=latent_dim)
        self.trunk_name = trunk
        self.size_multiple = 2**depth

    @property
    def pretrained_encoder(self) -> nn.Module | None:
        """The decoder's pretrained trunk (what :meth:`load_pretrained` fills); None from scratch."""
        return getattr(self.decoder, "pretrained_encoder", None)

    def load_pretrained(self) -> None:
        """Fill the decoder's trunk with its encoder's published ImageNet weights."""
        if self.pretrained_encoder is not None:
            self.decoder.load_pretrained()

    def encode(self, l_norm: torch.Tensor, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(mu, logvar)``, each (N, latent_dim), of the code of (L, ab)."""
        h = self.encoder(torch.cat([l_norm, ab], dim=1))
        return self.to_mu(h), self.to_logvar(h).clamp(-10.0, 10.0)

    def sample_latents(self, n: int, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> torch.Tensor:
        """``n`` codes from the prior N(0, I), drawn from ``generator`` (for reproducible samples).

        The codes are drawn one at a time, so code k depends on the generator's state and k only, not
        on ``n``: sample 2 of ``--samples 4`` is sample 2 of ``--samples 2``."""
        z = torch.cat([torch.randn(1, self.latent_dim, generator=generator) for _ in range(n)])
        return z.to(device) if device is not None else z

    def example_inputs(self, n: int, h: int, w: int) -> dict[str, torch.Tensor]:
        """The inputs beside L, by name, as zeros (the ONNX export makes them graph inputs)."""
        return {"z": torch.zeros(n, self.latent_dim)}

    def forward(self, l_norm: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """ab for L and codes ``z`` (N, latent_dim); ``z=None`` decodes z = 0 for every image."""
        if self.trunk_name != SCRATCH:
            code = l_norm.new_zeros(l_norm.shape[0], self.latent_dim) if z is None else z
            return self.decoder(l_norm, code)
        if z is None:
            maps = torch.zeros_like(l_norm).expand(-1, self.latent_dim, -1, -1)
        else:
            maps = z.to(l_norm.dtype)[:, :, None, None] * torch.ones_like(l_norm)
        return self.decoder(torch.cat([l_norm, maps], dim=1))

    def reconstruct(self, l_norm: torch.Tensor, ab: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: encode (L, ab), draw z by the reparameterisation trick, decode.

        Returns ``(ab_pred, mu, logvar)``.
        """
        mu, logvar = self.encode(l_norm, ab)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self(l_norm, z), mu, logvar


@register_model(
    "vae",
    study="Gong, Chen & Shan, Colorize Images with Deep Learning, §4.4/§5.3 (their 'VAE', rebuilt as a "
    "true conditional VAE)",
    description="Conditional VAE (BicycleGAN-style cVAE): conv encoder of (L, ab) to an 8-d Gaussian "
    "code; decoder: EfficientNet-Lite0 (ImageNet-pretrained, gray stem) cut at stride 8 (40 channels), "
    "standing in for the study's pretrained ResNet-18 (first 6 children: stride 8, 128 channels; no ResNet-18 "
    "weights exist here), the code concatenated to its map, and the regression's upsampling head "
    "(→128→64→64→32→2); trunk=scratch: a U-Net decoder (4 levels, width 32) of L with the code as input "
    "maps; 10·L1 + 0.01·KL; z = 0 by default, z ~ N(0, I) for diverse samples",
    recipe=Recipe(recon_loss="l1", recon_weight=10.0, kl_weight=0.01),
    size_multiple=16,
    legacy_options={"trunk": SCRATCH},
    width=32,
    depth=4,
    latent_dim=8,
    trunk="efficientnet-lite0",
)
def build_vae(**options) -> ConditionalVAE:
    return ConditionalVAE(**options)
