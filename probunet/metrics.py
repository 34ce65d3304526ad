"""Metrics for sets of sampled masks against a few annotations each.

- Masks hold **class indices**: 0 is the background, 1 .. K-1 foreground
  classes, in tensors or arrays of any integer or bool dtype, or floats
  holding whole numbers. Samples are ``(N, S, H, W)``, annotations
  ``(N, R, H, W)``. Per-image results are float64 ``(N,)``.
- **Distance** ``d = 1 - IoU``; with several classes IoU is the mean of the
  per-class IoUs over the foreground classes present in either mask (as in
  PHiSeg's multi-class GED). Two masks with no foreground have IoU 1.
- Intersections come from batched matrix products over chunks of about
  ``CHUNK_PIXELS`` mask pixels, so memory stays bounded.
- Bad input raises ``ValueError`` naming what was wrong.
- Measures that need a known truth are in :mod:`probunet.toy.truth`.
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch

Array = Union[torch.Tensor, np.ndarray]
CHUNK_PIXELS = 2**23  # mask pixels per operand of a batched matmul (32 MiB)

# input checks ----------------------------------------------------------------
def check_tensor(x: Array, name: str) -> torch.Tensor:
    """A tensor or array -> CPU tensor; ValueError on NaN."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        x = np.asarray(x)
        # torch warns on read-only arrays
        t = torch.as_tensor(x if x.flags.writeable else x.copy())
    if t.is_floating_point() and torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN")
    return t

def _labels(x: Array, name: str) -> torch.Tensor:
    """Class-index masks of any dtype -> labels >= 0, uint8 or int64."""
    t = check_tensor(x, name)
    if t.dtype == torch.bool:
        return t.long()
    if t.is_floating_point():
        if t.numel() and not torch.equal(t, t.round()):
            raise ValueError(
                f"{name} must hold class indices (whole numbers), got "
                f"fractional values such as {t[t != t.round()][0].item():.3g}"
                f"; threshold probabilities first")
    elif t.is_complex():
        raise ValueError(f"{name} must hold class indices, got dtype "
                         f"{t.dtype}")
    if t.numel() and t.min() < 0:
        raise ValueError(f"{name} must hold class indices >= 0, "
                         f"got {int(t.min())}")
    # uint8 when labels fit: 500 images x 100 samples of 32x32 are 50 MB
    return t.to(torch.uint8) if not t.numel() or t.max() < 256 else t.long()

def check_masks(x: Array, name: str) -> torch.Tensor:
    """Class-index masks (N, S, H, W) -> labels, with N >= 1 and S >= 1."""
    t = _labels(x, name)
    if t.ndim != 4:
        raise ValueError(f"{name} must have 4 dims (N, S, H, W), "
                         f"got shape {tuple(t.shape)}")
    if t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{name} needs at least one image (N >= 1) and one "
                         f"mask per image (S >= 1), got shape "
                         f"{tuple(t.shape)}")
    return t

def check_binary(t: torch.Tensor, name: str, why: str) -> torch.Tensor:
    """Labels -> bool foreground; labels > 1 (which would merge) raise."""
    if t.numel() and t.max() > 1:
        raise ValueError(f"{why} handles binary masks only, but {name} holds "
                         f"labels up to {int(t.max())}: score one class at a "
                         f"time with masks == c")
    return t != 0

def check_same_images(a: torch.Tensor, b: torch.Tensor, name_a: str,
                      name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name_a} and {name_b} have different numbers of "
                         f"images N: {a.shape[0]} vs {b.shape[0]}")
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"{name_a} and {name_b} have different image sizes "
                         f"H, W: {tuple(a.shape[-2:])} vs "
                         f"{tuple(b.shape[-2:])}")

def check_at_least_two(t: torch.Tensor, name: str, why: str) -> None:
    if t.shape[1] < 2:
        raise ValueError(f"{why} needs at least 2 {name} per image, "
                         f"got {t.shape[1]}")

# IoU and distances (internal helpers take validated bool masks) --------------
def _flat(m: torch.Tensor) -> torch.Tensor:
    """bool (n, S, H, W) -> float (n, S, H*W), exact counts."""
    return m.flatten(2).to(torch.float32 if m.shape[-2] * m.shape[-1] <= 2**24
                           else torch.float64)

def _chunk(a: torch.Tensor, b: torch.Tensor) -> int:
    """Images per chunk: no operand above CHUNK_PIXELS pixels."""
    return max(1, CHUNK_PIXELS // max(1, max(a.shape[1], b.shape[1])
                                      * a.shape[2] * a.shape[3]))

def _iou_from_counts(inter: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    # both empty -> 1
    return torch.where(union > 0, inter / union.clamp(min=1), 1.0)

def _pair_counts(a: torch.Tensor, b: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Intersections and unions of all pairs: bool (N, S, H, W), (N, M, H, W)
    (default: a) -> float64 (N, S, M) each."""
    inters, unions, c = [], [], _chunk(a, a if b is None else b)
    for i in range(0, a.shape[0], c):
        fa = _flat(a[i:i + c])
        fb = fa if b is None else _flat(b[i:i + c])
        inter = torch.bmm(fa, fb.transpose(1, 2)).double()
        area_a = (inter.diagonal(dim1=1, dim2=2) if b is None
                  else fa.sum(-1).double())
        area_b = area_a if b is None else fb.sum(-1).double()
        inters.append(inter)
        unions.append(area_a[:, :, None] + area_b[:, None, :] - inter)
    return torch.cat(inters), torch.cat(unions)

def _pairwise_iou(a: torch.Tensor, b: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """IoU of all pairs: labels (N, S, H, W), (N, M, H, W) (default: a) ->
    float64 (N, S, M); for several classes, the mean over those present."""
    top = int(max(a.max(), a.max() if b is None else b.max()))
    if top <= 1:
        return _iou_from_counts(*_pair_counts(a != 0,
                                              None if b is None else b != 0))
    iou_sum = torch.zeros(a.shape[0], a.shape[1],
                          a.shape[1] if b is None else b.shape[1],
                          dtype=torch.float64)
    present = torch.zeros_like(iou_sum)
    for c in range(1, top + 1):
        inter, union = _pair_counts(a == c, None if b is None else b == c)
        iou_sum += torch.where(union > 0, inter / union.clamp(min=1), 0.0)
        present += union > 0
    return torch.where(present > 0, iou_sum / present.clamp(min=1), 1.0)

def mean_pairs(d: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Mean of distances (N, S, S), zero diagonal -> (N,): over s != s'
    (unbiased) or over all S*S pairs."""
    s = d.shape[1]
    return d.sum((1, 2)) / (s * (s - 1) if unbiased else s * s)

def iou(a: Array, b: Array) -> torch.Tensor:
    """IoU of class-index masks (..., H, W), elementwise, broadcast: (...)."""
    a, b = check_tensor(a, "a"), check_tensor(b, "b")  # labels after shapes
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"a and b must have at least 2 dims (..., H, W), "
                         f"got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"a and b have different image sizes H, W: "
                         f"{tuple(a.shape[-2:])} vs {tuple(b.shape[-2:])}")
    try:
        torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(f"a and b have shapes that do not broadcast: "
                         f"{tuple(a.shape)} and {tuple(b.shape)}") from None
    a, b = _labels(a, "a"), _labels(b, "b")
    top = max(int(a.max()) if a.numel() else 0,
              int(b.max()) if b.numel() else 0)
    if top <= 1:
        a, b = a != 0, b != 0
        return _iou_from_counts((a & b).sum((-2, -1)).double(),
                                (a | b).sum((-2, -1)).double())
    iou_sum = present = 0
    for c in range(1, top + 1):
        ac, bc = a == c, b == c
        inter, union = ((ac & bc).sum((-2, -1)).double(),
                        (ac | bc).sum((-2, -1)).double())
        iou_sum = iou_sum + torch.where(union > 0,
                                        inter / union.clamp(min=1), 0.0)
        present = present + (union > 0)
    return torch.where(present > 0, iou_sum / present.clamp(min=1), 1.0)

def pairwise_iou(a: Array, b: Array | None = None) -> torch.Tensor:
    """IoU of every pair within each image: a (N, S, H, W), b (N, M, H, W)
    (default: a) -> float64 (N, S, M)."""
    a = check_masks(a, "a")
    if b is None:
        return _pairwise_iou(a)
    b = check_masks(b, "b")
    check_same_images(a, b, "a", "b")
    return _pairwise_iou(a, b)

# generalized energy distance, matched IoU, diversity -------------------------
def _ged(d_sy: torch.Tensor, d_ss: torch.Tensor, d_yy: torch.Tensor,
         unbiased: bool) -> torch.Tensor:
    """D² from distance matrices (N, S, R), (N, S, S), (N, R, R) -> (N,)."""
    return (2 * d_sy.mean((1, 2)) - mean_pairs(d_ss, unbiased)
            - mean_pairs(d_yy, unbiased))

def _hungarian(iou_sy: torch.Tensor) -> torch.Tensor:
    """Matched IoU from IoUs (N, S, R) -> (N,); sets tiled to lcm(S, R)."""
    from scipy.optimize import linear_sum_assignment  # not on import probunet

    S, R = iou_sy.shape[1:]
    L = math.lcm(S, R)
    out = []
    for x in iou_sy.numpy():
        tiled = np.tile(x, (L // S, L // R))  # (L, L)
        rows, cols = linear_sum_assignment(1 - tiled)
        out.append(tiled[rows, cols].mean())
    return torch.tensor(out, dtype=torch.float64)

def ged(samples: Array, annotations: Array,
        unbiased: bool = True) -> torch.Tensor:
    """Squared generalized energy distance per image, d = 1 - IoU: D² = 2
    E[d(s, y)] - E[d(s, s')] - E[d(y, y')] for samples s (N, S, H, W) and
    annotations y (N, R, H, W) -> float64 (N,). ``unbiased=True`` averages the
    within-set terms over distinct pairs only (needs S, R >= 2): an unbiased
    estimate of D², which can be negative. ``unbiased=False`` is what papers
    report: all S*S and R*R pairs, zero diagonal included."""
    s, y = (check_masks(samples, "samples"),
            check_masks(annotations, "annotations"))
    check_same_images(s, y, "samples", "annotations")
    if unbiased:
        check_at_least_two(s, "samples", "unbiased GED")
        check_at_least_two(y, "annotations", "unbiased GED")
    return _ged(1 - _pairwise_iou(s, y), 1 - _pairwise_iou(s),
                1 - _pairwise_iou(y), unbiased)

def hungarian_iou(samples: Array, annotations: Array) -> torch.Tensor:
    """Hungarian-matched IoU per image: samples (N, S, H, W), annotations
    (N, R, H, W) -> (N,). Both sets are tiled to L = lcm(S, R) elements (large
    when S and R are coprime), matched one-to-one with cost 1 - IoU and the
    matched IoUs averaged (as in Kohl et al. 2019 and PHiSeg)."""
    s, y = (check_masks(samples, "samples"),
            check_masks(annotations, "annotations"))
    check_same_images(s, y, "samples", "annotations")
    return _hungarian(_pairwise_iou(s, y))

def diversity(samples: Array) -> torch.Tensor:
    """Mean 1 - IoU over distinct sample pairs: (N, S >= 2, H, W) -> (N,)."""
    s = check_masks(samples, "samples")
    check_at_least_two(s, "samples", "diversity")
    return mean_pairs(1 - _pairwise_iou(s), True)

# everything that needs no known truth, at once -------------------------------
def _scores(s: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    iou_sy, d_ss, d_yy = (_pairwise_iou(s, y), 1 - _pairwise_iou(s),
                          1 - _pairwise_iou(y))
    nan, two_s, two_y = float("nan"), s.shape[1] >= 2, y.shape[1] >= 2
    return {
        "ged_unbiased": (_ged(1 - iou_sy, d_ss, d_yy, True).mean().item()
                         if two_s and two_y else nan),
        "ged_biased": _ged(1 - iou_sy, d_ss, d_yy, False).mean().item(),
        "hm_iou": _hungarian(iou_sy).mean().item(),
        "diversity": mean_pairs(d_ss, True).mean().item() if two_s else nan,
        "annotator_diversity": (mean_pairs(d_yy, True).mean().item()
                                if two_y else nan),
    }

def annotation_scores(samples: Array, annotations: Array,
                      num_classes: int | None = None) -> dict:
    """Scores of samples (N, S, H, W) against annotations (N, R, H, W) with no
    known truth, averaged over images: floats ``ged_unbiased``
    (NaN when S or R < 2), ``ged_biased``, ``hm_iou``, ``diversity``
    (NaN when S < 2) and ``annotator_diversity`` (NaN when R < 2). With several
    foreground classes (labels up to ``num_classes - 1``, default: the largest
    present), ``per_class`` maps each class c >= 1 to the same scores for the
    binary masks ``== c``."""
    s, y = (check_masks(samples, "samples"),
            check_masks(annotations, "annotations"))
    check_same_images(s, y, "samples", "annotations")
    top = max(int(s.max()), int(y.max()))
    if num_classes is not None:
        if top >= num_classes:
            raise ValueError(f"labels must be < num_classes = {num_classes}, "
                             f"got {top}")
        top = num_classes - 1
    out: dict = _scores(s, y)
    if top > 1:
        out["per_class"] = {c: _scores((s == c).to(torch.uint8),
                                       (y == c).to(torch.uint8))
                            for c in range(1, top + 1)}
    return out
