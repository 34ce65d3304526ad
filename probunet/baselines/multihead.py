"""M-heads: one U-Net with several output heads, trained so that only the
best head learns from each example (Rupprecht et al. 2017; the "M-Heads"
of Kohl et al. 2018)."""
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
    ``sample`` draws, for every sample, one head chosen at random: at most
    ``heads`` distinct masks per image. ``forward`` averages the heads."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2,
                 channels: tuple[int, ...] = (16, 32, 64),
                 convs_per_block: int = 2, heads: int = 4):
        check_number("heads", heads, 1)
        super().__init__(in_channels, num_classes, channels,
                         convs_per_block, heads=heads)
        self.heads = heads
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
        gradient from that example."""
        self.check(x, y)
        logits = self.head_logits(x)
        ce = torch.stack([pixel_cross_entropy(logits[:, m], y)
                          for m in range(self.heads)], 1)  # (B, M)
        recon = ce.min(1).values.mean()
        return {"total": recon, "recon": recon}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_of_probabilities(self.head_logits(x))

    @torch.no_grad()
    def sample(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """n masks per image, each from a head chosen at random: logits
        (B, n, K, H, W)."""
        check_number("n", n, 1)
        return pick_at_random(self.head_logits(x), n)
