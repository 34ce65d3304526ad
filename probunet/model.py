"""The Probabilistic U-Net (Kohl et al., 2018): a U-Net whose output depends on a latent z.

Three networks: the U-Net backbone, the prior net p(z|x) and the posterior net
q(z|x,y). ``fcomb`` tiles z over the image, concatenates it with the U-Net's
last features and mixes them with 1x1 convolutions into class logits.

Training (``elbo``): z ~ q(z|x,y); loss = cross-entropy + beta * KL(q || p).
Inference (``sample``): z ~ p(z|x).

Loss convention, used everywhere in this package: every term is summed over
pixels (and latent dimensions) within an image and averaged over the batch, so
beta means the same thing whatever the batch size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .latent import DiagonalGaussian, GaussianEncoder, kl_divergence, posterior_input
from .unet import UNetBackbone, check_image, check_mask, init_weights


class Fcomb(nn.Module):
    """Combine U-Net features (B, F, H, W) with z (B, D) or (B, n, D) into logits (B, [n,] K, H, W)."""

    def __init__(self, feature_channels: int, latent_dim: int, num_classes: int, hidden: int = 32, layers: int = 3):
        super().__init__()
        chans = [feature_channels + latent_dim] + [hidden] * layers
        body = []
        for a, b in zip(chans[:-1], chans[1:]):
            body += [nn.Conv2d(a, b, 1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*body)
        self.logits = nn.Conv2d(chans[-1], num_classes, 1)

    def forward(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 3:  # (B, n, D): decode n latents per image without recomputing the U-Net
            b, n, d = z.shape
            feats = features.unsqueeze(1).expand(-1, n, -1, -1, -1).flatten(0, 1)
            return self.forward(feats, z.flatten(0, 1)).unflatten(0, (b, n))
        tiled = z[:, :, None, None].expand(-1, -1, *features.shape[-2:])
        return self.logits(self.body(torch.cat([features, tiled], dim=1)))


class ProbabilisticUNet(nn.Module):
    """Probabilistic U-Net for ``num_classes`` >= 2 classes (binary = 2).

    Args:
        in_channels: image channels C.
        num_classes: classes K; masks hold class indices in [0, K).
        channels: filters per level of the U-Net and of the prior/posterior encoders;
            H and W must be multiples of 2**(len(channels) - 1).
        convs_per_block: 3x3 convolutions per level.
        latent_dim: size D of z.
        fcomb_layers, fcomb_channels: hidden 1x1 convolutions of fcomb.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, channels: tuple[int, ...] = (16, 32, 64),
                 convs_per_block: int = 2, latent_dim: int = 6, fcomb_layers: int = 3, fcomb_channels: int = 32):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (binary segmentation is 2 classes), got {num_classes}")
        if len(channels) < 1 or min(channels) < 1 or convs_per_block < 1:
            raise ValueError(f"need at least one level with positive channels and convs_per_block >= 1, got {channels}, {convs_per_block}")
        if latent_dim < 1 or fcomb_layers < 0 or fcomb_channels < 1:
            raise ValueError(f"latent_dim and fcomb_channels must be >= 1 and fcomb_layers >= 0, got {latent_dim}, {fcomb_channels}, {fcomb_layers}")
        channels = tuple(channels)
        self.config = dict(in_channels=in_channels, num_classes=num_classes, channels=channels, convs_per_block=convs_per_block,
                           latent_dim=latent_dim, fcomb_layers=fcomb_layers, fcomb_channels=fcomb_channels)
        self.in_channels, self.num_classes, self.levels, self.latent_dim = in_channels, num_classes, len(channels), latent_dim
        self.unet = UNetBackbone(in_channels, channels, convs_per_block)
        self.prior = GaussianEncoder(in_channels, channels, convs_per_block, latent_dim)
        self.posterior = GaussianEncoder(in_channels + num_classes, channels, convs_per_block, latent_dim)
        self.fcomb = Fcomb(channels[0], latent_dim, num_classes, fcomb_channels, fcomb_layers)
        init_weights(self)

    def _check(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        check_image(x, self.in_channels, self.levels)
        if y is not None:
            check_mask(y, x, self.num_classes)

    def prior_dist(self, x: torch.Tensor) -> DiagonalGaussian:
        """p(z|x) for images (B, C, H, W): mu, log_sigma (B, D)."""
        self._check(x)
        return self.prior(x)

    def posterior_dist(self, x: torch.Tensor, y: torch.Tensor) -> DiagonalGaussian:
        """q(z|x,y) for images (B, C, H, W) and masks (B, H, W): mu, log_sigma (B, D)."""
        self._check(x, y)
        return self.posterior(posterior_input(x, y.long(), self.num_classes))

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits for images (B, C, H, W) and latents (B, D) -> (B, K, H, W), or (B, n, D) -> (B, n, K, H, W)."""
        self._check(x)
        if z.shape[0] != x.shape[0] or z.shape[-1] != self.latent_dim or z.dim() not in (2, 3):
            raise ValueError(f"z must be (B, {self.latent_dim}) or (B, n, {self.latent_dim}) with B = {x.shape[0]}, got {tuple(z.shape)}")
        return self.fcomb(self.unet(x), z)

    def elbo(self, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0, analytic_kl: bool = True) -> dict[str, torch.Tensor]:
        """The training loss (negative ELBO) and its parts, as scalars.

        x: images (B, C, H, W); y: class-index masks (B, H, W).
        recon: cross-entropy of the mask decoded from z ~ q(z|x,y), summed over pixels, mean over the batch.
        kl: KL(q(z|x,y) || p(z|x)), analytic (summed over latent dims) or, with analytic_kl=False,
        the one-sample estimate log q(z) - log p(z) at the same z; mean over the batch.
        total: recon + beta * kl.
        """
        self._check(x, y)
        y = y.long()
        q, p = self.posterior(posterior_input(x, y, self.num_classes)), self.prior(x)
        z = q.rsample()
        logits = self.fcomb(self.unet(x), z)
        recon = F.cross_entropy(logits, y, reduction="sum") / x.shape[0]
        kl = kl_divergence(q, p) if analytic_kl else q.log_prob(z) - p.log_prob(z)
        kl = kl.mean()
        return {"total": recon + beta * kl, "recon": recon, "kl": kl}

    def loss(self, x: torch.Tensor, y: torch.Tensor, **kwargs) -> dict[str, torch.Tensor]:
        """:meth:`elbo`, under the name the training loop calls on every model."""
        return self.elbo(x, y, **kwargs)

    @torch.no_grad()
    def sample(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """n prior samples per image: z ~ p(z|x) -> logits (B, n, K, H, W)."""
        if n < 1:
            raise ValueError(f"number of samples n must be >= 1, got {n}")
        return self.decode(x, self.prior_dist(x).rsample(n))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor, use_posterior_mean: bool = False, n: int = 1) -> torch.Tensor:
        """Decode from the posterior q(z|x,y): its mean, or n samples -> logits (B, n, K, H, W)."""
        if n < 1:
            raise ValueError(f"number of samples n must be >= 1, got {n}")
        q = self.posterior_dist(x, y)
        z = q.mu[:, None].expand(-1, n, -1) if use_posterior_mean else q.rsample(n)
        return self.decode(x, z)
