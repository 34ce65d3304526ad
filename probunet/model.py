"""The Probabilistic U-Net (Kohl et al., 2018): a U-Net whose output depends on a latent z.

Three networks: the U-Net backbone, the prior net p(z|x) and the posterior net
q(z|x,y). ``fcomb`` tiles z over the image, concatenates it with the U-Net's
last features and mixes them with 1x1 convolutions into class logits.

Training (``elbo``): z ~ q(z|x,y); loss = cross-entropy + beta * KL(q || p).
Inference (``sample``): z ~ p(z|x).

Loss convention, used everywhere in this package: every term is summed over
pixels (and latent dimensions) within an image and averaged over the batch, so
beta means the same thing whatever the batch size.

Three options depart from the reference; all are off by default (the chapter
"Where the Probabilistic U-Net falls short" measures them):

- ``coordinates``: two channels holding each pixel's row and column in [-1, 1]
  are appended to the input of all three nets (CoordConv, Liu et al. 2018). The
  encoders end in a spatial mean, so without them they hardly see *where* a marked
  object is.
- ``prior_components`` > 1: the prior is a mixture of Gaussians and the KL is the
  one-sample estimate log q(z) - log p(z) (Bhat et al. 2022).
- ``geco_target``: :meth:`geco_loss` trains with a reconstruction constraint and a
  learned Lagrange multiplier instead of a fixed beta (GECO, Rezende & Viola 2018,
  as in the Hierarchical Probabilistic U-Net, Kohl et al. 2019).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .latent import DiagonalGaussian, GaussianEncoder, GaussianMixture, MixtureEncoder, kl_divergence, posterior_input
from .unet import UNetBackbone, check_image, check_mask, init_weights

SAMPLE_CHUNK_ELEMENTS = 2**25  # hidden activations per chunk of samples in Fcomb (128 MiB as float32)
GECO_RATE = 1.0  # lambda *= exp(GECO_RATE * constraint), the constraint in nats per pixel
GECO_MOMENTUM = 0.99  # moving average of the constraint that drives lambda
GECO_LAMBDA_RANGE = (0.1, 10.0)  # lambda = 1 / (effective beta): kept within [0.1, 10]
OPTION_DEFAULTS = dict(coordinates=False, prior_components=1, geco_target=None)


def add_coordinates(x: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) -> (B, C + 2, H, W): each pixel's row and column, scaled to [-1, 1], appended."""
    b, _, h, w = x.shape
    rows = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)[:, None].expand(h, w)
    cols = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)[None, :].expand(h, w)
    return torch.cat([x, torch.stack([rows, cols]).expand(b, -1, -1, -1)], dim=1)


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
        coordinates: append row and column channels to the input of all three nets (CoordConv).
        prior_components: M > 1 makes the prior a mixture of M Gaussians (KL sampled).
        geco_target: train with GECO (:meth:`geco_loss`): the cross-entropy per pixel to reach.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, channels: tuple[int, ...] = (16, 32, 64),
                 convs_per_block: int = 2, latent_dim: int = 6, fcomb_layers: int = 3, fcomb_channels: int = 32,
                 coordinates: bool = False, prior_components: int = 1, geco_target: float | None = None):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (binary segmentation is 2 classes), got {num_classes}")
        if len(channels) < 1 or min(channels) < 1 or convs_per_block < 1:
            raise ValueError(f"need at least one level with positive channels and convs_per_block >= 1, got {channels}, {convs_per_block}")
        if latent_dim < 1 or fcomb_layers < 0 or fcomb_channels < 1:
            raise ValueError(f"latent_dim and fcomb_channels must be >= 1 and fcomb_layers >= 0, got {latent_dim}, {fcomb_channels}, {fcomb_layers}")
        if prior_components < 1 or (geco_target is not None and not geco_target > 0):
            raise ValueError(f"prior_components must be >= 1 and geco_target > 0 (or None), got {prior_components}, {geco_target}")
        channels = tuple(channels)
        self.config = dict(in_channels=in_channels, num_classes=num_classes, channels=channels, convs_per_block=convs_per_block,
                           latent_dim=latent_dim, fcomb_layers=fcomb_layers, fcomb_channels=fcomb_channels)
        options = dict(coordinates=coordinates, prior_components=prior_components, geco_target=geco_target)
        # stored only when set, so the configs of models saved before these options existed still match
        self.config |= {k: v for k, v in options.items() if v != OPTION_DEFAULTS[k]}
        self.in_channels, self.num_classes, self.levels, self.latent_dim = in_channels, num_classes, len(channels), latent_dim
        self.coordinates, self.geco_target = coordinates, geco_target
        c = in_channels + 2 * coordinates  # what the nets see
        self.unet = UNetBackbone(c, channels, convs_per_block)
        if prior_components == 1:
            self.prior = GaussianEncoder(c, channels, convs_per_block, latent_dim)
        else:
            self.prior = MixtureEncoder(c, channels, convs_per_block, latent_dim, prior_components)
        self.posterior = GaussianEncoder(c + num_classes, channels, convs_per_block, latent_dim)
        self.fcomb = Fcomb(channels[0], latent_dim, num_classes, fcomb_channels, fcomb_layers)
        if geco_target is not None:  # GECO's state: saved with the weights, so training resumes where it was
            self.register_buffer("geco_lambda", torch.tensor(1.0))
            self.register_buffer("geco_constraint", torch.tensor(0.0))
        init_weights(self)

    def _check(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        check_image(x, self.in_channels, self.levels)
        if y is not None:
            check_mask(y, x, self.num_classes)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the three nets see: the images (B, C, H, W), with coordinate channels if that option is on."""
        return add_coordinates(x) if self.coordinates else x

    def prior_dist(self, x: torch.Tensor) -> DiagonalGaussian | GaussianMixture:
        """p(z|x) for images (B, C, H, W): mu, log_sigma (B, D); a GaussianMixture (B, M, D) with prior_components > 1."""
        self._check(x)
        return self.prior(self._inputs(x))

    def posterior_dist(self, x: torch.Tensor, y: torch.Tensor) -> DiagonalGaussian:
        """q(z|x,y) for images (B, C, H, W) and masks (B, H, W): mu, log_sigma (B, D)."""
        self._check(x, y)
        return self.posterior(posterior_input(self._inputs(x), y.long(), self.num_classes))

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits for images (B, C, H, W) and latents (B, D) -> (B, K, H, W), or (B, n, D) -> (B, n, K, H, W)."""
        self._check(x)
        if z.shape[0] != x.shape[0] or z.shape[-1] != self.latent_dim or z.dim() not in (2, 3):
            raise ValueError(f"z must be (B, {self.latent_dim}) or (B, n, {self.latent_dim}) with B = {x.shape[0]}, got {tuple(z.shape)}")
        return self.fcomb(self.unet(self._inputs(x)), z)

    def elbo(self, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0, analytic_kl: bool = True) -> dict[str, torch.Tensor]:
        """The training loss (negative ELBO) and its parts, as scalars.

        x: images (B, C, H, W); y: class-index masks (B, H, W).
        recon: cross-entropy of the mask decoded from z ~ q(z|x,y), summed over pixels, mean over the batch.
        kl: KL(q(z|x,y) || p(z|x)), analytic (summed over latent dims) or, with analytic_kl=False,
        the one-sample estimate log q(z) - log p(z) at the same z; mean over the batch. A mixture
        prior has no closed-form KL: it always uses the estimate.
        total: recon + beta * kl.
        """
        self._check(x, y)
        y = y.long()
        inputs = self._inputs(x)
        q, p = self.posterior(posterior_input(inputs, y, self.num_classes)), self.prior(inputs)
        z = q.rsample()
        logits = self.fcomb(self.unet(inputs), z)
        # float32 for the sums over pixels, also under mixed-precision autocast
        recon = F.cross_entropy(logits.float(), y, reduction="sum") / x.shape[0]
        if analytic_kl and isinstance(p, DiagonalGaussian):
            kl = kl_divergence(q, p)
        else:
            kl = q.log_prob(z) - p.log_prob(z)
        kl = kl.mean()
        return {"total": recon + beta * kl, "recon": recon, "kl": kl}

    def geco_loss(self, x: torch.Tensor, y: torch.Tensor, **kwargs) -> dict[str, torch.Tensor]:
        """GECO: minimise the KL subject to cross-entropy per pixel <= ``geco_target`` (Rezende & Viola 2018).

        The constraint is C = recon - target * H * W (nats per image). Its moving average C_ma sets the
        Lagrange multiplier, lambda <- lambda * exp(GECO_RATE * C_ma / (H W)), after every training step;
        the loss is kl + lambda * C, with C's value the moving average's and its gradient this batch's.
        Adam is blind to the loss scale, so this is the ELBO with beta = 1 / lambda, a beta that falls
        while the masks are worse than the target and rises once they are better. Keyword arguments
        go to :meth:`elbo`. Returns the :meth:`elbo` dict with ``total`` replaced and ``geco_lambda`` added.
        """
        terms = self.elbo(x, y, **kwargs)
        pixels = x.shape[-2] * x.shape[-1]
        constraint = terms["recon"] - self.geco_target * pixels
        if self.training and torch.is_grad_enabled():  # the multiplier moves only while training
            with torch.no_grad():
                self.geco_constraint.mul_(GECO_MOMENTUM).add_((1 - GECO_MOMENTUM) * constraint)
                self.geco_lambda.mul_(torch.exp(GECO_RATE * self.geco_constraint / pixels)).clamp_(*GECO_LAMBDA_RANGE)
            constraint = constraint + (self.geco_constraint - constraint).detach()
        return terms | {"total": terms["kl"] + self.geco_lambda * constraint, "geco_lambda": self.geco_lambda.clone()}

    def loss(self, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0, **kwargs) -> dict[str, torch.Tensor]:
        """The training loss, under the name the training loop calls on every model: :meth:`elbo`, or
        :meth:`geco_loss` when ``geco_target`` is set (GECO sets its own KL weight: beta must stay 1)."""
        if self.geco_target is None:
            return self.elbo(x, y, beta=beta, **kwargs)
        if beta != 1.0:
            raise ValueError(f"GECO sets the KL weight itself (1 / lambda): train with beta=1 and no beta_warmup, got beta={beta}")
        return self.geco_loss(x, y, **kwargs)

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
