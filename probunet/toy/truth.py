"""Scores against the toy data's known truth: the generic scores plus what only a known law allows.

:func:`probunet.metrics.annotation_scores` compares samples with a handful of
annotations. On the toy data the whole distribution of masks is known (its modes
and their probabilities), so :func:`summarize` adds the exact GED, the frequency
of each mode, the share of samples that match no mode, and the calibration of
per-object frequencies. :func:`law_and_raters_tv` asks whether samples follow the law or
the few raters a model was trained on.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..evaluate import sample_masks
from ..metrics import (Array, _assign, _at_least_two, _binary, _expected, _frequencies, _ged_exact, _masks,
                       _object_frequencies, _pairwise_iou, _same_images, _unit_interval, annotation_scores,
                       calibration_error, mode_frequencies, mode_tv)
from .shapes import ToyAmbiguousDataset, modes_of


def summarize(samples: Array, annotations: Array, objects: Array, probs: Array, min_iou: float = 0.5) -> dict:
    """All metrics for binary predictions on data with known independent objects.

    samples (N, S, H, W) with S >= 2, annotations (N, R, H, W), objects bool
    (N, J, H, W), probs (N, J) per-object marking probabilities (the modes come
    from :func:`probunet.toy.modes_of`). Returns :func:`probunet.metrics.annotation_scores`
    (``ged_unbiased``, ``ged_biased``, ``hm_iou``, ``diversity``, ``annotator_diversity``)
    and, against the truth, floats averaged over images: ``ged_exact``, ``true_diversity``,
    ``mode_tv`` (pooled), ``mode_tv_per_image`` (mean), ``other_fraction``,
    ``calibration_error`` (of per-object frequencies), and the pooled lists
    ``mode_freq_pred`` and ``mode_freq_true`` (M + 1 entries, "other" last; its true value is 0).
    """
    s, y, o = _masks(samples, "samples"), _masks(annotations, "annotations"), _masks(objects, "objects")
    _same_images(s, y, "samples", "annotations")
    _same_images(s, o, "samples", "objects")
    s, o = _binary(s, "samples", "summarize"), _binary(o, "objects", "summarize")
    _binary(y, "annotations", "summarize")
    p_obj = _unit_interval(probs, "probs")
    if tuple(p_obj.shape) != tuple(o.shape[:2]):
        raise ValueError(f"probs must have shape (N, J) = {tuple(o.shape[:2])}, got {tuple(p_obj.shape)}")
    _at_least_two(s, "samples", "summarize")
    modes, p = modes_of(o.numpy(), p_obj.numpy())
    modes, p = torch.from_numpy(modes), torch.from_numpy(p)
    s = s.to(torch.uint8)

    iou_sm, d_ss, d_mm = _pairwise_iou(s, modes), 1 - _pairwise_iou(s), 1 - _pairwise_iou(modes)
    freqs = _frequencies(_assign(iou_sm, min_iou), modes.shape[1])
    return annotation_scores(s, y) | {
        "ged_exact": _ged_exact(1 - iou_sm, d_ss, d_mm, p).mean().item(),
        "true_diversity": _expected(d_mm, p).mean().item(),
        "mode_tv": mode_tv(freqs, p, pooled=True),
        "mode_tv_per_image": mode_tv(freqs, p, pooled=False).mean().item(),
        "other_fraction": freqs[:, -1].mean().item(),
        "calibration_error": calibration_error(_object_frequencies(s != 0, o, 0.5), p_obj),
        "mode_freq_pred": freqs.mean(0).tolist(),
        "mode_freq_true": F.pad(p, (0, 1)).mean(0).tolist(),
    }


def law_and_raters_tv(samples: Array, annotations: Array, modes: Array, probs: Array,
                      min_iou: float = 0.5) -> dict[str, torch.Tensor]:
    """Per-image TV of the samples' mode frequencies to the true law and to the raters' own frequencies.

    samples (N, S, H, W), annotations (N, R, H, W), each of them one of the modes (N, M, H, W),
    probs (N, M). Returns ``{"law": (N,), "raters": (N,)}``. R raters give each mode a frequency in
    steps of 1/R; a model that learned its raters rather than the law they were drawn from is
    closer to the first than to the second.
    """
    freqs = mode_frequencies(samples, modes, min_iou)                    # (N, M + 1), "other" last
    raters = mode_frequencies(annotations, modes, min_iou)
    if (raters[:, -1] > 0).any():
        raise ValueError("every annotation must be one of the modes; "
                         f"{int((raters[:, -1] > 0).sum())} images have annotations that match none")
    return {"law": mode_tv(freqs, probs, pooled=False), "raters": mode_tv(freqs, raters[:, :-1], pooled=False)}


def sample_truth(objects: Array, probs: Array, n: int, seed: int = 0) -> torch.Tensor:
    """n masks per image drawn from the true law itself: uint8 (N, n, H, W) from objects (N, J, H, W), probs (N, J).

    Each object is marked independently with its probability, as the toy raters do. Scored like a
    model's samples, they give the floor that n samples of a perfect model reach.
    """
    o, p = _binary(_masks(objects, "objects"), "objects", "sample_truth").bool(), _unit_interval(probs, "probs")
    if n < 1:
        raise ValueError(f"number of samples n must be >= 1, got {n}")
    marks = torch.rand(o.shape[0], n, o.shape[1], generator=torch.Generator().manual_seed(seed)) < p[:, None].float()
    return (o[:, None] & marks[..., None, None]).any(2).to(torch.uint8)


def evaluate(model: torch.nn.Module, dataset: ToyAmbiguousDataset, n: int = 100, batch_size: int = 50) -> dict:
    """Sample n masks per image of a toy dataset and return :func:`summarize` of them."""
    samples = sample_masks(model, dataset.images, n, batch_size)
    return summarize(samples, dataset.annotations, dataset.objects, dataset.probs)
