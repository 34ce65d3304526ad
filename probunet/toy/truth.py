"""Scores against a known truth: what only a known law of masks allows.

:func:`probunet.metrics.annotation_scores` compares samples with a handful of
annotations. On the toy data the whole distribution of masks is known (its
modes and their probabilities), so :func:`summarize` adds the exact GED, the
frequency of each mode, the share of samples that match no mode, and the
calibration of per-object frequencies. :func:`law_and_raters_tv` asks whether
samples follow the law or the few raters a model was trained on.

Two laws are known: independent objects (the shapes toy, whose modes are all
subsets of the objects) and mutually exclusive ones (``exclusive=True``: one
object per mask, the modes are the objects themselves).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import numpy as np

from ..evaluate import sample_masks
from ..metrics import (Array, annotation_scores, check_at_least_two,
                       check_binary, check_masks, check_same_images,
                       check_tensor, mean_pairs, pairwise_iou)
from .exclusive import ExclusiveObjectsDataset
from .shapes import ToyAmbiguousDataset, modes_of

PROB_TOL = 1e-4  # how far a probability vector's sum may be from 1

# -----------------------------------------------------------------------------
# checks of probabilities


def _unit_interval(x: Array, name: str) -> torch.Tensor:
    t = check_tensor(x, name).double()
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{t.min().item():.4g}, "
            f"{t.max().item():.4g}]")
    return t


def _distribution(x: Array, name: str, shape: tuple[int, int]) -> torch.Tensor:
    """Probabilities (N, M) with rows summing to 1 (PROB_TOL) -> float64."""
    t = _unit_interval(x, name)
    if tuple(t.shape) != shape:
        raise ValueError(
            f"{name} must have shape (N, M) = {shape}, got {tuple(t.shape)}")
    err = (t.sum(-1) - 1).abs().max().item()
    if err > PROB_TOL:
        raise ValueError(
            f"{name} rows must sum to 1 (within {PROB_TOL}), but one is off "
            f"by {err:.3g}")
    return t




def _intersections(a: torch.Tensor, b: torch.Tensor,
                   chunk: int = 50) -> torch.Tensor:
    """Pixel counts |a_s & b_j|: bool (N, S, H, W), (N, J, H, W) -> float64
    (N, S, J), ``chunk`` images at a time."""
    return torch.cat([
        torch.einsum("nsp,njp->nsj", a[i:i + chunk].flatten(2).float(),
                     b[i:i + chunk].flatten(2).float()).double()
        for i in range(0, a.shape[0], chunk)
    ])


# -----------------------------------------------------------------------------
# GED and diversity against a known law


def _expected(d: torch.Tensor, p: torch.Tensor,
              q: torch.Tensor | None = None) -> torch.Tensor:
    """sum_{m,m'} p_m q_m' d_mm' per image: (N, M, M'), (N, M), (N, M')
    (default q = p) -> (N,)."""
    return torch.einsum("nm,nmk,nk->n", p, d, p if q is None else q)



def _ged_exact(d_sm: torch.Tensor, d_ss: torch.Tensor, d_mm: torch.Tensor,
               p: torch.Tensor) -> torch.Tensor:
    """D² against known modes from distances (N, S, M), (N, S, S), (N, M, M)
    and probs (N, M) -> (N,)."""
    uniform = torch.full(d_ss.shape[:2], 1 / d_ss.shape[1],
                         dtype=torch.float64)
    return (2 * _expected(d_sm, uniform, p) - mean_pairs(d_ss, True)
            - _expected(d_mm, p))



def ged_exact(samples: Array, modes: Array, probs: Array) -> torch.Tensor:
    """Squared GED against a known truth: samples (N, S, H, W), modes
    (N, M, H, W), probs (N, M) -> (N,).

    E[d(s, y)] = mean_s sum_m p_m d(s, y_m) and E[d(y, y')] = sum_{m,m'} p_m
    p_m' d(y_m, y_m') are exact; E[d(s, s')] is the unbiased mean over s != s'
    (needs S >= 2).
    """
    s, m = check_masks(samples, "samples"), check_masks(modes, "modes")
    check_same_images(s, m, "samples", "modes")
    p = _distribution(probs, "probs", tuple(m.shape[:2]))
    check_at_least_two(s, "samples", "ged_exact")
    return _ged_exact(1 - pairwise_iou(s, m), 1 - pairwise_iou(s),
                      1 - pairwise_iou(m), p)



def true_diversity(modes: Array, probs: Array) -> torch.Tensor:
    """Exact E[d(Y, Y')] of the true law: modes (N, M, H, W), probs (N, M) ->
    (N,)."""
    m = check_masks(modes, "modes")
    return _expected(1 - pairwise_iou(m),
                     _distribution(probs, "probs", tuple(m.shape[:2])))

# -----------------------------------------------------------------------------
# frequencies against a known truth


def _assign(iou_sm: torch.Tensor, min_iou: float) -> torch.Tensor:
    """Nearest mode from IoUs (N, S, M) -> long (N, S), M for "other"."""
    best = iou_sm.argmax(-1)  # the first maximum: ties go to the lower index
    best_iou = iou_sm.gather(-1, best[..., None]).squeeze(-1)
    return torch.where(best_iou < min_iou, iou_sm.shape[-1], best)


def _frequencies(assigned: torch.Tensor, num_modes: int) -> torch.Tensor:
    """Mode indices (N, S) in [0, M] -> frequencies float64 (N, M + 1)."""
    return F.one_hot(assigned, num_modes + 1).double().mean(1)


def _object_frequencies(s: torch.Tensor, o: torch.Tensor,
                        coverage: float) -> torch.Tensor:
    size = o.flatten(2).sum(-1).double()  # (N, J)
    if (size == 0).any():
        raise ValueError(
            "objects contains an empty object mask; its coverage is undefined")
    return (_intersections(s, o)
            >= coverage * size[:, None, :]).double().mean(1)


def assign_modes(samples: Array, modes: Array,
                 min_iou: float = 0.5) -> torch.Tensor:
    """Nearest true mode of each sample: samples (N, S, H, W), modes
    (N, M, H, W) -> long (N, S).

    The index of the mode with the highest IoU (ties to the lower index), or M
    ("other") when that IoU is below ``min_iou``.
    """
    s, m = check_masks(samples, "samples"), check_masks(modes, "modes")
    check_same_images(s, m, "samples", "modes")
    return _assign(pairwise_iou(s, m), min_iou)


def mode_frequencies(samples: Array, modes: Array,
                     min_iou: float = 0.5) -> torch.Tensor:
    """Fraction of samples assigned to each mode (see :func:`assign_modes`) ->
    float64 (N, M + 1), last column "other"."""
    s, m = check_masks(samples, "samples"), check_masks(modes, "modes")
    check_same_images(s, m, "samples", "modes")
    return _frequencies(_assign(pairwise_iou(s, m), min_iou), m.shape[1])


def object_frequencies(samples: Array, objects: Array,
                       coverage: float = 0.5) -> torch.Tensor:
    """Fraction of samples that mark each object: samples (N, S, H, W), objects
    (N, J, H, W) -> (N, J).

    A sample marks an object when it covers at least ``coverage`` of the
    object's pixels.
    """
    s, o = check_masks(samples, "samples"), check_masks(objects, "objects")
    check_same_images(s, o, "samples", "objects")
    return _object_frequencies(
        check_binary(s, "samples", "object_frequencies"),
        check_binary(o, "objects", "object_frequencies"), coverage)


def mode_tv(freqs: Array, probs: Array,
            pooled: bool = True) -> float | torch.Tensor:
    """Total-variation distance ``0.5 * sum |f - p|`` between predicted and
    true mode frequencies.

    freqs (N, M + 1) from :func:`mode_frequencies` (the true "other" is 0) or
    (N, M); probs (N, M). ``pooled=True`` compares the image-averaged
    frequencies with the image-averaged true probabilities (like the Cityscapes
    experiment of Kohl et al. 2018; mode m must mean the same thing in every
    image) and returns a float. ``pooled=False`` returns the per-image TV (N,);
    it has a sampling-noise floor even for a perfect model (about 0.07 for 4
    equiprobable modes and 100 samples), which is why the pooled value is the
    headline. Since the true "other" is 0, either value is at least the "other"
    frequency: samples that match no mode cost their full share, whatever the
    rest does.
    """
    f, p = (check_tensor(freqs, "freqs").double(),
            check_tensor(probs, "probs").double())
    if f.ndim != 2 or p.ndim != 2:
        raise ValueError(
            "freqs and probs must have 2 dims (N, M), got shapes "
            f"{tuple(f.shape)} and {tuple(p.shape)}")
    n, k = p.shape
    if f.shape[0] != n:
        raise ValueError(
            "freqs and probs have different numbers of images N: "
            f"{f.shape[0]} vs {n}")
    if f.shape[1] not in (k, k + 1):
        raise ValueError(
            f"freqs must have M or M + 1 columns for probs with M = {k}, got "
            f"{f.shape[1]}")
    f, p = (_distribution(f, "freqs", (n, f.shape[1])),
            _distribution(p, "probs", (n, k)))
    p = F.pad(p, (0, f.shape[1] - k))  # the true "other" frequency is 0
    if pooled:
        return 0.5 * (f.mean(0) - p.mean(0)).abs().sum().item()
    return 0.5 * (f - p).abs().sum(1)


# -----------------------------------------------------------------------------
# calibration


def calibration_curve(predicted: Array, true: Array, bins: int = 10,
                      by: str = "true") -> dict[str, np.ndarray]:
    """Binned predicted against true probabilities (any equal shapes,
    flattened).

    ``by="true"`` bins by the TRUE probability into ``bins`` equal bins on
    [0, 1]: how often the model marks what the truth marks with p. Then any
    predictor that errs both ways looks pulled towards the middle, since
    the bins at the ends collect its errors towards the middle (regression
    dilution). ``by="predicted"`` bins by the predicted frequency, the
    reliability curve: when the model says q, how often is it so? Its own
    scatter then pushes the ends outwards. Returns numpy arrays of length
    ``bins``: ``bin_centers``, ``mean_true``, ``mean_predicted`` (NaN for
    empty bins) and ``counts`` (0 for empty bins).
    """
    pred, tru = (_unit_interval(predicted, "predicted"),
                 _unit_interval(true, "true"))
    if pred.shape != tru.shape:
        raise ValueError(
            f"predicted and true have different shapes: {tuple(pred.shape)} "
            f"vs {tuple(tru.shape)}")
    if pred.numel() == 0:
        raise ValueError("predicted and true are empty")
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    if by not in ("true", "predicted"):
        raise ValueError(f"by must be 'true' or 'predicted', got {by!r}")
    pred, tru = pred.flatten().numpy(), tru.flatten().numpy()
    # a value of 1 goes to the last bin
    key = tru if by == "true" else pred
    idx = np.minimum((key * bins).astype(np.int64), bins - 1)
    counts = np.bincount(idx, minlength=bins)
    safe = np.maximum(counts, 1)
    mean = lambda w: np.where(  # noqa: E731
        counts > 0, np.bincount(idx, weights=w, minlength=bins) / safe, np.nan)
    return {"bin_centers": (np.arange(bins) + 0.5) / bins,
            "mean_true": mean(tru), "mean_predicted": mean(pred),
            "counts": counts}


def calibration_error(predicted: Array, true: Array, bins: int = 10) -> float:
    """Expected calibration error
    ``sum_b (n_b / N) |mean_predicted_b - mean_true_b|``
    (bins by true probability)."""
    c = calibration_curve(predicted, true, bins)
    ok = c["counts"] > 0
    gap = np.abs(c["mean_predicted"][ok] - c["mean_true"][ok])
    return float(np.sum(c["counts"][ok] / c["counts"].sum() * gap))



def summarize(samples: Array, annotations: Array, objects: Array, probs: Array,
              min_iou: float = 0.5, exclusive: bool = False) -> dict:
    """All metrics for binary predictions on data with known objects.

    samples (N, S, H, W) with S >= 2, annotations (N, R, H, W), objects bool
    (N, J, H, W), probs (N, J) per-object marking probabilities. Objects are
    independent by default (the 2**J modes come from
    :func:`probunet.toy.modes_of`); with ``exclusive=True`` a mask is exactly
    one object, so the J modes are the objects and probs, whose rows must sum
    to 1, are their probabilities. Returns
    :func:`probunet.metrics.annotation_scores` (``ged_unbiased``,
    ``ged_biased``, ``hm_iou``, ``diversity``, ``annotator_diversity``) and,
    against the truth, floats averaged over images: ``ged_exact``,
    ``true_diversity``, ``mode_tv`` (pooled), ``mode_tv_per_image`` (mean),
    ``other_fraction``, ``calibration_error`` (of per-object frequencies), and
    the pooled lists ``mode_freq_pred`` and ``mode_freq_true`` (M + 1 entries,
    "other" last; its true value is 0). Under either law object k is marked
    with probability p_k, so the calibration is the same for both.
    """
    s, y, o = (check_masks(samples, "samples"),
               check_masks(annotations, "annotations"),
               check_masks(objects, "objects"))
    check_same_images(s, y, "samples", "annotations")
    check_same_images(s, o, "samples", "objects")
    s, o = (check_binary(s, "samples", "summarize"),
            check_binary(o, "objects", "summarize"))
    check_binary(y, "annotations", "summarize")
    p_obj = _unit_interval(probs, "probs")
    if tuple(p_obj.shape) != tuple(o.shape[:2]):
        raise ValueError(
            f"probs must have shape (N, J) = {tuple(o.shape[:2])}, got "
            f"{tuple(p_obj.shape)}")
    check_at_least_two(s, "samples", "summarize")
    if exclusive:
        p = _distribution(p_obj, "probs", tuple(p_obj.shape))
        modes = o.to(torch.uint8)
    else:
        modes, p = modes_of(o.numpy(), p_obj.numpy())
        modes, p = torch.from_numpy(modes), torch.from_numpy(p)
    s = s.to(torch.uint8)

    iou_sm, d_ss, d_mm = (pairwise_iou(s, modes), 1 - pairwise_iou(s),
                          1 - pairwise_iou(modes))
    freqs = _frequencies(_assign(iou_sm, min_iou), modes.shape[1])
    return annotation_scores(s, y) | {
        "ged_exact": _ged_exact(1 - iou_sm, d_ss, d_mm, p).mean().item(),
        "true_diversity": _expected(d_mm, p).mean().item(),
        "mode_tv": mode_tv(freqs, p, pooled=True),
        "mode_tv_per_image": mode_tv(freqs, p, pooled=False).mean().item(),
        "other_fraction": freqs[:, -1].mean().item(),
        "calibration_error": calibration_error(
            _object_frequencies(s != 0, o, 0.5), p_obj),
        "mode_freq_pred": freqs.mean(0).tolist(),
        "mode_freq_true": F.pad(p, (0, 1)).mean(0).tolist(),
    }


def law_and_raters_tv(samples: Array, annotations: Array, modes: Array,
                      probs: Array,
                      min_iou: float = 0.5) -> dict[str, torch.Tensor]:
    """Per-image TV of the samples' mode frequencies to the true law and to the
    raters' own frequencies.

    samples (N, S, H, W), annotations (N, R, H, W), each of them one of the
    modes (N, M, H, W), probs (N, M). Returns
    ``{"law": (N,), "raters": (N,)}``. R raters give each mode a frequency in
    steps of 1/R; a model that learned its raters rather than the law they were
    drawn from is closer to the first than to the second.
    """
    # (N, M + 1), "other" last
    freqs = mode_frequencies(samples, modes, min_iou)
    raters = mode_frequencies(annotations, modes, min_iou)
    if (raters[:, -1] > 0).any():
        raise ValueError(
            "every annotation must be one of the modes; "
            f"{int((raters[:, -1] > 0).sum())} images have annotations that "
            "match none")
    return {
        "law": mode_tv(freqs, probs, pooled=False),
        "raters": mode_tv(freqs, raters[:, :-1], pooled=False)
    }


def sample_truth(objects: Array, probs: Array, n: int, seed: int = 0,
                 exclusive: bool = False) -> torch.Tensor:
    """n masks per image drawn from the true law itself: uint8 (N, n, H, W)
    from objects (N, J, H, W), probs (N, J).

    Each object is marked independently with its probability, as the shapes
    toy's raters do; with ``exclusive=True`` each mask is exactly one object,
    object k with probability p_k (rows of probs must sum to 1). Scored like a
    model's samples, they give the floor that n samples of a perfect model
    reach.
    """
    o, p = (check_binary(check_masks(objects, "objects"), "objects",
                         "sample_truth").bool(),
            _unit_interval(probs, "probs"))
    if n < 1:
        raise ValueError(f"number of samples n must be >= 1, got {n}")
    generator = torch.Generator().manual_seed(seed)
    if exclusive:
        p = _distribution(p, "probs", tuple(o.shape[:2]))
        k = torch.multinomial(p, n, replacement=True, generator=generator)
        return o[torch.arange(o.shape[0])[:, None], k].to(torch.uint8)
    marks = torch.rand(o.shape[0], n, o.shape[1],
                       generator=generator) < p[:, None].float()
    return (o[:, None] & marks[..., None, None]).any(2).to(torch.uint8)


def evaluate(model: torch.nn.Module,
             dataset: ToyAmbiguousDataset | ExclusiveObjectsDataset,
             n: int = 100, batch_size: int = 50) -> dict:
    """Sample n masks per image of a toy dataset and return :func:`summarize`
    of them, under the dataset's law (its ``exclusive`` attribute)."""
    samples = sample_masks(model, dataset.images, n, batch_size)
    return summarize(samples, dataset.annotations, dataset.objects,
                     dataset.probs,
                     exclusive=getattr(dataset, "exclusive", False))
