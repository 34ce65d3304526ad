"""LIDC-like toy data: one blob-shaped lesion per image, four raters who
disagree as radiologists do.

Each 64x64 grey image shows a lesion, an irregular blob, on a textured
background. The raters disagree in two ways, with known probabilities:

1. **presence**: a rater marks the lesion at all with probability
   ``p_present = contrast_to_presence(contrast)``; faint lesions (contrast
   below ``CLEAR_CONTRAST``) are missed by some raters, clear ones by none;
2. **boundary**: a rater who marks it draws its outline ``k`` pixels outside
   (dilation, k > 0) or inside (erosion, k < 0) the lesion's edge, k from
   ``BOUNDARY_OFFSETS`` with probabilities ``BOUNDARY_PROBS``.

So the law of one rater's mask is known exactly (:func:`lesion_modes`): the
empty mask with probability 1 - p_present, and the lesion grown by k pixels
with probability p_present * BOUNDARY_PROBS[k].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from .shapes import read_split

# the repository's data/ folder
DATA_DIR = Path(__file__).resolve().parents[2] / "data"
LESION_SPLITS = {"train": {"n": 600, "seed": 2020},
                 "val": {"n": 100, "seed": 2021},
                 "test": {"n": 200, "seed": 2022}}
LESION_ARRAYS = ("images", "lesions", "contrast", "p_present", "marked",
                 "offsets", "annotations")
BOUNDARY_OFFSETS = (-3, -2, -1, 0, 1, 2, 3)
BOUNDARY_PROBS = (0.05, 0.10, 0.20, 0.30, 0.20, 0.10, 0.05)
CONTRAST_RANGE = (0.08, 0.42)  # half the lesions fainter than CLEAR_CONTRAST
CLEAR_CONTRAST, FAINTEST_PRESENCE = 0.25, 0.2
RADIUS_RANGE = (7.0, 11.0)  # eroded by 3 px a lesion keeps most of its area
# grey, so texture and noise rarely clip
BACKGROUND, TEXTURE_STD, NOISE_STD = 0.35, 0.06, 0.03


def contrast_to_presence(contrast: np.ndarray) -> np.ndarray:
    """Probability that a rater marks a lesion of this contrast: 0.2 at the
    faintest, rising to 1 at CLEAR_CONTRAST."""
    c0 = CONTRAST_RANGE[0]
    slope = (1 - FAINTEST_PRESENCE) / (CLEAR_CONTRAST - c0)
    return np.clip(
        FAINTEST_PRESENCE + slope * (np.asarray(contrast, np.float64) - c0),
        0.0, 1.0)


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return xx**2 + yy**2 <= radius**2


def offset_mask(lesion: np.ndarray, k: int) -> np.ndarray:
    """The lesion (H, W) bool grown (k > 0) or shrunk (k < 0) by abs(k) pixels
    with a round structuring element."""
    if k == 0:
        return lesion.copy()
    op = ndimage.binary_dilation if k > 0 else ndimage.binary_erosion
    return op(lesion, structure=_disk(abs(k)))


def _draw_lesion(rng: np.random.Generator, size: int) -> np.ndarray:
    """An irregular blob: a disc whose radius varies with the angle by three
    low harmonics. bool (H, W)."""
    radius = rng.uniform(*RADIUS_RANGE)
    # room for the bumps and the widest rater
    margin = RADIUS_RANGE[1] * 1.4 + max(BOUNDARY_OFFSETS) + 1
    cy, cx = rng.uniform(margin, size - 1 - margin, 2)
    amps, phases = rng.uniform(0.0, 0.12, 3), rng.uniform(0, 2 * np.pi, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    theta = np.arctan2(yy - cy, xx - cx)
    r = radius * (1 + sum(a * np.cos((j + 2) * theta + p)
                          for j, (a, p) in enumerate(zip(amps, phases))))
    return np.hypot(yy - cy, xx - cx) <= r


def generate_lesions(n: int, size: int = 64, num_raters: int = 4,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Generate ``n`` lesion images with their truth and ``num_raters`` rater
    masks each.

    Returns a dict of arrays::

        images      uint8 (N, H, W)     intensities, 0..255
        lesions     bool (N, H, W)      the lesion as drawn (offset 0)
        contrast    float32 (N,)        lesion minus background intensity,
                                        in [0, 1] units
        p_present   float32 (N,)        probability that a rater marks it
        marked      bool (N, R)         whether rater r marked it
        offsets     int8 (N, R)         rater r's boundary offset in pixels
                                        (0 where not marked)
        annotations uint8 (N, R, H, W)  the rater masks (0/1)

    The same arguments give the same arrays, bit for bit.
    """
    if n < 1 or num_raters < 1:
        raise ValueError(
            f"n and num_raters must be >= 1, got {n}, {num_raters}")
    min_size = int(2 * (RADIUS_RANGE[1] * 1.4 + max(BOUNDARY_OFFSETS) + 1)) + 2
    if size < min_size:
        raise ValueError(
            f"size must be at least {min_size} pixels for lesions of radius "
            f"up to {RADIUS_RANGE[1]}, got {size}")
    rng = np.random.default_rng(seed)
    out = {
        "images": np.empty((n, size, size), np.uint8),
        "lesions": np.empty((n, size, size), bool),
        "contrast": np.empty(n, np.float32),
        "p_present": np.empty(n, np.float32),
        "marked": np.empty((n, num_raters), bool),
        "offsets": np.zeros((n, num_raters), np.int8),
        "annotations": np.zeros((n, num_raters, size, size), np.uint8),
    }
    for i in range(n):
        lesion = _draw_lesion(rng, size)
        contrast = rng.uniform(*CONTRAST_RANGE)
        texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 3.0)
        texture *= TEXTURE_STD / texture.std()
        # a soft edge (blur of 1 px): where exactly the boundary lies is a
        # judgement call, as on CT
        image = BACKGROUND + texture + contrast * ndimage.gaussian_filter(
            lesion.astype(np.float64), 1.0)
        image += rng.normal(0, NOISE_STD, (size, size))
        out["images"][i] = np.clip(np.round(image * 255), 0,
                                   255).astype(np.uint8)
        out["lesions"][i], out["contrast"][i] = lesion, contrast
        p = out["p_present"][i] = contrast_to_presence(contrast)
        marked = rng.random(num_raters) < p
        offsets = rng.choice(BOUNDARY_OFFSETS, size=num_raters,
                             p=BOUNDARY_PROBS)
        for r in np.flatnonzero(marked):
            out["annotations"][i, r] = offset_mask(lesion, int(offsets[r]))
        out["marked"][i], out["offsets"][i] = (marked,
                                               np.where(marked, offsets, 0))
    return out


def lesion_modes(lesions: np.ndarray,
                 p_present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact law of one rater's mask: lesions bool (N, H, W), p_present
    (N,) -> masks uint8 (N, M, H, W), probabilities float64 (N, M), M = 1 +
    len(BOUNDARY_OFFSETS).

    Mode 0 is the empty mask (probability 1 - p_present); mode 1 + j is the
    lesion offset by BOUNDARY_OFFSETS[j] (probability p_present *
    BOUNDARY_PROBS[j]). Rows sum to 1.
    """
    lesions, p = np.asarray(lesions, bool), np.asarray(p_present, np.float64)
    n = lesions.shape[0]
    masks = np.zeros((n, 1 + len(BOUNDARY_OFFSETS), *lesions.shape[1:]),
                     np.uint8)
    for i in range(n):
        for j, k in enumerate(BOUNDARY_OFFSETS):
            masks[i, 1 + j] = offset_mask(lesions[i], k)
    probs = np.concatenate(
        [1 - p[:, None], p[:, None] * np.asarray(BOUNDARY_PROBS)[None]],
        axis=1)
    return masks, probs


def validate_lesions(arrays: dict[str, np.ndarray]) -> None:
    """Raise ValueError unless ``arrays`` has the keys, dtypes and shapes of
    :func:`generate_lesions`."""
    missing = [k for k in LESION_ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"lesion data is missing arrays {missing}")
    im, an = arrays["images"], arrays["annotations"]
    if im.dtype != np.uint8 or im.ndim != 3:
        raise ValueError(
            f"images must be uint8 (N, H, W), got {im.dtype} {im.shape}")
    n, r = an.shape[:2] if an.ndim == 4 else (None, None)
    if (an.dtype != np.uint8 or an.shape != (im.shape[0], r, *im.shape[1:])
            or an.max(initial=0) > 1):
        raise ValueError(
            "annotations must be uint8 0/1 (N, R, H, W) matching images "
            f"{im.shape}, got {an.dtype} {an.shape}")
    for key, shape in (("lesions", im.shape), ("contrast", (n,)),
                       ("p_present", (n,)), ("marked", (n, r)),
                       ("offsets", (n, r))):
        if arrays[key].shape != shape:
            raise ValueError(
                f"{key} must have shape {shape}, got {arrays[key].shape}")


def lesion_path(split: str, root: str | Path | None = None) -> Path:
    """Where a named split is stored: ``data/lesions_{split}.npz``
    (or under ``root``)."""
    if split not in LESION_SPLITS:
        raise ValueError(
            f"unknown split {split!r}; choose one of {sorted(LESION_SPLITS)}")
    return (Path(root if root is not None else DATA_DIR)
            / f"lesions_{split}.npz")


def generate_lesion_split(split: str) -> dict[str, np.ndarray]:
    """Generate a named split (``"train"``, ``"val"`` or ``"test"``) exactly as
    stored in ``data/``."""
    lesion_path(split)  # validates the name
    return generate_lesions(LESION_SPLITS[split]["n"],
                            seed=LESION_SPLITS[split]["seed"])


def load_lesions(split: str,
                 root: str | Path | None = None) -> dict[str, np.ndarray]:
    """Load ``data/lesions_{split}.npz``, checking its arrays; regenerate it
    (bit for bit) if absent."""
    return read_split(lesion_path(split, root),
                      lambda: generate_lesion_split(split), validate_lesions)


def save_lesions(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    """Write lesion arrays to a compressed ``.npz`` (validated first);
    ``MultiAnnotatorDataset.from_npz`` reads it."""
    validate_lesions(arrays)
    np.savez_compressed(path, **{k: arrays[k] for k in LESION_ARRAYS})
