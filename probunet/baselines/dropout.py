"""A U-Net sampled with dropout on at test time, Monte Carlo dropout
(Gal & Ghahramani 2016; Bayesian SegNet, Kendall et al. 2015; the "Dropout
U-Net" of Kohl et al. 2018)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import register_model
from ..unet import UNet, check_number
from .base import Baseline, sample_by_passes


class MonteCarloDropout(nn.Module):
    """Dropout that stays on while ``sampling`` is set, also in eval mode.
    Elementwise, as in Bayesian SegNet: every feature of every pixel is
    dropped on its own."""

    def __init__(self, p: float):
        super().__init__()
        self.p, self.sampling = p, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, self.training or self.sampling)


@register_model
class DropoutUNet(Baseline):
    """The U-Net with dropout of rate ``p`` after its inner blocks (every
    level but the outermost, on the way down and up: the "central" layers
    of Bayesian SegNet). Trained with dropout like any U-Net. ``sample``
    draws a dropout mask for every sample and runs the net once per sample;
    ``forward`` (eval mode) is the deterministic net, dropout off."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2,
                 channels: tuple[int, ...] = (16, 32, 64),
                 convs_per_block: int = 2, p: float = 0.5):
        check_number("p", p, 0, integer=False)
        if p >= 1:
            raise ValueError(f"p must be < 1 (a dropout rate), got {p!r}")
        super().__init__(in_channels, num_classes, channels,
                         convs_per_block, p=p)
        self.unet = UNet(in_channels, num_classes, channels,
                         convs_per_block)
        blocks = self.unet.backbone.encoder.blocks
        for i in range(1, len(blocks)):  # the inner levels, going down
            blocks[i] = nn.Sequential(blocks[i], MonteCarloDropout(p))
        decoder = self.unet.backbone.decoder  # innermost first
        for i in range(len(decoder) - 1):  # all but the outermost, going up
            decoder[i] = nn.Sequential(decoder[i], MonteCarloDropout(p))

    def _set_sampling(self, on: bool) -> None:
        for m in self.modules():
            if isinstance(m, MonteCarloDropout):
                m.sampling = on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        return self.unet(x)

    def loss(self, x: torch.Tensor,
             y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pixel-summed, batch-averaged cross-entropy, dropout as the mode
        (train or eval) says."""
        self.check(x, y)
        return self.unet.loss(x, y)

    @torch.no_grad()
    def sample(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """n masks per image, each with its own dropout mask: logits
        (B, n, K, H, W)."""
        self.check(x)
        self._set_sampling(True)
        try:
            return sample_by_passes(self.unet, x, n)
        finally:
            self._set_sampling(False)
