"""M-heads: one U-Net with several output heads, trained so that the best
head learns from each example (Rupprecht et al. 2017; the "M-Heads" of Kohl
et al. 2018)."""
from __future__ import annotations

import torch
from torch import nn

from ..checkpoint import register_model
from ..unet import UNetBackbone, check_number, init_weights
from .base import (Baseline, mean_of_probabilities, pick_at_random,
                   pixel_cross_entropy)


@register_model
class MultiHeadUNet(Baseline):
    """A U-Net whose last 1x1 convolution gives ``heads`` predictions. The
    loss is, per example, the cross-entropy of the head closest to its mask
    (winner takes all), so each head specialises in some of the masks.
    A head that never wins never learns: ``epsilon`` > 0 gives the others
    that share of the weight, Rupprecht et al.'s relaxed winner-takes-all.
    ``sample`` draws, for every sample, one head chosen at random: at most
    ``heads`` distinct masks per image. ``forward`` averages the heads."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2,
                 channels: tuple[int, ...] = (16, 32, 64),
                 convs_per_block: int = 2, heads: int = 4,
                 epsilon: float = 0.0):
        check_number("heads", heads, 1)
        check_number("epsilon", epsilon, 0, integer=False)
        if epsilon >= 1 or (epsilon > 0 and heads == 1):
            raise ValueError(f"epsilon must be < 1, and 0 with one head, "
                             f"got {epsilon!r} with {heads} head(s)")
        super().__init__(in_channels, num_classes, channels,
                         convs_per_block, heads=heads, epsilon=epsilon)
        self.heads, self.epsilon = heads, epsilon
        self.backbone = UNetBackbone(in_channels, tuple(channels),
                                     convs_per_block)
        self.head = nn.Conv2d(channels[0], heads * num_classes, 1)
        init_weights(self)

    def head_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every head's logits: x (B, C, H, W) -> (B, M, K, H, W)."""
        self.check(x)
        out = self.head(self.backbone(x))
        return out.unflatten(1, (self.heads, self.num_classes))

    def loss(self, x: torch.Tensor,
             y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per example the smallest of the heads' pixel-summed
        cross-entropies, averaged over the batch; the other heads get no
        gradient from that example. With ``epsilon``: (1 - epsilon) times
        the best head's plus epsilon times the mean of the others'."""
        self.check(x, y)
        logits = self.head_logits(x)
        ce = torch.stack([pixel_cross_entropy(logits[:, m], y)
                          for m in range(self.heads)], 1)  # (B, M)
        best = ce.min(1).values
        recon = best.mean()
        if self.epsilon == 0:
            return {"total": recon, "recon": recon}
        others = (ce.sum(1) - best) / (self.heads - 1)
        total = ((1 - self.epsilon) * best + self.epsilon * others).mean()
        return {"total": total, "recon": recon}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_of_probabilities(self.head_logits(x))

    @torch.no_grad()
    def sample(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """n masks per image, each from a head chosen at random: logits
        (B, n, K, H, W)."""
        check_number("n", n, 1)
        return pick_at_random(self.head_logits(x), n)
