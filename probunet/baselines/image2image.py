"""A conditional VAE with a fixed N(0, I) prior, the "Image2Image VAE" of
Kohl et al. (2018) after the cVAE of BicycleGAN (Zhu et al. 2017)."""
from __future__ import annotations

import torch

from ..checkpoint import register_model
from ..latent import (DiagonalGaussian, GaussianEncoder, kl_divergence,
                      posterior_input)
from ..unet import UNet, check_number
from .base import Baseline, pixel_cross_entropy, sample_by_passes


@register_model
class Image2ImageVAE(Baseline):
    """A posterior net q(z|x,y), as the Probabilistic U-Net's, and a U-Net
    that sees z from the start: z (``latent_dim`` D) is tiled over the
    image and concatenated to the input channels, as BicycleGAN injects it.
    The prior is N(0, I), whatever the image. Trained with the negative
    ELBO (cross-entropy + beta * KL(q || N(0, I))); ``sample`` draws z from
    N(0, I) and runs the U-Net once per sample; ``forward`` decodes z = 0,
    the prior's mean."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2,
                 channels: tuple[int, ...] = (16, 32, 64),
                 convs_per_block: int = 2, latent_dim: int = 6):
        check_number("latent_dim", latent_dim, 1)
        super().__init__(in_channels, num_classes, channels,
                         convs_per_block, latent_dim=latent_dim)
        self.latent_dim = latent_dim
        self.unet = UNet(in_channels + latent_dim, num_classes, channels,
                         convs_per_block)
        self.posterior = GaussianEncoder(in_channels + num_classes, channels,
                                         convs_per_block, latent_dim)

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits for images x (B, C, H, W) and z (B, D) -> (B, K, H, W)."""
        self.check(x)
        if z.shape != (x.shape[0], self.latent_dim):
            raise ValueError(f"z must be (B, {self.latent_dim}) with B = "
                             f"{x.shape[0]}, got {tuple(z.shape)}")
        tiled = z[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return self.unet(torch.cat([x, tiled.to(x.dtype)], 1))

    def prior(self, x: torch.Tensor) -> DiagonalGaussian:
        """N(0, I) for every image: mu, log_sigma zeros (B, D)."""
        zeros = x.new_zeros(x.shape[0], self.latent_dim)
        return DiagonalGaussian(zeros, zeros)

    def elbo(self, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0,
             analytic_kl: bool = True) -> dict[str, torch.Tensor]:
        """Negative ELBO and its parts, as scalars averaged over the batch:
        ``recon`` (cross-entropy of the mask decoded from z ~ q(z|x,y)),
        ``kl`` (KL(q || N(0, I)), analytic or one-sample) and ``total``."""
        self.check(x, y)
        q = self.posterior(posterior_input(x, y.long(), self.num_classes))
        z = q.rsample()
        recon = pixel_cross_entropy(self.decode(x, z), y).mean()
        p = self.prior(x)
        kl = (kl_divergence(q, p) if analytic_kl
              else q.log_prob(z) - p.log_prob(z)).mean()
        return {"total": recon + beta * kl, "recon": recon, "kl": kl}

    def loss(self, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0,
             **kwargs) -> dict[str, torch.Tensor]:
        """The training loop's loss: :meth:`elbo`."""
        return self.elbo(x, y, beta=beta, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(x, x.new_zeros(x.shape[0], self.latent_dim))

    @torch.no_grad()
    def sample(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """n masks per image, z ~ N(0, I) each: logits (B, n, K, H, W)."""
        self.check(x)
        return sample_by_passes(
            lambda xs: self.decode(
                xs, torch.randn(len(xs), self.latent_dim, device=xs.device,
                                dtype=xs.dtype)), x, n)
