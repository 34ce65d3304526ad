"""The Probabilistic U-Net (Kohl et al., 2018): a U-Net whose output depends on
a latent z, from a prior net p(z|x) and a posterior net q(z|x,y).

Training (``elbo``): z ~ q(z|x,y); loss = cross-entropy + beta * KL(q || p).
Inference (``sample``): z ~ p(z|x). Every loss term is summed over pixels
(and latent dimensions) and averaged over the batch, so beta means the same
whatever the batch size. Three options depart from the reference, all off by
default: CoordConv ``coordinates``; a mixture prior (``prior_components`` > 1,
Bhat et al. 2022); GECO (``geco_target``, Rezende & Viola 2018) instead of a
fixed beta.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .latent import (DiagonalGaussian, GaussianEncoder, GaussianMixture,
                     MixtureEncoder, kl_divergence, posterior_input)
from .checkpoint import register_model
from .unet import (UNetBackbone, check_channels, check_dtype, check_image,
                   check_mask, check_number, init_weights)

SAMPLE_CHUNK_ELEMENTS = 2**25  # hidden activations per chunk of samples
GECO_RATE = 1.0  # lambda *= exp(GECO_RATE * constraint), in nats per pixel
GECO_MOMENTUM = 0.99  # moving average of the constraint that drives lambda
GECO_LAMBDA_RANGE = (0.1, 10.0)  # lambda = 1 / (effective beta)

def add_coordinates(x: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) -> (B, C + 2, H, W): each pixel's row and column in
    [-1, 1] appended (CoordConv, Liu et al. 2018), as the encoders, ending in a
    spatial mean, hardly see *where* objects are."""
    b, _, h, w = x.shape
    rows = torch.linspace(-1, 1, h, device=x.device,
                          dtype=x.dtype)[:, None].expand(h, w)
    cols = torch.linspace(-1, 1, w, device=x.device,
                          dtype=x.dtype)[None, :].expand(h, w)
    return torch.cat([x, torch.stack([rows, cols]).expand(b, -1, -1, -1)],
                     dim=1)

class Fcomb(nn.Module):
    """Combine U-Net features (B, F, H, W) with z (B, D) or (B, n, D) into
    logits (B, [n,] K, H, W): as in the reference, 1x1 convolutions of the
    features concatenated with z tiled over the image. The first is linear, so
    it splits exactly, ``W [f; z] + b = (W_f f + b) + W_z z``: the feature part
    is computed once per image, the z part once per sample."""

    def __init__(self, feature_channels: int, latent_dim: int,
                 num_classes: int, hidden: int = 32, layers: int = 3):
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
        """First convolution's output (M, C1, H, W) -> logits (M, K, H, W)."""
        if not len(self.body):
            return h  # the first convolution was the logits layer
        return self.logits(self.body[2:](F.relu(h)))

    def forward(self, features: torch.Tensor, z: torch.Tensor,
                chunk: int | None = None) -> torch.Tensor:
        """features (B, F, H, W), z (B, D) -> (B, K, H, W); z (B, n, D) ->
        (B, n, K, H, W), ``chunk`` samples at a time (default: about
        SAMPLE_CHUNK_ELEMENTS hidden activations), which bounds memory."""
        conv, f = self._first(), self.feature_channels
        # (B, C1, H, W), once per image
        per_image = F.conv2d(features, conv.weight[:, :f], conv.bias)
        w_z = conv.weight[:, f:, 0, 0]  # (C1, D)
        if z.dim() == 2:
            return self._rest(per_image + (z @ w_z.T)[:, :, None, None])
        b, n, _ = z.shape
        per_sample = z @ w_z.T  # (B, n, C1)
        if chunk is None:
            chunk = max(1, SAMPLE_CHUNK_ELEMENTS // per_image.numel())
        out = None
        for i in range(0, n, chunk):
            # (B, c, C1, H, W)
            h = per_image[:, None] + per_sample[:, i:i + chunk, :, None, None]
            logits = self._rest(h.flatten(0, 1)).unflatten(0, (b, -1))
            if out is None:  # filled in place: no second copy of all logits
                out = logits.new_empty(b, n, *logits.shape[2:])
            out[:, i:i + chunk] = logits
        return out

@register_model
class ProbabilisticUNet(nn.Module):
    """Probabilistic U-Net for ``num_classes`` K >= 2 (binary = 2) and images
    of ``in_channels`` C. ``channels``: filters per level of the U-Net and of
    the prior and posterior encoders (H and W must be multiples of
    2**(len(channels) - 1)), each level ``convs_per_block`` 3x3 convolutions;
    ``latent_dim``: size D of z; ``fcomb_layers`` hidden 1x1 convolutions of
    ``fcomb_channels``. ``coordinates``: append row and column channels to the
    inputs; ``prior_components`` M > 1: a mixture prior (KL sampled);
    ``geco_target``: the cross-entropy per pixel that GECO aims at."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2,
                 channels: tuple[int, ...] = (16, 32, 64),
                 convs_per_block: int = 2, latent_dim: int = 6,
                 fcomb_layers: int = 3, fcomb_channels: int = 32,
                 coordinates: bool = False, prior_components: int = 1,
                 geco_target: float | None = None):
        super().__init__()
        channels = check_channels(channels, convs_per_block, num_classes,
                                  in_channels)
        for name, value, low in (("latent_dim", latent_dim, 1),
                                 ("fcomb_layers", fcomb_layers, 0),
                                 ("fcomb_channels", fcomb_channels, 1),
                                 ("prior_components", prior_components, 1)):
            check_number(name, value, low)
        if not isinstance(coordinates, bool):
            raise TypeError(f"coordinates must be a bool, got {coordinates!r}")
        if geco_target is not None:
            check_number("geco_target", geco_target, 0, integer=False)
            if geco_target == 0:
                raise ValueError("geco_target must be > 0 (or None)")
        self.config = dict(
            in_channels=in_channels, num_classes=num_classes,
            channels=channels, convs_per_block=convs_per_block,
            latent_dim=latent_dim, fcomb_layers=fcomb_layers,
            fcomb_channels=fcomb_channels, coordinates=coordinates,
            prior_components=prior_components, geco_target=geco_target)
        (self.in_channels, self.num_classes, self.levels,
         self.latent_dim) = in_channels, num_classes, len(channels), latent_dim
        self.coordinates, self.geco_target = coordinates, geco_target
        c = in_channels + 2 * coordinates  # what the nets see
        self.unet = UNetBackbone(c, channels, convs_per_block)
        if prior_components == 1:
            self.prior = GaussianEncoder(c, channels, convs_per_block,
                                         latent_dim)
        else:
            self.prior = MixtureEncoder(c, channels, convs_per_block,
                                        latent_dim, prior_components)
        self.posterior = GaussianEncoder(c + num_classes, channels,
                                         convs_per_block, latent_dim)
        self.fcomb = Fcomb(channels[0], latent_dim, num_classes,
                           fcomb_channels, fcomb_layers)
        if geco_target is not None:
            # GECO's state, saved with the weights: training resumes there
            self.register_buffer("geco_lambda", torch.tensor(1.0))
            self.register_buffer("geco_constraint", torch.tensor(0.0))
        init_weights(self)

    def _check(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        check_image(x, self.in_channels, self.levels)
        check_dtype(x, self)
        if y is not None:
            check_mask(y, x, self.num_classes)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the three nets see: images, with coordinate channels if on."""
        return add_coordinates(x) if self.coordinates else x

    def prior_dist(self, x: torch.Tensor
                   ) -> DiagonalGaussian | GaussianMixture:
        """p(z|x) for images x (B, C, H, W): mu, log_sigma (B, D), or a
        GaussianMixture (B, M, D) with prior_components > 1."""
        self._check(x)
        return self.prior(self._inputs(x))

    def posterior_dist(self, x: torch.Tensor,
                       y: torch.Tensor) -> DiagonalGaussian:
        """q(z|x,y), x (B, C, H, W), y (B, H, W): mu, log_sigma (B, D)."""
        self._check(x, y)
        return self.posterior(posterior_input(self._inputs(x), y.long(),
                                              self.num_classes))

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits for x (B, C, H, W) and z (B, D) -> (B, K, H, W), or z
        (B, n, D) -> (B, n, K, H, W)."""
        self._check(x)
        if (z.shape[0] != x.shape[0] or z.shape[-1] != self.latent_dim
                or z.dim() not in (2, 3)):
            raise ValueError(f"z must be (B, {self.latent_dim}) or "
                             f"(B, n, {self.latent_dim}) with "
                             f"B = {x.shape[0]}, got {tuple(z.shape)}")
        return self.fcomb(self.unet(self._inputs(x)), z)

    def elbo(self, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0,
             analytic_kl: bool = True) -> dict[str, torch.Tensor]:
        """The training loss (negative ELBO) and its parts, as scalars.

        x: images (B, C, H, W); y: class-index masks (B, H, W).
        recon: cross-entropy of the mask decoded from z ~ q(z|x,y).
        kl: KL(q || p), analytic or (analytic_kl=False, or a mixture prior) the
        one-sample estimate log q(z) - log p(z).
        total: recon + beta * kl.
        """
        self._check(x, y)
        y = y.long()
        inputs = self._inputs(x)
        q, p = (self.posterior(posterior_input(inputs, y, self.num_classes)),
                self.prior(inputs))
        z = q.rsample()
        logits = self.fcomb(self.unet(inputs), z)
        # float32 for the sums over pixels, also under mixed precision
        recon = F.cross_entropy(logits.float(), y,
                                reduction="sum") / x.shape[0]
        if analytic_kl and isinstance(p, DiagonalGaussian):
            kl = kl_divergence(q, p)
        else:
            kl = q.log_prob(z) - p.log_prob(z)
        kl = kl.mean()
        return {"total": recon + beta * kl, "recon": recon, "kl": kl}

    def geco_loss(self, x: torch.Tensor, y: torch.Tensor,
                  **kwargs) -> dict[str, torch.Tensor]:
        """GECO: minimise the KL subject to cross-entropy per pixel <= target.
        The constraint is C = recon - target * H * W; its moving average C_ma
        sets the multiplier, lambda <- lambda * exp(GECO_RATE * C_ma / (H W)),
        at every training step. The loss is kl + lambda * C (C's value the
        average's, its gradient this batch's): for Adam, the ELBO with beta =
        ``1 / lambda``. Returns the :meth:`elbo` dict, ``total`` replaced,
        ``geco_lambda`` added."""
        terms = self.elbo(x, y, **kwargs)
        pixels = x.shape[-2] * x.shape[-1]
        constraint = terms["recon"] - self.geco_target * pixels
        # the multiplier moves only while training
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                self.geco_constraint.mul_(GECO_MOMENTUM).add_(
                    (1 - GECO_MOMENTUM) * constraint)
                self.geco_lambda.mul_(torch.exp(
                    GECO_RATE * self.geco_constraint / pixels)
                ).clamp_(*GECO_LAMBDA_RANGE)
            constraint = constraint + (self.geco_constraint
                                       - constraint).detach()
        return terms | {"total": terms["kl"] + self.geco_lambda * constraint,
                        "geco_lambda": self.geco_lambda.clone()}

    def loss(self, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0,
             **kwargs) -> dict[str, torch.Tensor]:
        """The training loop's loss: :meth:`elbo`, or :meth:`geco_loss` with a
        ``geco_target`` (GECO sets its own KL weight: beta must be 1)."""
        if self.geco_target is None:
            return self.elbo(x, y, beta=beta, **kwargs)
        if beta != 1.0:
            raise ValueError(f"GECO sets the KL weight itself (1 / lambda): "
                             f"train with beta=1 and no beta_warmup, "
                             f"got beta={beta}")
        return self.geco_loss(x, y, **kwargs)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None,
                **kwargs):
        """With masks y (B, H, W): the :meth:`loss` dict, else :meth:`sample`
        logits (B, n, K, H, W); for wrappers (``torch.compile``, DDP).
        ``kwargs`` go to ``loss`` (beta, analytic_kl) or ``sample`` (n)."""
        return (self.sample(x, **kwargs) if y is None
                else self.loss(x, y, **kwargs))

    @torch.no_grad()
    def sample(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """n prior samples per image: z ~ p(z|x) -> logits (B, n, K, H, W)."""
        check_number("n", n, 1)
        return self.decode(x, self.prior_dist(x).rsample(n))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor,
                    use_posterior_mean: bool = False,
                    n: int = 1) -> torch.Tensor:
        """z from q(z|x,y), its mean or n samples -> logits (B, n, K, H, W)."""
        check_number("n", n, 1)
        q = self.posterior_dist(x, y)
        z = (q.mu[:, None].expand(-1, n, -1) if use_posterior_mean
             else q.rsample(n))
        return self.decode(x, z)
