"""LIDC-IDRI in the two forms in which it is shared, as plain arrays.

1. The 2-D crops of the Hierarchical Probabilistic U-Net (Kohl et al. 2019;
   google-deepmind/deepmind-research, ``hierarchical_probabilistic_unet``)::

       <root>/<split>/images/<patient>/<name>.png       180x180 8-bit grey
       <root>/<split>/gt/<patient>/<name>_l<g>.png      4 graders, 0/255

   The README numbers the graders 1-4, the files on disk are often
   ``_l0``..``_l3``: both are read. Splits: train, val, test (8843, 1993
   and 1980 crops of 530, 111 and 103 patients).
2. The pickle of stefanknegt/Probabilistic-Unet-Pytorch: one or more
   ``.pickle`` files, each a dict ``key -> {"image": float (128, 128) in
   [0, 1], "masks": 4 binary (128, 128), "series_uid": str}``. It comes
   unsplit; the port itself split it by image, 90/10, so that one
   patient's slices land in both halves: :func:`split_by_group` does not.

Both readers return :class:`LIDCArrays`: images float32 (N, 1, H, W),
masks uint8 (N, 4, H, W) 0/1, item names and groups (the patient or series
of each item). Anything malformed raises a ``ValueError`` naming the file.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

GRADERS = 4
SPLITS = ("train", "val", "test")
# the pickle's split in PHiSeg, SSN and MoSE: 20% test, 20% of the rest val
PICKLE_SPLIT = (0.64, 0.16, 0.2)


class LIDCArrays(NamedTuple):
    """images float32 (N, 1, H, W) in [0, 1]; masks uint8 (N, 4, H, W);
    ids and groups (patient or series id), one string per item."""
    images: np.ndarray
    masks: np.ndarray
    ids: list[str]
    groups: list[str]


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image  # matplotlib's dependency: imported lazily

    try:
        with Image.open(path) as im:
            a = np.asarray(im)
    except Exception as e:
        raise ValueError(f"cannot read {path} as a PNG image: {e}") from e
    if a.ndim != 2:
        raise ValueError(f"{path} must be a grey PNG, got shape {a.shape}")
    return a


def _binary(mask: np.ndarray, where: str) -> np.ndarray:
    """0/255 or 0/1 masks (any dtype) -> uint8 0/1, else ValueError."""
    values = np.unique(mask)
    top = 255 if values.max(initial=0) > 1 else 1
    if not np.isin(values, (0, top)).all():
        raise ValueError(f"{where} must be a binary mask (0/1 or 0/255), "
                         f"found values {values[:6].tolist()}")
    return (mask == top).astype(np.uint8)


def _graders(names: set[str], where: Path) -> tuple[int, ...]:
    """Which numbering a split's masks use: l0..l3, or l1..l4."""
    for first in (0, 1):
        if {f"l{g}" for g in range(first, first + GRADERS)} >= names:
            return tuple(range(first, first + GRADERS))
    raise ValueError(f"masks in {where} are numbered {sorted(names)}; "
                     f"expected _l0.._l3 or _l1.._l4")


def read_lidc_crops(root: str | Path, split: str,
                    progress: bool = True) -> LIDCArrays:
    """Read one split of the HPU-Net crops; groups are the patients."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    images_dir, gt_dir = root / split / "images", root / split / "gt"
    for d in (images_dir, gt_dir):
        if not d.is_dir():
            raise ValueError(f"no such folder: {d} (expected the crops' "
                             f"<root>/<split>/images and gt)")
    paths = sorted(images_dir.glob("*/*.png"))
    if not paths:
        raise ValueError(f"no <patient>/<name>.png images in {images_dir}")
    pattern = re.compile(r"^(.+)_(l\d)$")
    masks_of: dict[tuple[str, str], dict[str, Path]] = {}
    for p in sorted(gt_dir.glob("*/*.png")):
        m = pattern.match(p.stem)
        if m is None:
            raise ValueError(f"mask {p} is not named <name>_l<grader>.png")
        masks_of.setdefault((p.parent.name, m.group(1)), {})[m.group(2)] = p
    names = {g for ms in masks_of.values() for g in ms}
    graders = _graders(names, gt_dir) if names else (0, 1, 2, 3)
    h, w = _read_png(paths[0]).shape
    images = np.empty((len(paths), 1, h, w), np.float32)
    masks = np.empty((len(paths), GRADERS, h, w), np.uint8)
    ids, groups = [], []
    for i, p in enumerate(tqdm(paths, desc=f"LIDC crops {split}",
                               disable=not progress, mininterval=1)):
        patient = p.parent.name
        found = masks_of.pop((patient, p.stem), None)
        if found is None:
            raise ValueError(f"image {p} has no masks "
                             f"{gt_dir / patient / p.stem}_l<g>.png")
        image = _read_png(p)
        if image.shape != (h, w) or image.dtype != np.uint8:
            raise ValueError(f"{p} is {image.shape[0]}x{image.shape[1]} "
                             f"{image.dtype}, {paths[0]} {h}x{w} uint8: "
                             f"every crop must be the same 8-bit size")
        images[i, 0] = image / np.float32(255)
        for j, g in enumerate(graders):
            path = gt_dir / patient / f"{p.stem}_l{g}.png"
            if f"l{g}" not in found:
                raise ValueError(f"missing grader file {path}")
            mask = _read_png(path)
            if mask.shape != (h, w):
                raise ValueError(f"{path} is {mask.shape[0]}x"
                                 f"{mask.shape[1]}, its image {h}x{w}")
            masks[i, j] = _binary(mask, str(path))
        ids.append(f"{patient}/{p.stem}")
        groups.append(patient)
    if masks_of:
        (patient, name), found = next(iter(masks_of.items()))
        raise ValueError(f"masks {sorted(found.values())[0]} have no image "
                         f"{images_dir / patient / name}.png")
    return LIDCArrays(images, masks, ids, groups)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes and plain containers, nothing else: a
    pickle names every callable it runs, and any other name is refused
    here, before it can run."""

    ALLOWED = {(f"numpy.{core}.{module}", name)
               for core in ("core", "_core")
               for module, name in (("multiarray", "_reconstruct"),
                                    ("multiarray", "scalar"),
                                    ("numeric", "_frombuffer"))}
    ALLOWED |= {("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode"), ("collections", "OrderedDict")}

    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise ValueError(
                f"{self.path} asks to run {module}.{name}: refused (only "
                f"numpy arrays and plain containers are read from a pickle)")
        return super().find_class(module, name)


def load_pickle_safely(path: str | Path) -> object:
    """Unpickle a file of numpy arrays and containers; any other object
    raises ValueError before it is built."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _ArraysOnly(f, path).load()
    except ValueError:
        raise
    except Exception as e:  # truncated, not a pickle, ...
        raise ValueError(f"cannot read {path} as a pickle: {e}") from e


def _pickle_items(path: Path) -> list[tuple[str, dict]]:
    data = load_pickle_safely(path)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path} must hold a non-empty dict name -> item, "
                         f"got {type(data).__name__}")
    for key, item in data.items():
        if not (isinstance(item, dict) and {"image", "masks",
                                            "series_uid"} <= set(item)):
            raise ValueError(f"{path}, item {key!r}: expected a dict with "
                             f"'image', 'masks' and 'series_uid'")
    return [(str(k), v) for k, v in data.items()]


def read_lidc_pickle(path_or_dir: str | Path,
                     progress: bool = True) -> LIDCArrays:
    """Read the port's pickle (a file, or every ``*.pickle`` in a folder);
    groups are the series ids."""
    path = Path(path_or_dir)
    files = sorted(path.glob("*.pickle")) if path.is_dir() else [path]
    if path.is_dir() and not files:
        raise ValueError(f"no .pickle files in {path}")
    if not files[0].is_file():
        raise ValueError(f"no such file or folder: {path}")
    items = [(f, k, v) for f in files for k, v in _pickle_items(f)]
    first = np.asarray(items[0][2]["image"])
    if first.ndim != 2:
        raise ValueError(f"{files[0]}: images must be 2-D, got shape "
                         f"{first.shape}")
    h, w = first.shape
    images = np.empty((len(items), 1, h, w), np.float32)
    masks = np.empty((len(items), GRADERS, h, w), np.uint8)
    for i, (f, key, item) in enumerate(tqdm(
            items, desc="LIDC pickle", disable=not progress, mininterval=1)):
        where = f"{f}, item {key!r}"
        image = np.asarray(item["image"])
        if image.shape != (h, w) or not np.issubdtype(image.dtype,
                                                      np.floating):
            raise ValueError(f"{where}: image is {image.shape} "
                             f"{image.dtype}, expected float ({h}, {w})")
        if not (np.isfinite(image).all() and 0 <= image.min()
                and image.max() <= 1):
            raise ValueError(f"{where}: image values must be in [0, 1]")
        if len(item["masks"]) != GRADERS:
            raise ValueError(f"{where}: {len(item['masks'])} masks, "
                             f"expected {GRADERS}")
        images[i, 0] = image
        for j, mask in enumerate(item["masks"]):
            mask = np.asarray(mask)
            if mask.shape != (h, w):
                raise ValueError(f"{where}: mask {j} is {mask.shape}, its "
                                 f"image ({h}, {w})")
            masks[i, j] = _binary(mask, f"{where}, mask {j}")
    return LIDCArrays(images, masks, [k for _, k, _ in items],
                      [str(v["series_uid"]) for _, _, v in items])


def as_dataset(cls: type, arrays: LIDCArrays, crop: int | None,
               augment: bool, **kwargs):
    """A ``cls`` (MultiAnnotatorDataset) of ``arrays``: with ``augment``, a
    random ``crop`` window and flips on every access, else the arrays
    centre-cropped to ``crop`` (None: as they are)."""
    images, masks = (torch.from_numpy(arrays.images),
                     torch.from_numpy(arrays.masks))
    if augment:
        if "transform" in kwargs:
            raise ValueError("augment=True sets the transform: pass one of "
                             "the two")
        kwargs["transform"] = RandomCropFlip(crop or images.shape[-1])
    elif crop is not None:
        images = center_crop(images, crop).contiguous()
        masks = center_crop(masks, crop).contiguous()
    dataset = cls(images, masks, num_classes=2, **kwargs)
    dataset.ids, dataset.groups = arrays.ids, arrays.groups
    return dataset


def split_by_group(groups: list[str],
                   fractions: tuple[float, ...] = PICKLE_SPLIT,
                   seed: int = 0) -> list[np.ndarray]:
    """Item indices of each split, so that no group (patient) is in two:
    the groups are shuffled with ``seed`` and dealt out by ``fractions`` of
    the number of groups. Returns one sorted int64 array per fraction."""
    fractions = tuple(float(f) for f in fractions)
    if not fractions or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be positive and sum to 1, got "
                         f"{fractions}")
    names = sorted(set(groups))
    if len(names) < len(fractions):
        raise ValueError(f"{len(names)} groups cannot fill "
                         f"{len(fractions)} splits")
    order = np.random.default_rng(seed).permutation(len(names))
    cuts = np.round(np.cumsum(fractions) * len(names)).astype(int)
    cuts = np.maximum(cuts, np.arange(1, len(cuts) + 1))  # no empty split
    split_of = {}
    for s, (lo, hi) in enumerate(zip(np.r_[0, cuts[:-1]], cuts)):
        split_of.update({names[g]: s for g in order[lo:hi]})
    which = np.array([split_of[g] for g in groups])
    return [np.flatnonzero(which == s) for s in range(len(fractions))]


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central size x size window of (..., H, W)."""
    h, w = x.shape[-2:]
    if not (isinstance(size, int) and 1 <= size <= min(h, w)):
        raise ValueError(f"crop size must be an int in [1, {min(h, w)}] "
                         f"for {h}x{w} images, got {size!r}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


class RandomCropFlip:
    """Training augmentation of the HPU-Net paper: a random size x size
    window and random flips, the same for the image (C, H, W) and its mask
    (..., H, W). Draws from torch's global RNG, so ``fit``'s seed and
    resume cover it."""

    def __init__(self, size: int = 128, flips: bool = True):
        if not (isinstance(size, int) and size >= 1):
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.size, self.flips = size, flips

    def __call__(self, image: torch.Tensor, mask: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = image.shape[-2:]
        if mask.shape[-2:] != (h, w) or min(h, w) < self.size:
            raise ValueError(f"cannot crop {self.size}x{self.size} from "
                             f"image {tuple(image.shape)}, mask "
                             f"{tuple(mask.shape)}")
        top = int(torch.randint(h - self.size + 1, ()))
        left = int(torch.randint(w - self.size + 1, ()))
        window = (..., slice(top, top + self.size),
                  slice(left, left + self.size))
        image, mask = image[window], mask[window]
        for dim in ((-1, -2) if self.flips else ()):
            if bool(torch.rand(()) < 0.5):
                image, mask = image.flip(dim), mask.flip(dim)
        return image, mask

    def __repr__(self) -> str:
        return f"RandomCropFlip(size={self.size}, flips={self.flips})"
