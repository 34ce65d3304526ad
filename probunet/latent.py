"""Gaussian encoders: the prior net p(z|x) and the posterior net q(z|x,y). Each
is a copy of the U-Net's encoder whose last feature map is averaged over space
and mapped by a 1x1 convolution to the mean and log standard deviation of a
diagonal Gaussian over z in R^latent_dim (``MixtureEncoder``: a mixture of M
such Gaussians, the model's ``prior_components``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .unet import Encoder

LOG_SIGMA_RANGE = (-6.0, 4.0)  # clamp: keeps exp(2 log sigma), the KL finite

class DiagonalGaussian:
    """A batch of diagonal Gaussians: ``mu``, ``log_sigma`` of shape (B, D)."""

    def __init__(self, mu: torch.Tensor, log_sigma: torch.Tensor):
        self.mu, self.log_sigma = mu, log_sigma

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    def rsample(self, n: int | None = None) -> torch.Tensor:
        """z = mu + sigma * eps: (B, D), or (B, n, D) when n is given."""
        if n is None:
            return self.mu + self.sigma * torch.randn_like(self.mu)
        eps = torch.randn(self.mu.shape[0], n, self.mu.shape[1],
                          device=self.mu.device, dtype=self.mu.dtype)
        return self.mu[:, None] + self.sigma[:, None] * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log density of z (B, D), summed over D: (B,)."""
        return (-0.5 * ((z - self.mu) / self.sigma) ** 2 - self.log_sigma
                - 0.5 * torch.log(torch.tensor(2 * torch.pi))).sum(-1)

class GaussianMixture:
    """Mixtures of M diagonal Gaussians: ``mu``, ``log_sigma`` (B, M, D),
    ``log_weights`` (B, M); the prior of Bhat et al. (2022), for posteriors
    that form clusters, which one Gaussian covers only by spreading mass."""

    def __init__(self, mu: torch.Tensor, log_sigma: torch.Tensor,
                 log_weights: torch.Tensor):
        self.mu, self.log_sigma, self.log_weights = mu, log_sigma, log_weights

    def rsample(self, n: int | None = None) -> torch.Tensor:
        """z (B, D), or (B, n, D) when n is given: a component drawn by weight,
        then its Gaussian (reparameterised within it only)."""
        b, m, d = self.mu.shape
        component = torch.multinomial(  # (B, n)
            self.log_weights.exp(), 1 if n is None else n, replacement=True)
        index = component[..., None].expand(-1, -1, d)
        z = self.mu.gather(1, index) + self.log_sigma.exp().gather(
            1, index) * torch.randn(b, index.shape[1], d,
                                    device=self.mu.device, dtype=self.mu.dtype)
        return z[:, 0] if n is None else z

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log density of z (B, D): (B,), by log-sum-exp over components."""
        per_component = DiagonalGaussian(self.mu, self.log_sigma).log_prob(
            z[:, None])  # (B, M)
        return torch.logsumexp(self.log_weights + per_component, dim=1)

def kl_divergence(q: DiagonalGaussian, p: DiagonalGaussian) -> torch.Tensor:
    """Closed-form KL(q || p) of diagonal Gaussians, summed over dims: (B,).

    KL = sum_d [ log(s_p / s_q) + (s_q^2 + (mu_q - mu_p)^2) / (2 s_p^2) - 1/2 ]
    """
    var_ratio = torch.exp(2 * (q.log_sigma - p.log_sigma))
    mean_term = ((q.mu - p.mu) / p.sigma) ** 2
    return 0.5 * (var_ratio + mean_term - 1
                  - 2 * (q.log_sigma - p.log_sigma)).sum(-1)

class GaussianEncoder(nn.Module):
    """Encoder -> spatial mean -> 1x1 conv -> DiagonalGaussian (B, latent_dim).
    The prior net takes the image (B, C, H, W), the posterior net the image and
    the one-hot mask shifted by -0.5: (B, C + K, H, W)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...],
                 convs_per_block: int, latent_dim: int):
        super().__init__()
        self.encoder = Encoder(in_channels, channels, convs_per_block)
        self.to_params = nn.Conv2d(channels[-1], 2 * latent_dim, 1)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> DiagonalGaussian:
        h = self.encoder(x)[-1].mean(dim=(2, 3), keepdim=True)
        # float32 under autocast: exp(log sigma) and the KL overflow in fp16
        mu, log_sigma = self.to_params(h).flatten(1).float().chunk(2, dim=1)
        return DiagonalGaussian(mu, log_sigma.clamp(*LOG_SIGMA_RANGE))

class MixtureEncoder(nn.Module):
    """Encoder -> spatial mean -> 1x1 convs -> GaussianMixture (B, M, D)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...],
                 convs_per_block: int, latent_dim: int, components: int):
        super().__init__()
        self.encoder = Encoder(in_channels, channels, convs_per_block)
        self.to_params = nn.Conv2d(channels[-1],
                                   2 * latent_dim * components, 1)
        self.to_weights = nn.Conv2d(channels[-1], components, 1)
        self.latent_dim, self.components = latent_dim, components

    def forward(self, x: torch.Tensor) -> GaussianMixture:
        h = self.encoder(x)[-1].mean(dim=(2, 3), keepdim=True)
        mu, log_sigma = self.to_params(h).flatten(1).float().unflatten(
            1, (self.components, 2 * self.latent_dim)).chunk(2, dim=2)
        log_weights = torch.log_softmax(self.to_weights(h).flatten(1).float(),
                                        dim=1)
        return GaussianMixture(mu, log_sigma.clamp(*LOG_SIGMA_RANGE),
                               log_weights)

def posterior_input(x: torch.Tensor, y: torch.Tensor,
                    num_classes: int) -> torch.Tensor:
    """Image (B, C, H, W) and class-index mask (B, H, W) -> (B, C + K, H, W),
    the one-hot mask shifted by -0.5."""
    one_hot = F.one_hot(y, num_classes).permute(0, 3, 1, 2).to(x.dtype)
    return torch.cat([x, one_hot - 0.5], dim=1)
