"""Draw masks from a trained model and score them against annotations."""
from __future__ import annotations

import numpy as np
import torch

from .metrics import annotation_scores
from .unet import check_number

def _as_images(images) -> torch.Tensor:
    """Images as a tensor (numpy arrays are converted); TypeError otherwise."""
    if isinstance(images, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor or numpy array "
                        f"(N, C, H, W), got {type(images).__name__}")
    return images

@torch.no_grad()
def sample_masks(model: torch.nn.Module, images: torch.Tensor, n: int = 16,
                 batch_size: int = 50,
                 device: str | torch.device | None = None) -> torch.Tensor:
    """n prior samples per image as class-index masks: images (N, C, H, W) ->
    uint8 (N, n, H, W) on the CPU. The model runs in eval mode on its device
    (moved to ``device`` first if given), ``batch_size`` images at a time; the
    U-Net repeats its one prediction."""
    check_number("n", n, 1)
    check_number("batch_size", batch_size, 1)
    images = _as_images(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty batch (N, C, H, W), "
                         f"got shape {tuple(images.shape)}")
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    model.eval()
    out = [model.sample(images[i:i + batch_size].to(device), n).argmax(2)
           .to(torch.uint8).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out)

def evaluate_annotations(model: torch.nn.Module, dataset, n: int = 16,
                         batch_size: int = 50,
                         samples: torch.Tensor | None = None) -> dict:
    """Sample n masks per image of ``dataset`` (``.images``, ``.annotations``)
    and score them with :func:`probunet.metrics.annotation_scores`; ``samples``
    (N, S, H, W), e.g. from :func:`sample_masks`, scores masks drawn before
    instead."""
    for attr in ("images", "annotations"):
        if not hasattr(dataset, attr):
            raise ValueError(f"dataset needs .images (N, C, H, W) and "
                             f".annotations (N, R, H, W); "
                             f"{type(dataset).__name__} has no .{attr}")
    if len(dataset.images) == 0:
        raise ValueError("the dataset is empty: nothing to evaluate")
    check_number("batch_size", batch_size, 1)
    if samples is None:
        samples = sample_masks(model, dataset.images, n, batch_size)
    num_classes = getattr(model, "num_classes", None)
    return annotation_scores(samples, dataset.annotations, num_classes)

@torch.no_grad()
def reconstruct_masks(model: torch.nn.Module, images: torch.Tensor,
                      annotations: torch.Tensor,
                      use_posterior_mean: bool = True,
                      batch_size: int = 50) -> torch.Tensor:
    """Decode every annotation through the posterior: images (N, C, H, W),
    annotations (N, R, H, W) -> uint8 (N, R, H, W), from q(z | x_i, y_ir)'s
    mean or one sample."""
    check_number("batch_size", batch_size, 1)
    device = next(model.parameters()).device
    model.eval()
    n, r = annotations.shape[:2]
    x = images.repeat_interleave(r, 0)
    y = annotations.reshape(n * r, *annotations.shape[2:]).long()
    out = [model.reconstruct(x[i:i + batch_size].to(device),
                             y[i:i + batch_size].to(device),
                             use_posterior_mean)[:, 0].argmax(1)
           .to(torch.uint8).cpu() for i in range(0, n * r, batch_size)]
    return torch.cat(out).reshape(annotations.shape)
