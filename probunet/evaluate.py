"""Draw masks from a trained model and score them against a dataset's annotations.

Works on any dataset with ``.images`` (N, C, H, W) and ``.annotations`` (N, R, H, W):
:class:`probunet.data.MultiAnnotatorDataset`, or the toy sets (whose known truth
:func:`probunet.toy.evaluate` adds to the scores).
"""
from __future__ import annotations

import torch

from .metrics import annotation_scores


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


def evaluate_annotations(model: torch.nn.Module, dataset, n: int = 16, batch_size: int = 50,
                         samples: torch.Tensor | None = None) -> dict:
    """Sample n masks per image of ``dataset`` and score them against its annotations.

    ``dataset`` needs ``.images`` (N, C, H, W) and ``.annotations`` (N, R, H, W); no known truth.
    Returns :func:`probunet.metrics.annotation_scores` (GED unbiased and biased, Hungarian-matched
    IoU, diversity; per class too when there are several foreground classes). Pass ``samples``
    (N, S, H, W), e.g. from :func:`sample_masks`, to score masks drawn before (n is then unused).
    """
    for attr in ("images", "annotations"):
        if not hasattr(dataset, attr):
            raise ValueError(f"dataset needs .images (N, C, H, W) and .annotations (N, R, H, W); "
                             f"{type(dataset).__name__} has no .{attr}")
    if samples is None:
        samples = sample_masks(model, dataset.images, n, batch_size)
    num_classes = getattr(model, "num_classes", None)
    return annotation_scores(samples, dataset.annotations, num_classes)


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
