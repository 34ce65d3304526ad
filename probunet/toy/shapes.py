"""Toy ambiguous segmentation data with a *known* distribution over whole
masks.

Each image (H, W) shows ``num_objects`` shapes (discs or squares) on a dark,
noisy background. An annotator marks object k with probability ``p_k``, and the
image shows ``p_k``: the brighter the object, the more annotators mark it::

    contrast c_k ~ U(0.25, 0.8),   p_k = 0.1 + 0.8 * (c_k - 0.25) / 0.55

Objects are marked independently, so an image has ``2**num_objects`` modes
(every subset of its objects, the empty mask included) whose probabilities are
products of ``p_k`` and ``1 - p_k``. Mode ``m`` marks object ``k`` iff bit
``k`` of ``m`` is set; objects are ordered left to right.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

# the repository's data/ folder
DATA_DIR = Path(__file__).resolve().parents[2] / "data"
SPLITS = {"train": {"n": 2000, "seed": 2018}, "test": {"n": 500, "seed": 2019}}
ARRAYS = ("images", "objects", "probs", "annotations")
BACKGROUND, NOISE_STD = 0.1, 0.06
# brightest object ~0.9 + noise: no clipping at 255
CONTRAST_RANGE, PROB_RANGE = (0.25, 0.8), (0.1, 0.9)


def contrast_to_prob(contrast: np.ndarray) -> np.ndarray:
    """The law of the toy data: object contrast in [0.25, 0.8] -> marking
    probability in [0.1, 0.9]."""
    (c0, c1), (p0, p1) = CONTRAST_RANGE, PROB_RANGE
    return p0 + (p1 - p0) * (np.asarray(contrast) - c0) / (c1 - c0)


def draw_shapes(rng: np.random.Generator, size: int,
                num_objects: int) -> np.ndarray:
    """Non-overlapping discs/squares, ordered left to right: bool (J, H, W).
    Shared by the toys whose images show such objects (shapes, exclusive)."""
    yy, xx = np.mgrid[0:size, 0:size]
    while True:
        radii = rng.uniform(0.1, 0.19, num_objects) * size
        margin = radii + 1
        centres = rng.uniform(margin[:, None], size - 1 - margin[:, None],
                              (num_objects, 2))
        dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        # squares' corners reach r*sqrt(2)
        gap = dist - (radii[:, None] + radii[None]) * 1.42
        if num_objects == 1 or gap[~np.eye(num_objects, dtype=bool)].min() > 2:
            break
    order = np.argsort(centres[:, 1], kind="stable")
    squares = rng.random(num_objects) < 0.5
    masks = []
    for k in order:
        (cy, cx), r = centres[k], radii[k]
        if squares[k]:
            mask = (np.abs(yy - cy) <= r * 0.9) & (np.abs(xx - cx) <= r * 0.9)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        masks.append(mask)
    return np.stack(masks)


def draw_image(rng: np.random.Generator, size: int, num_objects: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One toy image: object masks bool (J, H, W), contrasts (J,) and the
    uint8 image (H, W), objects on a dark background with Gaussian noise."""
    masks = draw_shapes(rng, size, num_objects)
    contrast = rng.uniform(*CONTRAST_RANGE, num_objects)
    image = BACKGROUND + np.tensordot(contrast, masks.astype(np.float64),
                                      axes=1)
    image += rng.normal(0.0, NOISE_STD, image.shape)
    return masks, contrast, np.clip(np.round(image * 255), 0,
                                    255).astype(np.uint8)


def empty_arrays(n: int, size: int, num_objects: int, num_raters: int
                 ) -> tuple[np.ndarray, ...]:
    """Check a toy's sizes and allocate its four arrays (see ``ARRAYS``):
    images (N, H, W), objects (N, J, H, W), probs (N, J) and annotations
    (N, R, H, W). Shared by the toys drawn with :func:`draw_image`."""
    if n < 1 or num_objects < 1 or num_raters < 1:
        raise ValueError(
            f"n, num_objects and num_raters must be >= 1, got {n}, "
            f"{num_objects}, {num_raters}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    return (np.empty((n, size, size), np.uint8),
            np.empty((n, num_objects, size, size), bool),
            np.empty((n, num_objects), np.float32),
            np.empty((n, num_raters, size, size), np.uint8))


def generate_toy(n: int, size: int = 32, num_objects: int = 2,
                 num_raters: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Generate ``n`` toy images with their objects, probabilities and rater
    masks.

    Returns a dict of arrays::

        images      uint8 (N, H, W)     intensities, 0..255
        objects     bool  (N, J, H, W)  the J objects' masks, left to right
        probs       float32 (N, J)      probability that a rater marks object j
        annotations uint8 (N, R, H, W)  R rater masks drawn from the true law
                                        (0/1)

    The same arguments give the same arrays, bit for bit.
    """
    rng = np.random.default_rng(seed)
    images, objects, probs, annotations = empty_arrays(
        n, size, num_objects, num_raters)
    for i in range(n):
        masks, contrast, images[i] = draw_image(rng, size, num_objects)
        objects[i] = masks
        probs[i] = contrast_to_prob(contrast)
        marks = rng.random((num_raters, num_objects)) < probs[i]
        annotations[i] = (marks.astype(np.uint8) @ masks.reshape(
            num_objects, -1).astype(np.uint8)).reshape(num_raters, size, size)
    return {"images": images, "objects": objects, "probs": probs,
            "annotations": annotations}


def modes_of(objects: np.ndarray,
             probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ``2**J`` modes of images with J independent objects.

    objects: bool (..., J, H, W); probs: (..., J). Returns masks uint8
    (..., M, H, W) and probabilities float64 (..., M), M = 2**J; mode m marks
    object k iff bit k of m is set (mode 0 is the empty mask).
    """
    objects, probs = np.asarray(objects, bool), np.asarray(probs, np.float64)
    k = objects.shape[-3]
    bits = (np.arange(2**k)[:, None] >> np.arange(k)[None]) & 1  # (M, J)
    masks = np.einsum("mk,...khw->...mhw", bits,
                      objects.astype(np.uint8)).astype(np.uint8)
    p = probs[..., None, :]
    mode_probs = np.prod(np.where(bits == 1, p, 1 - p), axis=-1)
    return masks, mode_probs


def validate_arrays(arrays: dict[str, np.ndarray]) -> None:
    """Raise ValueError unless ``arrays`` has the keys, dtypes and shapes of
    :func:`generate_toy`."""
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"toy data is missing arrays {missing}")
    im, ob, pr, an = (arrays[k] for k in ARRAYS)
    n, h, w = im.shape if im.ndim == 3 else (None,) * 3
    checks = [
        (im.dtype == np.uint8 and im.ndim == 3,
         f"images must be uint8 (N, H, W), got {im.dtype} {im.shape}"),
        (ob.dtype == bool and ob.shape[:1] + ob.shape[2:] == (n, h, w),
         f"objects must be bool (N, J, H, W), got {ob.dtype} {ob.shape}"),
        (pr.shape == ob.shape[:2] and np.all((pr > 0) & (pr < 1)),
         f"probs must be (N, J) in (0, 1), got {pr.shape}"),
        (an.dtype == np.uint8 and an.shape[:1] + an.shape[2:] == (n, h, w)
         and an.max(initial=0) <= 1,
         f"annotations must be uint8 0/1 (N, R, H, W), got {an.dtype} "
         f"{an.shape}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def split_path(split: str, root: str | Path | None = None) -> Path:
    if split not in SPLITS:
        raise ValueError(
            f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    return Path(root if root is not None else DATA_DIR) / f"toy_{split}.npz"


def generate_split(split: str) -> dict[str, np.ndarray]:
    """Generate a named split (``"train"`` or ``"test"``) exactly as stored in
    ``data/``."""
    split_path(split)  # validates the name
    return generate_toy(SPLITS[split]["n"], seed=SPLITS[split]["seed"])


def read_split(path: Path, generate: Callable[[], dict[str, np.ndarray]],
               validate: Callable[[dict[str, np.ndarray]], None]
               ) -> dict[str, np.ndarray]:
    """The arrays stored at ``path``, checked by ``validate``; ``generate()``
    when the file is absent (e.g. after a pip install, which ships no
    ``data/``): the generators make the same arrays bit for bit."""
    if not path.exists():
        return generate()
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    validate(arrays)
    return arrays


def load_split(split: str,
               root: str | Path | None = None) -> dict[str, np.ndarray]:
    """Load ``data/toy_{split}.npz``, checking its arrays; regenerate it
    (bit for bit) if absent."""
    return read_split(split_path(split, root), lambda: generate_split(split),
                      validate_arrays)


def save_split(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    """Write arrays to a compressed ``.npz`` (validated first)."""
    validate_arrays(arrays)
    np.savez_compressed(path, **{k: arrays[k] for k in ARRAYS})


class ToyAmbiguousDataset(Dataset):
    """The toy data as a torch Dataset yielding
    ``(image (1, H, W) float, mask (H, W) long)``.

    ``annotation="stored"`` (default) picks one of the R stored rater masks at
    random, like training on LIDC's four raters; ``annotation="fresh"`` draws a
    new mask from the true law each time. Randomness comes from torch's global
    RNG, so ``torch.manual_seed`` makes it reproducible.
    """

    # objects are marked independently (see ExclusiveObjectsDataset)
    exclusive = False
    load = staticmethod(load_split)  # a subclass with other files swaps these
    validate = staticmethod(validate_arrays)

    def __init__(self, split: str = "train", annotation: str = "stored",
                 root: str | Path | None = None,
                 arrays: dict[str, np.ndarray] | None = None):
        if annotation not in ("stored", "fresh"):
            raise ValueError(
                f"annotation must be 'stored' or 'fresh', got {annotation!r}")
        arrays = self.load(split, root) if arrays is None else arrays
        self.validate(arrays)
        self.annotation = annotation
        self.images = torch.from_numpy(arrays["images"].astype(np.float32)
                                       / 255.0).unsqueeze(1)
        self.objects = torch.from_numpy(arrays["objects"])
        self.probs = torch.from_numpy(arrays["probs"])
        self.annotations = torch.from_numpy(arrays["annotations"]).long()
        self.num_classes = 2

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.annotation == "stored":
            r = int(torch.randint(self.annotations.shape[1], ()))
            return self.images[i], self.annotations[i, r]
        return self.images[i], self.fresh_mask(i)

    def fresh_mask(self, i: int) -> torch.Tensor:
        """A new mask (H, W) for image i from the true law: each object
        marked with its probability."""
        marks = torch.rand(self.probs.shape[1]) < self.probs[i]
        return (self.objects[i] & marks[:, None, None]).any(0).long()

    def modes(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """True modes of image i: masks uint8 (M, H, W) and probabilities (M,),
        summing to 1."""
        return modes_of(self.objects[i].numpy(), self.probs[i].numpy())

    def all_modes(self) -> tuple[np.ndarray, np.ndarray]:
        """True modes of every image: masks uint8 (N, M, H, W) and
        probabilities (N, M)."""
        return modes_of(self.objects.numpy(), self.probs.numpy())
