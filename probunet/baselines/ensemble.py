"""An ensemble of deterministic U-Nets (Lakshminarayanan et al. 2017; the
"U-Net Ensemble" of Kohl et al. 2018)."""
from __future__ import annotations

import torch
from torch import nn

from ..checkpoint import register_model
from ..unet import UNet, check_number
from .base import Baseline, mean_of_probabilities, pick_at_random


@register_model
class UNetEnsemble(Baseline):
    """``members`` U-Nets, each initialised differently and each trained on
    every batch with its own cross-entropy. ``sample`` draws, for every
    sample, one member chosen at random: at most ``members`` distinct masks
    per image. ``forward`` averages the members' probabilities."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2,
                 channels: tuple[int, ...] = (16, 32, 64),
                 convs_per_block: int = 2, members: int = 4):
        check_number("members", members, 1)
        super().__init__(in_channels, num_classes, channels,
                         convs_per_block, members=members)
        self.members = nn.ModuleList(
            UNet(in_channels, num_classes, channels, convs_per_block)
            for _ in range(members))

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's logits: x (B, C, H, W) -> (B, M, K, H, W)."""
        self.check(x)
        return torch.stack([unet(x) for unet in self.members], 1)

    def loss(self, x: torch.Tensor,
             y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The members' cross-entropies, averaged over members (each member
        gets its own loss's gradient; Adam ignores the 1/M)."""
        self.check(x, y)
        recon = torch.stack([unet.loss(x, y)["total"]
                             for unet in self.members]).mean()
        return {"total": recon, "recon": recon}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_of_probabilities(self.member_logits(x))

    @torch.no_grad()
    def sample(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """n masks per image, each from a member chosen at random: logits
        (B, n, K, H, W)."""
        check_number("n", n, 1)
        return pick_at_random(self.member_logits(x), n)
