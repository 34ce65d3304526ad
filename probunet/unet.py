"""The U-Net backbone and the deterministic U-Net baseline.

Follows the reference Probabilistic U-Net: each level is ``convs_per_block``
3x3 convolutions with ReLU; levels are joined by 2x2 average pooling on the way
down and bilinear upsampling, concatenation with the skip, and convolutions on
the way up. Weights are He-normal, biases small.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def init_weights(module: nn.Module) -> None:
    """He-normal weights and N(0, 0.001) biases for every convolution, as in the reference code."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.normal_(m.bias, std=1e-3)


def conv_block(in_ch: int, out_ch: int, num_convs: int) -> nn.Sequential:
    """``num_convs`` times (3x3 conv, ReLU); keeps H, W."""
    layers = []
    for i in range(num_convs):
        layers += [nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def check_image(x: torch.Tensor, in_channels: int, levels: int) -> None:
    """Raise ValueError unless x is a finite float (B, in_channels, H, W) batch with H, W divisible by 2**(levels-1)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected an image batch of shape (B, C, H, W), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"images must be float, got dtype {x.dtype}: scale them first, e.g. x.float() / 255 for uint8")
    if x.shape[1] != in_channels:
        raise ValueError(f"expected {in_channels} input channel(s), got {x.shape[1]} (image shape {tuple(x.shape)})")
    factor = 2 ** (levels - 1)
    h, w = x.shape[-2:]
    if h % factor or w % factor or h < factor or w < factor:
        fix = f"{max(factor, h // factor * factor)}x{max(factor, w // factor * factor)}"
        raise ValueError(f"image size {h}x{w} does not work with {levels} levels: H and W must be multiples "
                         f"of 2**(levels-1) = {factor} (e.g. crop or pad to {fix}, or use fewer levels)")
    if not torch.isfinite(x).all():
        raise ValueError("image batch contains NaN or inf")


def check_mask(y: torch.Tensor, x: torch.Tensor, num_classes: int) -> None:
    """Raise ValueError unless y is a (B, H, W) integer mask matching x with labels in [0, num_classes)."""
    if not isinstance(y, torch.Tensor) or y.dim() != 3:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"expected a mask batch of class indices (B, H, W), got {shape}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ValueError(f"mask must hold integer class indices, got dtype {y.dtype}")
    if y.shape[0] != x.shape[0] or y.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"mask shape {tuple(y.shape)} does not match image shape {tuple(x.shape)}")
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"mask labels must be in [0, {num_classes - 1}], got min {int(y.min())}, max {int(y.max())}")


class Encoder(nn.Module):
    """Conv blocks with 2x2 average pooling between them: (B, C, H, W) -> list of features per level."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], convs_per_block: int):
        super().__init__()
        chans = (in_channels, *channels)
        self.blocks = nn.ModuleList(conv_block(chans[i], chans[i + 1], convs_per_block) for i in range(len(channels)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = F.avg_pool2d(x, 2)
            x = block(x)
            features.append(x)
        return features


class UNetBackbone(nn.Module):
    """Encoder + decoder with skips: (B, C, H, W) -> last features (B, channels[0], H, W)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], convs_per_block: int):
        super().__init__()
        self.encoder = Encoder(in_channels, channels, convs_per_block)
        self.decoder = nn.ModuleList(
            conv_block(channels[i + 1] + channels[i], channels[i], convs_per_block) for i in reversed(range(len(channels) - 1))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *skips, x = self.encoder(x)
        for block, skip in zip(self.decoder, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x


class UNet(nn.Module):
    """The deterministic U-Net baseline: the same backbone and a 1x1 conv to class logits.

    ``forward(x)``: (B, C, H, W) -> logits (B, num_classes, H, W). It shares the
    Probabilistic U-Net's interface (``loss``, ``sample``) so the same training
    loop and evaluation code serve both.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, channels: tuple[int, ...] = (16, 32, 64),
                 convs_per_block: int = 2):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (binary segmentation is 2 classes), got {num_classes}")
        if len(channels) < 1 or min(channels) < 1 or convs_per_block < 1:
            raise ValueError(f"need at least one level with positive channels and convs_per_block >= 1, got {channels}, {convs_per_block}")
        self.config = dict(in_channels=in_channels, num_classes=num_classes, channels=tuple(channels), convs_per_block=convs_per_block)
        self.in_channels, self.num_classes, self.levels = in_channels, num_classes, len(channels)
        self.backbone = UNetBackbone(in_channels, tuple(channels), convs_per_block)
        self.head = nn.Conv2d(channels[0], num_classes, 1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, self.in_channels, self.levels)
        return self.head(self.backbone(x))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy summed over pixels, averaged over the batch: {"total", "recon"}."""
        check_image(x, self.in_channels, self.levels)
        check_mask(y, x, self.num_classes)
        recon = F.cross_entropy(self.head(self.backbone(x)), y.long(), reduction="sum") / x.shape[0]
        return {"total": recon, "recon": recon}

    @torch.no_grad()
    def sample(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """The one prediction repeated n times: logits (B, n, num_classes, H, W)."""
        if n < 1:
            raise ValueError(f"number of samples n must be >= 1, got {n}")
        return self(x).unsqueeze(1).expand(-1, n, -1, -1, -1)
