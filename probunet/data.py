"""Your own data: images with several annotations each, as a torch Dataset::

    images       float (N, C, H, W)  intensities in a small range, e.g. [0, 1]
    annotations  int   (N, R, H, W)  R class-index masks, labels in [0, K)

Items are ``(image (C, H, W), one annotation (H, W) long)``: a random rater
on each access (over many steps the model sees every rater), or a fixed one.
Bad input raises a ``ValueError`` that says what is wrong.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

Array = Union[torch.Tensor, np.ndarray]

def _as_tensor(x: Array, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a torch tensor or numpy array, "
                         f"got {type(x).__name__}")
    # torch warns on read-only arrays
    return torch.from_numpy(x if x.flags.writeable else x.copy())

def check_images(images: Array) -> torch.Tensor:
    """Finite float images (N, C, H, W) -> float32 tensor, else ValueError."""
    t = _as_tensor(images, "images")
    if t.ndim != 4:
        raise ValueError(f"images must have 4 dims (N, C, H, W), "
                         f"got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"images must be float (N, C, H, W), got dtype "
                         f"{t.dtype}: scale integer images first, e.g. "
                         f"images / 255 for uint8 (from_npz and from_folders "
                         f"do this)")
    # in chunks: isfinite makes temporaries the size of the whole set
    if not all(torch.isfinite(c).all() for c in t.split(256)):
        bad = ((~torch.isfinite(t)).flatten(1).any(1).nonzero()
               .flatten()[:5].tolist())
        raise ValueError(f"images contain NaN or inf (in images "
                         f"{bad}{' ...' if len(bad) == 5 else ''})")
    return t.float()

def check_annotations(annotations: Array,
                      num_classes: int | None = None) -> torch.Tensor:
    """Class-index masks (N, R, H, W), R >= 1, integer or bool -> uint8 or
    int64 tensor; labels in [0, num_classes) (default: any label >= 0)."""
    t = _as_tensor(annotations, "annotations")
    if t.ndim != 4:
        raise ValueError(f"annotations must have 4 dims (N, R, H, W), "
                         f"got shape {tuple(t.shape)}")
    if t.shape[1] < 1:
        raise ValueError(f"annotations need at least one rater per image "
                         f"(R >= 1), got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex():
        raise ValueError(f"annotations must hold integer class indices, got "
                         f"dtype {t.dtype} (convert with .long() if the "
                         f"values are whole numbers)")
    t = t.to(torch.uint8) if t.dtype == torch.bool else t
    lo, hi = (int(t.min()), int(t.max())) if t.numel() else (0, 0)
    if lo < 0:
        raise ValueError(f"annotation labels must be >= 0, got min {lo}")
    if num_classes is not None and hi >= num_classes:
        raise ValueError(f"annotation labels must be in [0, "
                         f"{num_classes - 1}] for num_classes={num_classes}, "
                         f"got max {hi}")
    # uint8 keeps LIDC-sized sets small (int64 is 8x larger); items are int64
    return t.to(torch.uint8) if hi < 256 else t.long()

class MultiAnnotatorDataset(Dataset):
    """Images (N, C, H, W) float with R class-index masks (N, R, H, W) each.
    ``annotation="random"`` picks one of the R raters on every access, from
    torch's global RNG (``fit``'s seed makes it reproducible); an int r always
    gives rater r. ``transform(image, mask) -> (image, mask)`` is applied to
    every item (e.g. flips). Labels must be < ``num_classes`` (default: the
    largest label + 1, at least 2). Attributes: ``images`` float32,
    ``annotations`` (uint8 when labels fit), ``num_classes``, ``num_raters``,
    ``ids`` (names, when read from files), ``groups`` (the patient of each
    item, for LIDC: split with :func:`probunet.lidc.split_by_group`)."""

    def __init__(self, images: Array, annotations: Array,
                 annotation: str | int = "random",
                 transform: Callable[[torch.Tensor, torch.Tensor], tuple[
                     torch.Tensor, torch.Tensor]] | None = None,
                 num_classes: int | None = None):
        self.images = check_images(images)
        self.annotations = check_annotations(annotations, num_classes)
        n, r, h, w = self.annotations.shape
        if self.images.shape[0] != n or self.images.shape[-2:] != (h, w):
            raise ValueError(f"images {tuple(self.images.shape)} and "
                             f"annotations {tuple(self.annotations.shape)} "
                             f"must have the same N, H and W")
        if n < 1:
            raise ValueError("the dataset is empty (N = 0)")
        if annotation != "random" and not (isinstance(annotation, int)
                                           and 0 <= annotation < r):
            raise ValueError(f"annotation must be 'random' or a rater index "
                             f"in [0, {r - 1}], got {annotation!r}")
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (binary segmentation "
                             f"is 2 classes), got {num_classes}")
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable f(image, mask) -> "
                             f"(image, mask), got {type(transform).__name__}")
        self.annotation, self.transform = annotation, transform
        if num_classes is None:
            check_labels_are_classes(self.annotations)
        self.num_classes = (num_classes
                            or max(2, int(self.annotations.max()) + 1))
        self.num_raters = r
        self.ids: list[str] | None = None
        self.groups: list[str] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        r = (int(torch.randint(self.num_raters, ()))
             if self.annotation == "random" else self.annotation)
        image, mask = self.images[i], self.annotations[i, r].long()
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask

    def subset(self, indices: Array | list[int]) -> MultiAnnotatorDataset:
        """The items ``indices`` as a dataset with the same options."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        if idx.ndim != 1 or len(idx) == 0:
            raise ValueError(f"indices must be a non-empty 1-D list, got "
                             f"shape {tuple(idx.shape)}")
        out = copy.copy(self)
        out.images, out.annotations = self.images[idx], self.annotations[idx]
        for name in ("ids", "groups"):
            if getattr(self, name) is not None:
                setattr(out, name, [getattr(self, name)[i] for i in idx])
        return out

    @classmethod
    def from_lidc_crops(cls, root: str | Path, split: str,
                        crop: int | None = 128, augment: bool = False,
                        progress: bool = True,
                        **kwargs) -> MultiAnnotatorDataset:
        """A split ("train", "val", "test") of the HPU-Net paper's LIDC
        crops (:mod:`probunet.lidc`). ``augment=True`` keeps the 180x180
        tiles and draws a random ``crop`` window and flips on every access
        (training); else the arrays are centre-cropped to ``crop``
        (evaluation; None keeps the tiles). ``groups``: the patients."""
        from .lidc import as_dataset, read_lidc_crops
        arrays = read_lidc_crops(root, split, progress)
        return as_dataset(cls, arrays, crop, augment, **kwargs)

    @classmethod
    def from_lidc_pickle(cls, path_or_dir: str | Path,
                         crop: int | None = None, augment: bool = False,
                         progress: bool = True,
                         **kwargs) -> MultiAnnotatorDataset:
        """The LIDC pickle of stefanknegt/Probabilistic-Unet-Pytorch (a
        file or a folder of them), read without running any code it holds;
        ``crop`` and ``augment`` as in :meth:`from_lidc_crops`.
        ``groups``: the series ids."""
        from .lidc import as_dataset, read_lidc_pickle
        arrays = read_lidc_pickle(path_or_dir, progress)
        return as_dataset(cls, arrays, crop, augment, **kwargs)

    @classmethod
    def from_npz(cls, path: str | Path, images_key: str = "images",
                 annotations_key: str = "annotations",
                 **kwargs) -> "MultiAnnotatorDataset":
        """Read ``images`` and ``annotations`` arrays from a ``.npz`` file.
        Integer images (N, [C,] H, W) are scaled to [0, 1] by their dtype's
        maximum (uint8: / 255); ``kwargs`` go to the constructor."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        try:
            with np.load(path) as f:
                arrays = {k: f[k] for k in f.files
                          if k in (images_key, annotations_key)}
                files = sorted(f.files)
        except Exception as e:  # not a zip, a pickle, a truncated file...
            raise ValueError(f"cannot read {path} as a .npz file: {e}") from e
        missing = [k for k in (images_key, annotations_key)
                   if k not in arrays]
        if missing:
            raise ValueError(f"{path} has no arrays {missing}; "
                             f"it holds {files}")
        images, annotations = arrays[images_key], arrays[annotations_key]
        return cls(_scale_images(images), annotations, **kwargs)

    @classmethod
    def from_folders(cls, images_dir: str | Path, masks_dir: str | Path,
                     **kwargs) -> "MultiAnnotatorDataset":
        """Read images ``<id>.png`` and masks ``<id>_<rater>.png``; sets
        ``ids``. Images are grey (C = 1) or RGB (C = 3), 8 or 16 bit, scaled to
        [0, 1]; mask pixels are class indices (8-bit grey or palette), or
        exactly 0 and 255, read as 0 and 1. Every image needs the same raters
        (sorted by name), all files the same size."""
        from PIL import Image  # matplotlib's dependency: imported lazily

        images_dir, masks_dir = Path(images_dir), Path(masks_dir)
        for d in (images_dir, masks_dir):
            if not d.is_dir():
                raise ValueError(f"no such folder: {d}")
        ids = sorted(p.stem for p in images_dir.glob("*.png"))
        if not ids:
            raise ValueError(f"no <id>.png images in {images_dir}")
        raters: dict[str, list[str]] = {i: [] for i in ids}
        pattern = re.compile(r"^(.+)_([^_]+)$")
        for p in sorted(masks_dir.glob("*.png")):
            m = pattern.match(p.stem)
            if m is None or m.group(1) not in raters:
                raise ValueError(f"mask {p.name} is not named <id>_<rater>"
                                 f".png for an image in {images_dir}")
            raters[m.group(1)].append(m.group(2))
        first = raters[ids[0]]
        for i in ids:
            if not raters[i]:
                raise ValueError(f"image {i}.png has no masks "
                                 f"{i}_<rater>.png in {masks_dir}")
            if raters[i] != first:
                raise ValueError(f"image {i} has raters {raters[i]}, but "
                                 f"{ids[0]} has {first}: every image needs "
                                 f"the same raters")

        def read(path: Path) -> np.ndarray:
            try:
                with Image.open(path) as im:
                    return np.asarray(im.convert("RGB") if im.mode in (
                        "RGBA", "LA", "CMYK") else im)
            except Exception as e:
                raise ValueError(
                    f"cannot read {path} as a PNG image: {e}") from e

        images, annotations = [], []
        for i in ids:
            image = read(images_dir / f"{i}.png")
            image = (image[None] if image.ndim == 2
                     else image.transpose(2, 0, 1))  # (C, H, W)
            masks = [read(masks_dir / f"{i}_{r}.png") for r in first]
            for r, m in zip(first, masks):
                if m.ndim != 2:
                    raise ValueError(
                        f"mask {i}_{r}.png must be a single-channel PNG of "
                        f"class indices, got shape {m.shape}")
                if m.shape != image.shape[1:]:
                    raise ValueError(
                        f"mask {i}_{r}.png is {m.shape[0]}x{m.shape[1]}, its "
                        f"image {i}.png {image.shape[1]}x{image.shape[2]}")
            if images and image.shape != images[0].shape:
                raise ValueError(
                    f"image {i}.png has shape (C, H, W) {image.shape}, "
                    f"{ids[0]}.png {images[0].shape}: all images must have "
                    f"the same size and channels (crop or pad them first)")
            images.append(image)
            annotations.append(np.stack(masks))
        dataset = cls(_scale_images(np.stack(images)),
                      _png_labels(np.stack(annotations).astype(np.int64)),
                      **kwargs)
        dataset.ids = ids
        return dataset

def check_labels_are_classes(annotations: torch.Tensor) -> None:
    """Without ``num_classes``, labels must be the classes 0..K-1: masks drawn
    as 0/255 would make 256 classes. Raises, listing the values found."""
    values = torch.unique(annotations).tolist()
    if values[-1] >= 2 and values[-1] + 1 != len(values):
        shown = values if len(values) <= 10 else values[:10] + ["..."]
        hint = " (0/255 masks: divide by 255)" if 255 in values else ""
        raise ValueError(f"annotation labels must be the class indices "
                         f"0..K-1, found values {shown}{hint}; pass "
                         f"num_classes=K if some classes are simply absent")

def _png_labels(annotations: np.ndarray) -> np.ndarray:
    """Masks read from PNGs: exactly {0, 255} becomes {0, 1}."""
    if set(np.unique(annotations).tolist()) == {0, 255}:
        return (annotations == 255).astype(np.uint8)
    return annotations

def _scale_images(images: np.ndarray) -> np.ndarray:
    """Integer images -> float32 [0, 1]; (N, H, W) -> (N, 1, H, W)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if np.issubdtype(images.dtype, np.integer):
        images = images.astype(np.float32) / np.iinfo(images.dtype).max
    elif images.dtype == bool:
        images = images.astype(np.float32)
    return images

def pad_to_multiple(x: torch.Tensor, multiple: int,
                    value: float = 0) -> torch.Tensor:
    """Pad (..., H, W) at the bottom and right to multiples of ``multiple``:
    the U-Net needs H and W divisible by 2**(len(channels) - 1). Pad images and
    masks alike (``value=0`` pads masks with the background); crop predictions
    back with ``[..., :H, :W]``."""
    if not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"multiple must be a positive int, got {multiple!r}")
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        shape = (tuple(x.shape) if isinstance(x, torch.Tensor)
                 else type(x).__name__)
        raise ValueError(f"expected a tensor with at least 2 dims "
                         f"(..., H, W), got {shape}")
    ph, pw = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    if ph == pw == 0:
        return x
    # F.pad's constant mode needs a float, or (torch 2.x) a leading dim
    flat = x.reshape(-1, *x.shape[-2:])
    padded = F.pad(flat, (0, pw, 0, ph), value=value)
    return padded.reshape(*x.shape[:-2], *padded.shape[-2:])
