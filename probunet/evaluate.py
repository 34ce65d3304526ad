"""Draw masks from a trained model and score them against the toy data's known truth."""
from __future__ import annotations

import torch

from .data import ToyAmbiguousDataset
from .metrics import summarize


@torch.no_grad()
def sample_masks(model: torch.nn.Module, images: torch.Tensor, n: int = 16, batch_size: int = 50,
                 device: str | torch.device | None = None) -> torch.Tensor:
    """n prior samples per image as class-index masks: images (N, C, H, W) -> uint8 (N, n, H, W) on the CPU.

    Works for both models (the U-Net repeats its one prediction). Puts the model in eval mode and
    runs it on its own device (moved to ``device`` first if given); images go there ``batch_size`` at a time.
    """
    if n < 1:
        raise ValueError(f"number of samples n must be >= 1, got {n}")
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    model.eval()
    out = [model.sample(images[i:i + batch_size].to(device), n).argmax(2).to(torch.uint8).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def evaluate(model: torch.nn.Module, dataset: ToyAmbiguousDataset, n: int = 100, batch_size: int = 50) -> dict:
    """Sample n masks per image of a toy dataset and return :func:`probunet.metrics.summarize` of them."""
    samples = sample_masks(model, dataset.images, n, batch_size)
    return summarize(samples, dataset.annotations, dataset.objects, dataset.probs)


@torch.no_grad()
def reconstruct_masks(model: torch.nn.Module, images: torch.Tensor, annotations: torch.Tensor,
                      use_posterior_mean: bool = True, batch_size: int = 50) -> torch.Tensor:
    """Decode every annotation through the posterior: images (N, C, H, W), annotations (N, R, H, W) -> uint8 (N, R, H, W).

    Reconstruction r of image i is decoded from q(z | x_i, y_ir) (its mean, or one sample).
    """
    device = next(model.parameters()).device
    model.eval()
    n, r = annotations.shape[:2]
    x = images.repeat_interleave(r, 0)
    y = annotations.reshape(n * r, *annotations.shape[2:]).long()
    out = [model.reconstruct(x[i:i + batch_size].to(device), y[i:i + batch_size].to(device), use_posterior_mean)[:, 0]
           .argmax(1).to(torch.uint8).cpu() for i in range(0, n * r, batch_size)]
    return torch.cat(out).reshape(annotations.shape)
