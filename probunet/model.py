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

SAMPLE_CHUNK_ELEMENTS = 2**25  # hidden activations per chunk of samples in Fcomb (128 MiB as float32)


class Fcomb(nn.Module):
    """Combine U-Net features (B, F, H, W) with z (B, D) or (B, n, D) into logits (B, [n,] K, H, W).

    The reference tiles z over the image, concatenates it with the features and
    applies 1x1 convolutions. The first of them is linear, so it splits exactly:
    ``W [f; z] + b = (W_f f + b) + W_z z``. The feature part is computed once per
    image, the z part once per sample and broadcast over pixels, so n samples never
    copy the features n times; they are decoded ``chunk`` at a time (see forward).
    """

    def __init__(self, feature_channels: int, latent_dim: int, num_classes: int, hidden: int = 32, layers: int = 3):
        super().__init__()
        chans = [feature_channels + latent_dim] + [hidden] * layers
        body = []
        for a, b in zip(chans[:-1], chans[1:]):
            body += [nn.Conv2d(a, b, 1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*body)
        self.logits = nn.Conv2d(chans[-1], num_classes, 1)
        self.feature_channels = feature_channels

    def _first(self) -> nn.Conv2d:
        return self.body[0] if len(self.body) else self.logits

    def _rest(self, h: torch.Tensor) -> torch.Tensor:
        """From the first convolution's output (M, C1, H, W) to logits (M, K, H, W)."""
        if not len(self.body):
            return h  # the first convolution was the logits layer
        return self.logits(self.body[2:](F.relu(h)))

    def forward(self, features: torch.Tensor, z: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """features (B, F, H, W), z (B, D) -> (B, K, H, W); z (B, n, D) -> (B, n, K, H, W), ``chunk`` samples at a time.

        ``chunk`` (default: as many as fit in about SAMPLE_CHUNK_ELEMENTS activations) bounds memory:
        only ``B * chunk`` samples' hidden activations exist at once.
        """
        conv, f = self._first(), self.feature_channels
        per_image = F.conv2d(features, conv.weight[:, :f], conv.bias)  # (B, C1, H, W), once per image
        w_z = conv.weight[:, f:, 0, 0]  # (C1, D)
        if z.dim() == 2:
            return self._rest(per_image + (z @ w_z.T)[:, :, None, None])
        b, n, _ = z.shape
        per_sample = z @ w_z.T  # (B, n, C1)
        if chunk is None:
            chunk = max(1, SAMPLE_CHUNK_ELEMENTS // per_image.numel())
        out = None
        for i in range(0, n, chunk):
            h = per_image[:, None] + per_sample[:, i:i + chunk, :, None, None]  # (B, c, C1, H, W)
            logits = self._rest(h.flatten(0, 1)).unflatten(0, (b, -1))
            if out is None:  # filled in place: no second copy of all n samples' logits
                out = logits.new_empty(b, n, *logits.shape[2:])
            out[:, i:i + chunk] = logits
        return out


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
        # float32 for the sums over pixels, also under mixed-precision autocast
        recon = F.cross_entropy(logits.float(), y, reduction="sum") / x.shape[0]
        kl = kl_divergence(q, p) if analytic_kl else q.log_prob(z) - p.log_prob(z)
        kl = kl.mean()
        return {"total": recon + beta * kl, "recon": recon, "kl": kl}

    def loss(self, x: torch.Tensor, y: torch.Tensor, **kwargs) -> dict[str, torch.Tensor]:
        """:meth:`elbo`, under the name the training loop calls on every model."""
        return self.elbo(x, y, **kwargs)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, **kwargs):
        """With masks y (B, H, W): the :meth:`elbo` dict. Without: :meth:`sample` logits (B, n, K, H, W).

        Wrappers such as ``torch.compile`` and DistributedDataParallel call ``forward``;
        keyword arguments go to ``elbo`` (beta, analytic_kl) or ``sample`` (n).
        """
        return self.sample(x, **kwargs) if y is None else self.elbo(x, y, **kwargs)

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
