"""Toy data with mutually exclusive objects: every rater marks exactly one.

Each image (H, W) shows ``num_objects`` shapes (discs or squares) on a dark,
noisy background, drawn as in :mod:`probunet.toy.shapes`. A rater marks
exactly ONE object, object k with probability ``p_k``, and the image shows
``p_k`` through the objects' relative brightness::

    contrast c_k ~ U(0.25, 0.8),   w_k = 0.1 + 0.8 * (c_k - 0.25) / 0.55,
    p_k = w_k / sum_j w_j

So an image has ``num_objects`` modes, each object alone; the empty mask and
every union of objects have probability 0. Objects are ordered left to right
and mode k is object k. Per object the law looks like the shapes toy's
(object k is marked with probability p_k), but the objects are strongly
dependent: marking one rules out all the others.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .shapes import (ARRAYS, ToyAmbiguousDataset, contrast_to_prob,
                     draw_image, empty_arrays, read_split)

# the repository's data/ folder
DATA_DIR = Path(__file__).resolve().parents[2] / "data"
EXCLUSIVE_SPLITS = {"train": {"n": 2000, "seed": 2021},
                    "test": {"n": 500, "seed": 2022}}
# float32 rows of 2-3 probabilities sum to 1 within a few 1e-8
SUM_TOL = 1e-5


def generate_exclusive(n: int, size: int = 32, num_objects: int = 3,
                       num_raters: int = 4,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """Generate ``n`` images whose raters each mark exactly one object.

    Returns a dict of arrays, like :func:`probunet.toy.generate_toy`::

        images      uint8 (N, H, W)     intensities, 0..255
        objects     bool  (N, J, H, W)  the J objects' masks, left to right
        probs       float32 (N, J)      probability that a rater marks
                                        object j (and only it); rows sum
                                        to 1
        annotations uint8 (N, R, H, W)  R rater masks, each one object (0/1)

    The same arguments give the same arrays, bit for bit.
    """
    rng = np.random.default_rng(seed)
    images, objects, probs, annotations = empty_arrays(
        n, size, num_objects, num_raters)
    for i in range(n):
        masks, contrast, images[i] = draw_image(rng, size, num_objects)
        objects[i] = masks
        weights = contrast_to_prob(contrast)
        p = weights / weights.sum()
        probs[i] = p
        # inverse CDF, explicit so that the draws never depend on how numpy
        # implements choice(); the minimum guards against rounding in cumsum
        chosen = np.minimum(
            np.searchsorted(np.cumsum(p), rng.random(num_raters), "right"),
            num_objects - 1)
        annotations[i] = masks[chosen]
    return {"images": images, "objects": objects, "probs": probs,
            "annotations": annotations}


def validate_exclusive(arrays: dict[str, np.ndarray]) -> None:
    """Raise ValueError unless ``arrays`` has the keys, dtypes and shapes of
    :func:`generate_exclusive`, its probs rows sum to 1 and every annotation
    is exactly one of its image's objects."""
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"exclusive data is missing arrays {missing}")
    im, ob, pr, an = (np.asarray(arrays[k]) for k in ARRAYS)
    n, h, w = im.shape if im.ndim == 3 else (None,) * 3
    checks = [
        (im.dtype == np.uint8 and im.ndim == 3,
         f"images must be uint8 (N, H, W), got {im.dtype} {im.shape}"),
        (ob.dtype == bool and ob.ndim == 4 and ob.shape[1] >= 1
         and ob.shape[:1] + ob.shape[2:] == (n, h, w),
         f"objects must be bool (N, J, H, W), got {ob.dtype} {ob.shape}"),
        (np.issubdtype(pr.dtype, np.floating) and pr.shape == ob.shape[:2],
         f"probs must be float (N, J) = {ob.shape[:2]}, got {pr.dtype} "
         f"{pr.shape}"),
        (an.dtype == np.uint8 and an.ndim == 4
         and an.shape[:1] + an.shape[2:] == (n, h, w)
         and an.max(initial=0) <= 1,
         f"annotations must be uint8 0/1 (N, R, H, W), got {an.dtype} "
         f"{an.shape}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    if not np.all((pr >= 0) & (pr <= 1)):  # NaN fails too
        raise ValueError("probs must lie in [0, 1]")
    err = np.abs(pr.sum(-1, dtype=np.float64) - 1).max(initial=0)
    if err > SUM_TOL:
        raise ValueError(
            f"probs rows must sum to 1 (within {SUM_TOL}): every rater marks "
            f"exactly one object, but a row is off by {err:.3g}")
    if not ob.any((-1, -2)).all():
        raise ValueError("objects contains an empty object mask")
    # (N, R, J): annotation r of image i equals object j
    equal = np.stack([(an == ob[:, j, None]).all((-1, -2))
                      for j in range(ob.shape[1])], -1)
    bad = np.argwhere(equal.sum(-1) != 1)
    if len(bad):
        i, r = bad[0]
        raise ValueError(
            f"annotations must each be exactly one object, but {len(bad)} "
            f"are not (first: image {i}, rater {r})")


def exclusive_path(split: str, root: str | Path | None = None) -> Path:
    """Where a named split is stored: ``data/exclusive_{split}.npz``
    (or under ``root``)."""
    if split not in EXCLUSIVE_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of "
                         f"{sorted(EXCLUSIVE_SPLITS)}")
    return (Path(root if root is not None else DATA_DIR)
            / f"exclusive_{split}.npz")


def generate_exclusive_split(split: str) -> dict[str, np.ndarray]:
    """Generate a named split (``"train"`` or ``"test"``) exactly as stored in
    ``data/``."""
    exclusive_path(split)  # validates the name
    return generate_exclusive(EXCLUSIVE_SPLITS[split]["n"],
                              seed=EXCLUSIVE_SPLITS[split]["seed"])


def load_exclusive(split: str,
                   root: str | Path | None = None) -> dict[str, np.ndarray]:
    """Load ``data/exclusive_{split}.npz``, checking its arrays; regenerate it
    (bit for bit) if absent."""
    return read_split(exclusive_path(split, root),
                      lambda: generate_exclusive_split(split),
                      validate_exclusive)


def save_exclusive(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    """Write arrays to a compressed ``.npz`` (validated first)."""
    validate_exclusive(arrays)
    np.savez_compressed(path, **{k: arrays[k] for k in ARRAYS})


class ExclusiveObjectsDataset(ToyAmbiguousDataset):
    """The exclusive toy data as a torch Dataset yielding
    ``(image (1, H, W) float, mask (H, W) long)``, the mask one object.

    ``annotation="stored"`` (default) picks one of the R stored rater masks at
    random; ``annotation="fresh"`` draws one object from ``probs`` each time.
    Randomness comes from torch's global RNG, so ``torch.manual_seed`` makes
    it reproducible. ``exclusive = True`` tells
    :func:`probunet.toy.evaluate` that the modes are the objects themselves.
    """

    exclusive = True
    load = staticmethod(load_exclusive)
    validate = staticmethod(validate_exclusive)

    def fresh_mask(self, i: int) -> torch.Tensor:
        """A new mask (H, W) for image i: one object, drawn from probs."""
        k = int(torch.multinomial(self.probs[i], 1))
        return self.objects[i, k].long()

    def modes(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """True modes of image i, its objects: masks uint8 (J, H, W) and
        probabilities float64 (J,), summing to 1."""
        return (self.objects[i].numpy().astype(np.uint8),
                self.probs[i].numpy().astype(np.float64))

    def all_modes(self) -> tuple[np.ndarray, np.ndarray]:
        """True modes of every image: masks uint8 (N, J, H, W) and
        probabilities float64 (N, J)."""
        return (self.objects.numpy().astype(np.uint8),
                self.probs.numpy().astype(np.float64))
