"""A conditional VAE in two dimensions: the Probabilistic U-Net's three
networks as small MLPs.

The toy problem has a known answer. The condition is a number x in [0, 1]; the
answer y in R^2 comes from one of three well-separated Gaussian modes whose
weights depend on x::

    w(x) = (0.1 + 0.6 (1 - x), 0.2, 0.1 + 0.6 x),  y | mode m ~ N(c_m, 0.3^2 I)

with the centres c_m on a circle of radius 2.5 (at 90, 210 and 330 degrees).
So y is ambiguous given x and the true mixture weights are known, as in the
toy segmentation data (:mod:`probunet.toy`), but a model trains in seconds and
its two-dimensional latent space can be drawn.

:class:`ToyCVAE` has the parts of :class:`probunet.model.ProbabilisticUNet`:
a prior net p(z|x), a posterior net q(z|x,y) (both diagonal Gaussians,
:class:`probunet.latent.DiagonalGaussian`) and a decoder p(y|x,z), here a
Gaussian with a fixed or learned diagonal variance. Loss convention as in the
big model: each term is summed over dimensions within an example and averaged
over the batch; total = recon + beta * KL.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ..checkpoint import register_model
from ..latent import LOG_SIGMA_RANGE, DiagonalGaussian, kl_divergence

NUM_MODES = 3
RADIUS, NOISE_STD = 2.5, 0.3
ANGLES_DEG = (90.0, 210.0, 330.0)
CENTRES = RADIUS * np.stack(
    [np.cos(np.deg2rad(ANGLES_DEG)),
     np.sin(np.deg2rad(ANGLES_DEG))], axis=1)  # (M, 2)
# a point farther than this from every centre is "between modes" (true data:
# 0.4% of points)
MAX_DIST = 1.0


# -----------------------------------------------------------------------------
# the toy data


def mode_weights(x) -> np.ndarray:
    """True mixture weights w(x) for conditions x of any shape, in [0, 1] ->
    float64 (..., 3), rows sum to 1."""
    x = np.asarray(x, dtype=np.float64)
    if np.isnan(x).any() or (x < 0).any() or (x > 1).any():
        raise ValueError("conditions x must lie in [0, 1]")
    return np.stack(
        [0.1 + 0.6 * (1 - x), np.full_like(x, 0.2), 0.1 + 0.6 * x], axis=-1)


def make_toy(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Draw n examples of the toy problem (same seed, same tensors).

    Returns float32 ``x`` (N, 1) ~ U(0, 1), float32 ``y`` (N, 2) and the mode
    each came from, long ``mode`` (N,).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, n)
    cum = mode_weights(x).cumsum(-1)
    mode = np.minimum((rng.random((n, 1)) > cum).sum(-1), NUM_MODES - 1)
    y = CENTRES[mode] + rng.normal(0.0, NOISE_STD, (n, 2))
    return {
        "x": torch.from_numpy(x[:, None]).float(),
        "y": torch.from_numpy(y).float(),
        "mode": torch.from_numpy(mode).long()
    }


def toy_dataset(n: int, seed: int = 0) -> TensorDataset:
    """:func:`make_toy` as a TensorDataset of (x (1,), y (2,)) pairs, ready for
    :func:`probunet.train.fit`."""
    d = make_toy(n, seed)
    return TensorDataset(d["x"], d["y"])


def nearest_mode(y: torch.Tensor, max_dist: float = MAX_DIST) -> torch.Tensor:
    """Index of the nearest centre for points y (..., 2) -> long (...); 3
    ("between modes") when farther than max_dist."""
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(np.asarray(y))
    if y.shape[-1] != 2:
        raise ValueError(
            f"points must have shape (..., 2), got {tuple(y.shape)}")
    centres = torch.as_tensor(CENTRES, dtype=y.dtype, device=y.device)
    # (..., M)
    dist = torch.linalg.vector_norm(y[..., None, :] - centres, dim=-1)
    best, idx = dist.min(-1)
    return torch.where(best > max_dist, NUM_MODES, idx).cpu()


def sample_frequencies(y: torch.Tensor,
                       max_dist: float = MAX_DIST) -> torch.Tensor:
    """Fraction of points per mode: y (..., S, 2) -> float64 (..., 4), the last
    column "between modes"."""
    modes = nearest_mode(y, max_dist)
    return torch.nn.functional.one_hot(modes, NUM_MODES + 1).double().mean(-2)


# -----------------------------------------------------------------------------
# the model


def mlp(n_in: int, n_out: int, hidden: int, layers: int) -> nn.Sequential:
    """``layers`` hidden Linear + ReLU layers of width ``hidden``, then a
    Linear to ``n_out``."""
    dims = [n_in] + [hidden] * layers
    body: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        body += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*body, nn.Linear(dims[-1], n_out))


class GaussianMLP(nn.Module):
    """An MLP whose output is split into the mean and (clamped) log sigma of a
    DiagonalGaussian over z (B, D)."""

    def __init__(self, n_in: int, latent_dim: int, hidden: int, layers: int):
        super().__init__()
        self.net = mlp(n_in, 2 * latent_dim, hidden, layers)

    def forward(self, inputs: torch.Tensor) -> DiagonalGaussian:
        mu, log_sigma = self.net(inputs).chunk(2, dim=-1)
        return DiagonalGaussian(mu, log_sigma.clamp(*LOG_SIGMA_RANGE))


@register_model
class ToyCVAE(nn.Module):
    """A conditional VAE for vectors: x (B, x_dim) -> y (B, y_dim), latent z
    (B, latent_dim).

    prior p(z|x) and posterior q(z|x,y): MLPs giving diagonal Gaussians;
    decoder p(y|x,z) = N(mean(x, z), diag(sigma^2)): an MLP for the mean and
    ``decoder_sigma`` fixed (a float) or learned (``None``, the default: one
    log sigma per output dimension, a parameter starting at 0).
    """

    def __init__(self, x_dim: int = 1, y_dim: int = 2, latent_dim: int = 2,
                 hidden: int = 64, layers: int = 2,
                 decoder_sigma: float | None = None):
        super().__init__()
        if min(x_dim, y_dim, latent_dim, hidden) < 1 or layers < 0:
            raise ValueError(
                "dimensions and hidden must be >= 1 and layers >= 0, got "
                f"x_dim={x_dim}, y_dim={y_dim}, "
                f"latent_dim={latent_dim}, hidden={hidden}, layers={layers}")
        if decoder_sigma is not None and not decoder_sigma > 0:
            raise ValueError(
                "decoder_sigma must be positive or None (learned), got "
                f"{decoder_sigma}")
        self.config = dict(x_dim=x_dim, y_dim=y_dim, latent_dim=latent_dim,
                           hidden=hidden, layers=layers,
                           decoder_sigma=decoder_sigma)
        self.x_dim, self.y_dim, self.latent_dim = x_dim, y_dim, latent_dim
        self.prior = GaussianMLP(x_dim, latent_dim, hidden, layers)
        self.posterior = GaussianMLP(x_dim + y_dim, latent_dim, hidden, layers)
        self.decoder = mlp(x_dim + latent_dim, y_dim, hidden, layers)
        if decoder_sigma is None:
            self.decoder_log_sigma = nn.Parameter(torch.zeros(y_dim))
        else:
            self.register_buffer(
                "decoder_log_sigma",
                torch.full((y_dim,), math.log(decoder_sigma)))

    def _check(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        if (not isinstance(x, torch.Tensor) or x.dim() != 2
                or x.shape[1] != self.x_dim):
            shape = (tuple(x.shape) if isinstance(x, torch.Tensor)
                     else type(x).__name__)
            raise ValueError(
                f"x must have shape (B, {self.x_dim}), got {shape}")
        if y is not None and (not isinstance(y, torch.Tensor)
                              or y.shape != (x.shape[0], self.y_dim)):
            shape = (tuple(y.shape) if isinstance(y, torch.Tensor)
                     else type(y).__name__)
            raise ValueError(
                f"y must have shape (B, {self.y_dim}) = ({x.shape[0]}, "
                f"{self.y_dim}), got {shape}")

    @property
    def decoder_sigma(self) -> torch.Tensor:
        """The decoder's standard deviation per output dimension (y_dim,)."""
        return self.decoder_log_sigma.clamp(*LOG_SIGMA_RANGE).exp()

    def prior_dist(self, x: torch.Tensor) -> DiagonalGaussian:
        """p(z|x): mu, log_sigma (B, latent_dim)."""
        self._check(x)
        return self.prior(x)

    def posterior_dist(self, x: torch.Tensor,
                       y: torch.Tensor) -> DiagonalGaussian:
        """q(z|x,y): mu, log_sigma (B, latent_dim)."""
        self._check(x, y)
        return self.posterior(torch.cat([x, y], dim=-1))

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean for x (B, x_dim) and z (B, D) -> (B, y_dim), or z
        (B, n, D) -> (B, n, y_dim)."""
        self._check(x)
        if (z.dim() not in (2, 3) or z.shape[0] != x.shape[0]
                or z.shape[-1] != self.latent_dim):
            raise ValueError(
                f"z must be (B, {self.latent_dim}) or (B, n, "
                f"{self.latent_dim}) with B = {x.shape[0]}, "
                f"got {tuple(z.shape)}")
        if z.dim() == 3:
            x = x[:, None].expand(-1, z.shape[1], -1)
        return self.decoder(torch.cat([x, z], dim=-1))

    def elbo(self, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0,
             analytic_kl: bool = True) -> dict[str, torch.Tensor]:
        """The training loss (negative ELBO) and its parts, as scalars.

        recon: -log p(y | x, z) for one z ~ q(z|x,y), summed over y's
        dimensions, mean over the batch.
        kl: KL(q(z|x,y) || p(z|x)), analytic (summed over latent dims) or the
        one-sample estimate log q(z) - log p(z) (``analytic_kl=False``); mean
        over the batch.
        total: recon + beta * kl.
        """
        self._check(x, y)
        q, p = self.posterior(torch.cat([x, y], dim=-1)), self.prior(x)
        z = q.rsample()
        mean = self.decoder(torch.cat([x, z], dim=-1))
        recon = -DiagonalGaussian(mean, self.decoder_log_sigma.clamp(
            *LOG_SIGMA_RANGE).expand_as(mean)).log_prob(y).mean()
        kl = (kl_divergence(q, p) if analytic_kl
              else q.log_prob(z) - p.log_prob(z)).mean()
        return {"total": recon + beta * kl, "recon": recon, "kl": kl}

    def loss(self, x: torch.Tensor, y: torch.Tensor,
             **kwargs) -> dict[str, torch.Tensor]:
        """:meth:`elbo`, under the name :func:`probunet.train.fit` calls."""
        return self.elbo(x, y, **kwargs)

    def _output(self, mean: torch.Tensor, noise: bool) -> torch.Tensor:
        return (mean + self.decoder_sigma * torch.randn_like(mean) if noise
                else mean)

    @torch.no_grad()
    def sample(self, x: torch.Tensor, n: int = 1,
               noise: bool = True) -> torch.Tensor:
        """n answers per condition from the prior: z ~ p(z|x), y ~ p(y|x,z) ->
        (B, n, y_dim).

        ``noise=False`` returns the decoder means instead of draws around them.
        """
        if n < 1:
            raise ValueError(f"number of samples n must be >= 1, got {n}")
        return self._output(self.decode(x, self.prior_dist(x).rsample(n)),
                            noise)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor,
                    use_posterior_mean: bool = False, n: int = 1,
                    noise: bool = False) -> torch.Tensor:
        """Decode from the posterior q(z|x,y), its mean or n samples ->
        (B, n, y_dim) (decoder means unless ``noise``)."""
        if n < 1:
            raise ValueError(f"number of samples n must be >= 1, got {n}")
        q = self.posterior_dist(x, y)
        z = (q.mu[:, None].expand(-1, n, -1) if use_posterior_mean
             else q.rsample(n))
        return self._output(self.decode(x, z), noise)


@torch.no_grad()
def latent_mode_map(
        model: ToyCVAE, x: float,
        extent: tuple[float, float, float, float] = (-3.0, 3.0, -3.0, 3.0),
        resolution: int = 200, max_dist: float = MAX_DIST) -> torch.Tensor:
    """Where the decoder sends each point of a 2-D latent space, for one
    condition x.

    Decodes a ``resolution`` x ``resolution`` grid of z over ``extent`` =
    (z1_min, z1_max, z2_min, z2_max) and returns the :func:`nearest_mode` of
    each decoder mean: long (resolution, resolution), row i holding z2 = i-th
    grid value from z2_min up, column j z1 likewise
    (``imshow(..., origin="lower", extent=extent)`` draws it); 3 means "between
    modes".
    """
    if model.latent_dim != 2 or model.x_dim != 1:
        raise ValueError(
            f"needs a model with x_dim 1 and latent_dim 2, got {model.x_dim} "
            f"and {model.latent_dim}")
    device = next(model.parameters()).device
    z1 = torch.linspace(extent[0], extent[1], resolution, device=device)
    z2 = torch.linspace(extent[2], extent[3], resolution, device=device)
    z = torch.stack(torch.meshgrid(z1, z2, indexing="xy"),
                    dim=-1).reshape(-1, 2)
    xs = torch.full((len(z), 1), float(x), device=device)
    return nearest_mode(model.decode(xs, z), max_dist).reshape(
        resolution, resolution)
