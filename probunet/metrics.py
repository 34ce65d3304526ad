"""Metrics for sets of sampled segmentation masks against annotations or a known truth.

Conventions (stated once, used everywhere):

- Masks hold **class indices**: 0 is the background, 1 .. K-1 are foreground
  classes (bool masks are 0/1). Inputs may be torch tensors or numpy arrays of
  any integer or bool dtype, or floats holding whole numbers; NaN, fractions and
  negative labels are rejected. Per-image results are torch float64 tensors
  (``assign_modes``: long); scalars are Python floats; ``calibration_curve``
  returns numpy arrays.
- Shapes: samples ``(N, S, H, W)`` (S predictions per image), annotations
  ``(N, R, H, W)``, true modes ``(N, M, H, W)`` with probabilities ``(N, M)``
  (each row sums to 1), objects ``(N, J, H, W)`` with marking probabilities ``(N, J)``.
- **Distance** ``d = 1 - IoU``, where for several classes IoU is the mean of the
  per-class IoUs over the foreground classes present in either mask (as in the
  multi-class GED of PHiSeg and the Cityscapes experiment of Kohl et al. 2018).
  Two masks with no foreground have IoU 1 (d = 0); a class in one mask and absent
  from the other has IoU 0 for that class. With one foreground class this is the
  binary ``1 - |a & b| / |a | b|``. Implementations disagree on empty masks; this is ours.
- Metrics built on this distance (IoU, GED, matched IoU, diversity, modes) take any
  number of classes. Those that only make sense for one foreground class
  (``object_frequencies``, ``summarize``) raise ``ValueError`` on labels > 1
  instead of silently merging classes: pass ``masks == c`` for class c.
- Everything is vectorised: masks are flattened to ``(N, S, H*W)`` and the pixel
  counts of all intersections come from batched matrix products over chunks of
  images (about ``CHUNK_PIXELS`` mask pixels each, e.g. 81 images of 100 samples of
  32x32), so memory stays bounded; 500 images x 100 samples of 32x32 take seconds.
- Bad input raises ``ValueError`` naming what was wrong.
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

Array = Union[torch.Tensor, np.ndarray]
CHUNK_PIXELS = 2**23  # mask pixels per operand of one batched matrix product (32 MiB as float32)
PROB_TOL = 1e-4  # how far a probability vector's sum may be from 1

# -----------------------------------------------------------------------------
# input checks


def _tensor(x: Array, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        x = np.asarray(x)
        t = torch.as_tensor(x if x.flags.writeable else x.copy())  # torch warns on read-only arrays
    if t.is_floating_point() and torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN")
    return t


def _labels(x: Array, name: str) -> torch.Tensor:
    """Class-index masks of any dtype -> labels >= 0, uint8 or int64 (whole-number floats allowed)."""
    t = _tensor(x, name)
    if t.dtype == torch.bool:
        return t.long()
    if t.is_floating_point():
        if t.numel() and not torch.equal(t, t.round()):
            raise ValueError(f"{name} must hold class indices (whole numbers), got fractional values such as "
                             f"{t[t != t.round()][0].item():.3g}; threshold probabilities first")
    elif t.is_complex():
        raise ValueError(f"{name} must hold class indices, got dtype {t.dtype}")
    if t.numel() and t.min() < 0:
        raise ValueError(f"{name} must hold class indices >= 0, got {int(t.min())}")
    # uint8 when labels fit: 500 images x 100 samples of 32x32 are 50 MB, not 400 MB as int64
    return t.to(torch.uint8) if not t.numel() or t.max() < 256 else t.long()


def _masks(x: Array, name: str) -> torch.Tensor:
    """Class-index masks (N, S, H, W) -> labels (see _labels), with N >= 1 and S >= 1."""
    t = _labels(x, name)
    if t.ndim != 4:
        raise ValueError(f"{name} must have 4 dims (N, S, H, W), got shape {tuple(t.shape)}")
    if t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{name} needs at least one image (N >= 1) and one mask per image (S >= 1), got shape {tuple(t.shape)}")
    return t


def _binary(t: torch.Tensor, name: str, why: str) -> torch.Tensor:
    """Labels -> bool foreground, refusing labels > 1 (which a binary metric would merge)."""
    if t.numel() and t.max() > 1:
        raise ValueError(f"{why} handles binary masks only, but {name} holds labels up to {int(t.max())}: "
                         f"score one class at a time with masks == c")
    return t != 0


def _same_images(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name_a} and {name_b} have different numbers of images N: {a.shape[0]} vs {b.shape[0]}")
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"{name_a} and {name_b} have different image sizes H, W: {tuple(a.shape[-2:])} vs {tuple(b.shape[-2:])}")


def _unit_interval(x: Array, name: str) -> torch.Tensor:
    t = _tensor(x, name).double()
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1], got values in [{t.min().item():.4g}, {t.max().item():.4g}]")
    return t


def _distribution(x: Array, name: str, shape: tuple[int, int]) -> torch.Tensor:
    """Probabilities (N, M) whose rows sum to 1 (within PROB_TOL) -> float64."""
    t = _unit_interval(x, name)
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape (N, M) = {shape}, got {tuple(t.shape)}")
    err = (t.sum(-1) - 1).abs().max().item()
    if err > PROB_TOL:
        raise ValueError(f"{name} rows must sum to 1 (within {PROB_TOL}), but one is off by {err:.3g}")
    return t


def _at_least_two(t: torch.Tensor, name: str, why: str) -> None:
    if t.shape[1] < 2:
        raise ValueError(f"{why} needs at least 2 {name} per image, got {t.shape[1]}")

# -----------------------------------------------------------------------------
# IoU and distances (internal helpers take validated bool masks)


def _flat(m: torch.Tensor) -> torch.Tensor:
    """bool (n, S, H, W) -> float (n, S, H*W); float32 counts pixels exactly up to 2**24."""
    return m.flatten(2).to(torch.float32 if m.shape[-2] * m.shape[-1] <= 2**24 else torch.float64)


def _chunk(a: torch.Tensor, b: torch.Tensor) -> int:
    """Images per chunk so that neither operand has more than CHUNK_PIXELS pixels."""
    return max(1, CHUNK_PIXELS // max(1, max(a.shape[1], b.shape[1]) * a.shape[2] * a.shape[3]))


def _intersections(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pixel counts |a_s & b_m|: bool (N, S, H, W), (N, M, H, W) -> float64 (N, S, M)."""
    c = _chunk(a, b)
    return torch.cat([torch.bmm(_flat(a[i:i + c]), _flat(b[i:i + c]).transpose(1, 2)).double()
                      for i in range(0, a.shape[0], c)])


def _iou_from_counts(inter: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    return torch.where(union > 0, inter / union.clamp(min=1), 1.0)  # both empty -> 1


def _pair_counts(a: torch.Tensor, b: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Intersections and unions of all pairs: bool (N, S, H, W), (N, M, H, W) (default: a with itself) -> float64 (N, S, M) each."""
    inters, unions, c = [], [], _chunk(a, a if b is None else b)
    for i in range(0, a.shape[0], c):
        fa = _flat(a[i:i + c])
        fb = fa if b is None else _flat(b[i:i + c])
        inter = torch.bmm(fa, fb.transpose(1, 2)).double()
        area_a = inter.diagonal(dim1=1, dim2=2) if b is None else fa.sum(-1).double()
        area_b = area_a if b is None else fb.sum(-1).double()
        inters.append(inter)
        unions.append(area_a[:, :, None] + area_b[:, None, :] - inter)
    return torch.cat(inters), torch.cat(unions)


def _pairwise_iou(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """IoU of all pairs: labels (N, S, H, W), (N, M, H, W) (default: a with itself) -> float64 (N, S, M).

    One foreground class: the binary IoU. Several: the mean IoU over the classes present in
    either mask of the pair (1 when neither has foreground).
    """
    top = int(max(a.max(), a.max() if b is None else b.max()))
    if top <= 1:
        return _iou_from_counts(*_pair_counts(a != 0, None if b is None else b != 0))
    iou_sum = torch.zeros(a.shape[0], a.shape[1], a.shape[1] if b is None else b.shape[1], dtype=torch.float64)
    present = torch.zeros_like(iou_sum)
    for c in range(1, top + 1):
        inter, union = _pair_counts(a == c, None if b is None else b == c)
        iou_sum += torch.where(union > 0, inter / union.clamp(min=1), 0.0)
        present += union > 0
    return torch.where(present > 0, iou_sum / present.clamp(min=1), 1.0)


def _mean_pairs(d: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Mean of within-set distances (N, S, S) with a zero diagonal -> (N,): over s != s' or all S*S pairs."""
    s = d.shape[1]
    return d.sum((1, 2)) / (s * (s - 1) if unbiased else s * s)


def _expected(d: torch.Tensor, p: torch.Tensor, q: torch.Tensor | None = None) -> torch.Tensor:
    """sum_{m,m'} p_m q_m' d_mm' per image: (N, M, M'), (N, M), (N, M') (default q = p) -> (N,)."""
    return torch.einsum("nm,nmk,nk->n", p, d, p if q is None else q)


def iou(a: Array, b: Array) -> torch.Tensor:
    """Elementwise IoU of class-index masks (..., H, W) and (..., H, W) (broadcast) -> float64 (...)."""
    a, b = _tensor(a, "a"), _tensor(b, "b")  # shape checks first, then labels
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"a and b must have at least 2 dims (..., H, W), got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"a and b have different image sizes H, W: {tuple(a.shape[-2:])} vs {tuple(b.shape[-2:])}")
    try:
        torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(f"a and b have shapes that do not broadcast: {tuple(a.shape)} and {tuple(b.shape)}") from None
    a, b = _labels(a, "a"), _labels(b, "b")
    top = max(int(a.max()) if a.numel() else 0, int(b.max()) if b.numel() else 0)
    if top <= 1:
        a, b = a != 0, b != 0
        return _iou_from_counts((a & b).sum((-2, -1)).double(), (a | b).sum((-2, -1)).double())
    iou_sum = present = 0
    for c in range(1, top + 1):
        ac, bc = a == c, b == c
        inter, union = (ac & bc).sum((-2, -1)).double(), (ac | bc).sum((-2, -1)).double()
        iou_sum = iou_sum + torch.where(union > 0, inter / union.clamp(min=1), 0.0)
        present = present + (union > 0)
    return torch.where(present > 0, iou_sum / present.clamp(min=1), 1.0)


def pairwise_iou(a: Array, b: Array) -> torch.Tensor:
    """IoU of every pair within each image: a (N, S, H, W), b (N, M, H, W) -> float64 (N, S, M)."""
    a, b = _masks(a, "a"), _masks(b, "b")
    _same_images(a, b, "a", "b")
    return _pairwise_iou(a, b)

# -----------------------------------------------------------------------------
# generalized energy distance, matched IoU, diversity


def _ged(d_sy: torch.Tensor, d_ss: torch.Tensor, d_yy: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """D² from distance matrices (N, S, R), (N, S, S), (N, R, R) -> (N,)."""
    return 2 * d_sy.mean((1, 2)) - _mean_pairs(d_ss, unbiased) - _mean_pairs(d_yy, unbiased)


def _ged_exact(d_sm: torch.Tensor, d_ss: torch.Tensor, d_mm: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """D² against known modes from distances (N, S, M), (N, S, S), (N, M, M) and probs (N, M) -> (N,)."""
    uniform = torch.full(d_ss.shape[:2], 1 / d_ss.shape[1], dtype=torch.float64)
    return 2 * _expected(d_sm, uniform, p) - _mean_pairs(d_ss, True) - _expected(d_mm, p)


def _hungarian(iou_sy: torch.Tensor) -> torch.Tensor:
    """Matched IoU from IoUs (N, S, R) -> (N,), both sets tiled to lcm(S, R)."""
    S, R = iou_sy.shape[1:]
    L = math.lcm(S, R)
    out = []
    for x in iou_sy.numpy():
        tiled = np.tile(x, (L // S, L // R))  # (L, L)
        rows, cols = linear_sum_assignment(1 - tiled)
        out.append(tiled[rows, cols].mean())
    return torch.tensor(out, dtype=torch.float64)


def ged(samples: Array, annotations: Array, unbiased: bool = True) -> torch.Tensor:
    """Squared generalized energy distance per image, d = 1 - IoU.

    D² = 2 E[d(s, y)] - E[d(s, s')] - E[d(y, y')] for samples s and annotations y; samples (N, S, H, W),
    annotations (N, R, H, W) -> float64 (N,). ``unbiased=True`` averages the
    within-set terms over distinct pairs only (needs S, R >= 2): an unbiased
    estimate of the true D², so it can be negative (identical sets give a
    negative value). ``unbiased=False`` is the estimator papers report: means
    over all S*S and R*R pairs, zero diagonal included (biased upwards).
    """
    s, y = _masks(samples, "samples"), _masks(annotations, "annotations")
    _same_images(s, y, "samples", "annotations")
    if unbiased:
        _at_least_two(s, "samples", "unbiased GED")
        _at_least_two(y, "annotations", "unbiased GED")
    return _ged(1 - _pairwise_iou(s, y), 1 - _pairwise_iou(s), 1 - _pairwise_iou(y), unbiased)


def ged_exact(samples: Array, modes: Array, probs: Array) -> torch.Tensor:
    """Squared GED against a known truth: samples (N, S, H, W), modes (N, M, H, W), probs (N, M) -> (N,).

    E[d(s, y)] = mean_s sum_m p_m d(s, y_m) and E[d(y, y')] = sum_{m,m'} p_m p_m' d(y_m, y_m')
    are exact; E[d(s, s')] is the unbiased mean over s != s' (needs S >= 2).
    """
    s, m = _masks(samples, "samples"), _masks(modes, "modes")
    _same_images(s, m, "samples", "modes")
    p = _distribution(probs, "probs", tuple(m.shape[:2]))
    _at_least_two(s, "samples", "ged_exact")
    return _ged_exact(1 - _pairwise_iou(s, m), 1 - _pairwise_iou(s), 1 - _pairwise_iou(m), p)


def hungarian_iou(samples: Array, annotations: Array) -> torch.Tensor:
    """Hungarian-matched IoU per image: samples (N, S, H, W), annotations (N, R, H, W) -> (N,).

    Both sets are tiled to L = lcm(S, R) elements, matched one-to-one with cost
    1 - IoU (scipy's linear_sum_assignment), and the matched IoUs averaged
    (as in Kohl et al. 2019 and PHiSeg). L can be large when S and R are coprime.
    """
    s, y = _masks(samples, "samples"), _masks(annotations, "annotations")
    _same_images(s, y, "samples", "annotations")
    return _hungarian(_pairwise_iou(s, y))


def diversity(samples: Array) -> torch.Tensor:
    """Mean d = 1 - IoU over distinct sample pairs: (N, S, H, W) with S >= 2 -> (N,)."""
    s = _masks(samples, "samples")
    _at_least_two(s, "samples", "diversity")
    return _mean_pairs(1 - _pairwise_iou(s), True)


def true_diversity(modes: Array, probs: Array) -> torch.Tensor:
    """Exact E[d(Y, Y')] of the true law: modes (N, M, H, W), probs (N, M) -> (N,)."""
    m = _masks(modes, "modes")
    return _expected(1 - _pairwise_iou(m), _distribution(probs, "probs", tuple(m.shape[:2])))

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


def _object_frequencies(s: torch.Tensor, o: torch.Tensor, coverage: float) -> torch.Tensor:
    size = o.flatten(2).sum(-1).double()  # (N, J)
    if (size == 0).any():
        raise ValueError("objects contains an empty object mask; its coverage is undefined")
    return (_intersections(s, o) >= coverage * size[:, None, :]).double().mean(1)


def assign_modes(samples: Array, modes: Array, min_iou: float = 0.5) -> torch.Tensor:
    """Nearest true mode of each sample: samples (N, S, H, W), modes (N, M, H, W) -> long (N, S).

    The index of the mode with the highest IoU (ties to the lower index), or M
    ("other") when that IoU is below ``min_iou``.
    """
    s, m = _masks(samples, "samples"), _masks(modes, "modes")
    _same_images(s, m, "samples", "modes")
    return _assign(_pairwise_iou(s, m), min_iou)


def mode_frequencies(samples: Array, modes: Array, min_iou: float = 0.5) -> torch.Tensor:
    """Fraction of samples assigned to each mode (see :func:`assign_modes`) -> float64 (N, M + 1), last column "other"."""
    s, m = _masks(samples, "samples"), _masks(modes, "modes")
    _same_images(s, m, "samples", "modes")
    return _frequencies(_assign(_pairwise_iou(s, m), min_iou), m.shape[1])


def object_frequencies(samples: Array, objects: Array, coverage: float = 0.5) -> torch.Tensor:
    """Fraction of samples that mark each object: samples (N, S, H, W), objects (N, J, H, W) -> (N, J).

    A sample marks an object when it covers at least ``coverage`` of the object's pixels.
    """
    s, o = _masks(samples, "samples"), _masks(objects, "objects")
    _same_images(s, o, "samples", "objects")
    return _object_frequencies(_binary(s, "samples", "object_frequencies"), _binary(o, "objects", "object_frequencies"), coverage)


def mode_tv(freqs: Array, probs: Array, pooled: bool = True) -> float | torch.Tensor:
    """Total-variation distance ``0.5 * sum |f - p|`` between predicted and true mode frequencies.

    freqs (N, M + 1) from :func:`mode_frequencies` (the true "other" is 0) or
    (N, M); probs (N, M). ``pooled=True`` compares the image-averaged frequencies
    with the image-averaged true probabilities (like the Cityscapes experiment of
    Kohl et al. 2018; mode m must mean the same thing in every image) and returns
    a float. ``pooled=False`` returns the per-image TV (N,); it has a sampling-noise
    floor even for a perfect model (about 0.07 for 4 equiprobable modes and 100
    samples), which is why the pooled value is the headline. Since the true "other"
    is 0, either value is at least the "other" frequency: samples that match no mode
    cost their full share, whatever the rest does.
    """
    f, p = _tensor(freqs, "freqs").double(), _tensor(probs, "probs").double()
    if f.ndim != 2 or p.ndim != 2:
        raise ValueError(f"freqs and probs must have 2 dims (N, M), got shapes {tuple(f.shape)} and {tuple(p.shape)}")
    n, k = p.shape
    if f.shape[0] != n:
        raise ValueError(f"freqs and probs have different numbers of images N: {f.shape[0]} vs {n}")
    if f.shape[1] not in (k, k + 1):
        raise ValueError(f"freqs must have M or M + 1 columns for probs with M = {k}, got {f.shape[1]}")
    f, p = _distribution(f, "freqs", (n, f.shape[1])), _distribution(p, "probs", (n, k))
    p = F.pad(p, (0, f.shape[1] - k))  # the true "other" frequency is 0
    if pooled:
        return 0.5 * (f.mean(0) - p.mean(0)).abs().sum().item()
    return 0.5 * (f - p).abs().sum(1)


# -----------------------------------------------------------------------------
# calibration


def calibration_curve(predicted: Array, true: Array, bins: int = 10) -> dict[str, np.ndarray]:
    """Reliability curve of predicted vs true probabilities (any equal shapes, flattened).

    Values are binned by their TRUE probability into ``bins`` equal bins on [0, 1].
    Returns numpy arrays of length ``bins``: ``bin_centers``, ``mean_true``,
    ``mean_predicted`` (NaN for empty bins) and ``counts`` (0 for empty bins).
    """
    pred, tru = _unit_interval(predicted, "predicted"), _unit_interval(true, "true")
    if pred.shape != tru.shape:
        raise ValueError(f"predicted and true have different shapes: {tuple(pred.shape)} vs {tuple(tru.shape)}")
    if pred.numel() == 0:
        raise ValueError("predicted and true are empty")
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    pred, tru = pred.flatten().numpy(), tru.flatten().numpy()
    idx = np.minimum((tru * bins).astype(np.int64), bins - 1)  # true = 1 goes to the last bin
    counts = np.bincount(idx, minlength=bins)
    safe = np.maximum(counts, 1)
    mean = lambda w: np.where(counts > 0, np.bincount(idx, weights=w, minlength=bins) / safe, np.nan)  # noqa: E731
    return {"bin_centers": (np.arange(bins) + 0.5) / bins, "mean_true": mean(tru),
            "mean_predicted": mean(pred), "counts": counts}


def calibration_error(predicted: Array, true: Array, bins: int = 10) -> float:
    """Expected calibration error ``sum_b (n_b / N) |mean_predicted_b - mean_true_b|`` (bins by true probability)."""
    c = calibration_curve(predicted, true, bins)
    ok = c["counts"] > 0
    gap = np.abs(c["mean_predicted"][ok] - c["mean_true"][ok])
    return float(np.sum(c["counts"][ok] / c["counts"].sum() * gap))

# -----------------------------------------------------------------------------
# everything that needs no known truth, at once


def _scores(s: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    iou_sy, d_ss, d_yy = _pairwise_iou(s, y), 1 - _pairwise_iou(s), 1 - _pairwise_iou(y)
    nan, two_s, two_y = float("nan"), s.shape[1] >= 2, y.shape[1] >= 2
    return {
        "ged_unbiased": _ged(1 - iou_sy, d_ss, d_yy, True).mean().item() if two_s and two_y else nan,
        "ged_biased": _ged(1 - iou_sy, d_ss, d_yy, False).mean().item(),
        "hm_iou": _hungarian(iou_sy).mean().item(),
        "diversity": _mean_pairs(d_ss, True).mean().item() if two_s else nan,
        "annotator_diversity": _mean_pairs(d_yy, True).mean().item() if two_y else nan,
    }


def annotation_scores(samples: Array, annotations: Array, num_classes: int | None = None) -> dict:
    """Scores of samples against annotations, with no known truth, averaged over images.

    samples (N, S, H, W) and annotations (N, R, H, W), class indices. Returns floats
    ``ged_unbiased`` (NaN when S or R < 2), ``ged_biased`` (as papers report), ``hm_iou``,
    ``diversity`` (of the samples; NaN when S < 2) and ``annotator_diversity`` (NaN when
    R < 2), all with the multi-class distance of this module. With more than one foreground
    class (labels up to ``num_classes - 1``, default: the largest label present),
    ``per_class`` maps each class c >= 1 to the same scores for the binary masks ``== c``.
    """
    s, y = _masks(samples, "samples"), _masks(annotations, "annotations")
    _same_images(s, y, "samples", "annotations")
    top = max(int(s.max()), int(y.max()))
    if num_classes is not None:
        if top >= num_classes:
            raise ValueError(f"labels must be < num_classes = {num_classes}, got {top}")
        top = num_classes - 1
    out: dict = _scores(s, y)
    if top > 1:
        out["per_class"] = {c: _scores((s == c).to(torch.uint8), (y == c).to(torch.uint8)) for c in range(1, top + 1)}
    return out
