"""What every rival shares: its constructor's checks, the input checks and
drawing one of M predictions at random."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..unet import (check_channels, check_dtype, check_image, check_mask,
                    check_number)


class Baseline(nn.Module):
    """A segmentation model of ``in_channels`` C and ``num_classes`` K on
    the package's U-Net with ``channels`` per level. Subclasses pass their
    own arguments in ``extra``: ``self.config`` holds them all (what a
    checkpoint stores to rebuild the model)."""

    def __init__(self, in_channels: int, num_classes: int,
                 channels: tuple[int, ...], convs_per_block: int,
                 **extra):
        super().__init__()
        channels = check_channels(channels, convs_per_block, num_classes,
                                  in_channels)
        self.config = dict(in_channels=in_channels, num_classes=num_classes,
                           channels=channels,
                           convs_per_block=convs_per_block, **extra)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.levels = len(channels)

    def check(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """ValueError unless x is an image batch (B, C, H, W) the model
        takes, and y (if given) masks (B, H, W) of class indices."""
        check_image(x, self.in_channels, self.levels)
        check_dtype(x, self)
        if y is not None:
            check_mask(y, x, self.num_classes)


def pick_at_random(logits: torch.Tensor, n: int) -> torch.Tensor:
    """n draws per image, each one of M predictions chosen uniformly:
    logits (B, M, K, H, W) -> (B, n, K, H, W)."""
    check_number("n", n, 1)
    b, m = logits.shape[:2]
    idx = torch.randint(m, (b, n), device=logits.device)
    return logits[torch.arange(b, device=logits.device)[:, None], idx]


def mean_of_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """The mixture's per-pixel prediction: logits (B, M, K, H, W) -> log of
    the mean softmax (B, K, H, W), a logit whose softmax is that mean."""
    m = logits.shape[1]
    return torch.logsumexp(F.log_softmax(logits, 2), 1) - torch.log(
        torch.tensor(float(m)))


def pixel_cross_entropy(logits: torch.Tensor,
                        y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over pixels, per image: logits (B, K, H, W),
    masks (B, H, W) -> (B,), in float32 also under mixed precision."""
    return F.cross_entropy(logits.float(), y.long(),
                           reduction="none").flatten(1).sum(1)


PASS_IMAGES = 256  # images per forward pass when every sample needs one


def sample_by_passes(draw, x: torch.Tensor, n: int) -> torch.Tensor:
    """n samples per image for models that run the whole net per sample:
    ``draw`` maps images (M, C, H, W) to logits (M, K, H, W), drawing fresh
    noise for every row. x (B, C, H, W) -> (B, n, K, H, W), about
    PASS_IMAGES images per pass (a bound on memory)."""
    check_number("n", n, 1)
    b = x.shape[0]
    chunk = max(1, PASS_IMAGES // b)
    out = []
    for i in range(0, n, chunk):
        c = min(chunk, n - i)
        xs = x[:, None].expand(b, c, *x.shape[1:]).flatten(0, 1)
        out.append(draw(xs).unflatten(0, (b, c)))
    return torch.cat(out, 1)
