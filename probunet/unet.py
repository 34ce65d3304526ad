"""The U-Net backbone and the deterministic U-Net baseline. As in the reference
Probabilistic U-Net, each level is ``convs_per_block`` 3x3 convolutions with
ReLU; levels are joined by 2x2 average pooling on the way down and by bilinear
upsampling, concatenation with the skip and convolutions on the way up. Weights
are He-normal, biases small."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import register_model

def check_number(name: str, value, low: float, integer: bool = True) -> None:
    """TypeError unless value is an int (or a number); ValueError if < low."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    if not value >= low:  # also refuses NaN
        raise ValueError(f"{name} must be >= {low}, got {value!r}")

def check_channels(channels, convs_per_block: int, num_classes: int,
                   in_channels: int) -> tuple[int, ...]:
    """Check the arguments shared by both U-Nets; channels as a tuple."""
    check_number("in_channels", in_channels, 1)
    check_number("num_classes", num_classes, 2)  # binary is 2 classes
    check_number("convs_per_block", convs_per_block, 1)
    if not isinstance(channels, (tuple, list)) or not channels:
        raise TypeError(f"channels must be a non-empty tuple of ints, "
                        f"got {channels!r}")
    for c in channels:
        check_number("channels[i]", c, 1)
    return tuple(channels)

def init_weights(module: nn.Module) -> None:
    """He-normal weights and N(0, 0.001) biases for every convolution."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.normal_(m.bias, std=1e-3)

def conv_block(in_ch: int, out_ch: int, num_convs: int) -> nn.Sequential:
    """``num_convs`` times (3x3 conv, ReLU); keeps H, W."""
    layers = []
    for i in range(num_convs):
        layers += [nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3,
                             padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)

def check_image(x: torch.Tensor, in_channels: int, levels: int) -> None:
    """ValueError unless x is a finite float (B, in_channels, H, W) batch with
    H, W divisible by 2**(levels-1)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = (tuple(x.shape) if isinstance(x, torch.Tensor)
                 else type(x).__name__)
        raise ValueError(f"expected an image batch of shape (B, C, H, W), "
                         f"got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"images must be float, got dtype {x.dtype}: scale "
                         f"them first, e.g. x.float() / 255 for uint8")
    if x.shape[1] != in_channels:
        raise ValueError(f"expected {in_channels} input channel(s), got "
                         f"{x.shape[1]} (image shape {tuple(x.shape)})")
    factor = 2 ** (levels - 1)
    h, w = x.shape[-2:]
    if h % factor or w % factor or h < factor or w < factor:
        fix = (f"{max(factor, h // factor * factor)}x"
               f"{max(factor, w // factor * factor)}")
        raise ValueError(
            f"image size {h}x{w} does not work with {levels} levels: H and "
            f"W must be multiples of 2**(levels-1) = {factor} (e.g. crop or "
            f"pad to {fix}, or use fewer levels)")
    if x.shape[0] == 0:
        raise ValueError(f"empty image batch (B = 0): shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("image batch contains NaN or inf")

def check_dtype(x: torch.Tensor, model: nn.Module) -> None:
    """ValueError when float images (e.g. float64) do not match the weights."""
    weight = next(model.parameters())
    if (x.dtype != weight.dtype
            and not torch.is_autocast_enabled(x.device.type)):
        raise ValueError(f"images are {x.dtype} but the model's weights are "
                         f"{weight.dtype}: pass x.to({weight.dtype}) "
                         f"(e.g. x.float())")

def check_mask(y: torch.Tensor, x: torch.Tensor, num_classes: int) -> None:
    """ValueError unless y is an integer (B, H, W) mask matching x with labels
    in [0, num_classes)."""
    if not isinstance(y, torch.Tensor) or y.dim() != 3:
        shape = (tuple(y.shape) if isinstance(y, torch.Tensor)
                 else type(y).__name__)
        raise ValueError(f"expected a mask batch of class indices "
                         f"(B, H, W), got {shape}")
    if (y.dtype.is_floating_point or y.dtype.is_complex
            or y.dtype == torch.bool):
        raise ValueError(f"mask must hold integer class indices, got dtype "
                         f"{y.dtype}")
    if y.shape[0] != x.shape[0] or y.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"mask shape {tuple(y.shape)} does not match image "
                         f"shape {tuple(x.shape)}")
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"mask labels must be in [0, {num_classes - 1}], "
                         f"got min {int(y.min())}, max {int(y.max())}")

class Encoder(nn.Module):
    """Conv blocks joined by 2x2 average pooling: (B, C, H, W) -> a list of the
    features of every level."""

    def __init__(self, in_channels: int, channels: tuple[int, ...],
                 convs_per_block: int):
        super().__init__()
        chans = (in_channels, *channels)
        self.blocks = nn.ModuleList(
            conv_block(chans[i], chans[i + 1], convs_per_block)
            for i in range(len(channels)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = F.avg_pool2d(x, 2)
            x = block(x)
            features.append(x)
        return features

class UNetBackbone(nn.Module):
    """Encoder + decoder with skips: (B, C, H, W) -> (B, channels[0], H, W)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...],
                 convs_per_block: int):
        super().__init__()
        self.encoder = Encoder(in_channels, channels, convs_per_block)
        self.decoder = nn.ModuleList(
            conv_block(channels[i + 1] + channels[i], channels[i],
                       convs_per_block)
            for i in reversed(range(len(channels) - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *skips, x = self.encoder(x)
        for block, skip in zip(self.decoder, reversed(skips)):
            x = block(merge_skip(x, skip))
        return x

def merge_skip(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """The skip connection: deeper features (B, C1, h, w), resized to the
    skip's (H, W) (any size, so no crop or pad), then put before the skip's
    features (B, C2, H, W): (B, C1 + C2, H, W)."""
    x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear",
                      align_corners=False)
    return torch.cat([x, skip], dim=1)

@register_model
class UNet(nn.Module):
    """The deterministic baseline: the same backbone and a 1x1 conv to logits,
    (B, C, H, W) -> (B, num_classes, H, W). It has the Probabilistic U-Net's
    ``loss`` and ``sample``, so the same training and evaluation code serve
    both."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2,
                 channels: tuple[int, ...] = (16, 32, 64),
                 convs_per_block: int = 2):
        super().__init__()
        channels = check_channels(channels, convs_per_block, num_classes,
                                  in_channels)
        self.config = dict(in_channels=in_channels, num_classes=num_classes,
                           channels=channels, convs_per_block=convs_per_block)
        self.in_channels, self.num_classes, self.levels = (
            in_channels, num_classes, len(channels))
        self.backbone = UNetBackbone(in_channels, tuple(channels),
                                     convs_per_block)
        self.head = nn.Conv2d(channels[0], num_classes, 1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, self.in_channels, self.levels)
        check_dtype(x, self)
        return self.head(self.backbone(x))

    def loss(self, x: torch.Tensor,
             y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pixel-summed, batch-averaged cross-entropy: {"total", "recon"}."""
        check_image(x, self.in_channels, self.levels)
        check_dtype(x, self)
        check_mask(y, x, self.num_classes)
        recon = F.cross_entropy(self.head(self.backbone(x)), y.long(),
                                reduction="sum") / x.shape[0]
        return {"total": recon, "recon": recon}

    @torch.no_grad()
    def sample(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """The one prediction n times: logits (B, n, num_classes, H, W)."""
        check_number("n", n, 1)
        return self(x).unsqueeze(1).expand(-1, n, -1, -1, -1)
