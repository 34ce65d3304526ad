"""Stochastic Segmentation Networks (Monteiro et al. 2020): the logits of
all pixels as one low-rank multivariate Gaussian."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import LowRankMultivariateNormal

from ..checkpoint import register_model
from ..unet import UNetBackbone, check_number, init_weights
from .base import Baseline, pixel_cross_entropy

DIAG_FLOOR = 1e-5  # keeps the covariance positive definite
LOG_DIAG_RANGE = (-12.0, 6.0)  # clamp: exp() stays finite


@register_model
class StochasticSegmentationNetwork(Baseline):
    """A U-Net whose last features give, per pixel and class, a mean, a
    variance and ``rank`` R covariance factors. Over all K * H * W logits
    of an image: eta ~ N(mu, P P^T + D), P (KHW, R) low-rank, D diagonal.
    Trained by the Monte Carlo log-likelihood of the mask over
    ``mc_samples`` draws of eta, ``-log mean_m p(y | eta_m)``; ``sample``
    draws logit fields eta from the Gaussian; ``forward`` gives its mean."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2,
                 channels: tuple[int, ...] = (16, 32, 64),
                 convs_per_block: int = 2, rank: int = 10,
                 mc_samples: int = 20):
        check_number("rank", rank, 1)
        check_number("mc_samples", mc_samples, 1)
        super().__init__(in_channels, num_classes, channels,
                         convs_per_block, rank=rank, mc_samples=mc_samples)
        self.rank, self.mc_samples = rank, mc_samples
        self.backbone = UNetBackbone(in_channels, tuple(channels),
                                     convs_per_block)
        f = channels[0]
        self.mean = nn.Conv2d(f, num_classes, 1)
        self.log_diag = nn.Conv2d(f, num_classes, 1)
        self.factor = nn.Conv2d(f, num_classes * rank, 1)
        init_weights(self)

    def distribution(self, x: torch.Tensor) -> LowRankMultivariateNormal:
        """The logits' law for images x (B, C, H, W): a Gaussian over the
        B events of K * H * W logits (flattened class-major)."""
        self.check(x)
        h = self.backbone(x).float()
        b = x.shape[0]
        mu = self.mean(h).flatten(1)  # (B, KHW)
        diag = self.log_diag(h).flatten(1).clamp(*LOG_DIAG_RANGE).exp()
        factor = self.factor(h).unflatten(1, (self.rank, -1))
        factor = factor.flatten(2).transpose(1, 2)  # (B, KHW, R)
        return LowRankMultivariateNormal(
            mu, factor.reshape(b, -1, self.rank), diag + DIAG_FLOOR,
            validate_args=False)

    def _fields(self, eta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Flat logits (..., B, KHW) -> (..., B, K, H, W)."""
        return eta.unflatten(-1, (self.num_classes, *x.shape[-2:]))

    def loss(self, x: torch.Tensor,
             y: torch.Tensor) -> dict[str, torch.Tensor]:
        """-log (1/M) sum_m p(y | eta_m), eta_m ~ N(mu, Sigma) (M =
        ``mc_samples``), summed over pixels and averaged over the batch."""
        self.check(x, y)
        eta = self._fields(self.distribution(x).rsample((self.mc_samples,)),
                           x)  # (M, B, K, H, W)
        ce = pixel_cross_entropy(eta.flatten(0, 1), y.repeat(
            self.mc_samples, 1, 1)).unflatten(0, (self.mc_samples, -1))
        nll = -(torch.logsumexp(-ce, 0) - math.log(self.mc_samples))
        return {"total": nll.mean(), "recon": ce.mean()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fields(self.distribution(x).loc, x)

    @torch.no_grad()
    def sample(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """n logit fields per image from the low-rank Gaussian: logits
        (B, n, K, H, W)."""
        check_number("n", n, 1)
        eta = self.distribution(x).rsample((n,))  # (n, B, KHW)
        return self._fields(eta.transpose(0, 1), x)
