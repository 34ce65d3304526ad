"""Your own data: images with several annotations each, as a torch Dataset.

A multi-annotator dataset holds

    images       float (N, C, H, W)   intensities in a small range (e.g. [0, 1])
    annotations  int   (N, R, H, W)   R class-index masks per image, labels in [0, K)

and yields ``(image (C, H, W), one annotation (H, W) long)`` for training: a
random rater on each access (so that over many steps the model sees every
rater's answer), or a fixed one. Evaluation reads all R annotations from
``.annotations``. Bad input raises a ``ValueError`` that says what is wrong.
"""
from __future__ import annotations

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
        raise ValueError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")
    return torch.from_numpy(x if x.flags.writeable else x.copy())  # torch warns on read-only arrays


def check_images(images: Array) -> torch.Tensor:
    """Float images (N, C, H, W), finite -> float32 tensor; anything else raises ValueError."""
    t = _as_tensor(images, "images")
    if t.ndim != 4:
        raise ValueError(f"images must have 4 dims (N, C, H, W), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"images must be float (N, C, H, W), got dtype {t.dtype}: scale integer images "
                         f"first, e.g. images / 255 for uint8 (from_npz and from_folders do this)")
    if not torch.isfinite(t).all():
        bad = (~torch.isfinite(t)).flatten(1).any(1).nonzero().flatten()[:5].tolist()
        raise ValueError(f"images contain NaN or inf (in images {bad}{' ...' if len(bad) == 5 else ''})")
    return t.float()


def check_annotations(annotations: Array, num_classes: int | None = None) -> torch.Tensor:
    """Class-index masks (N, R, H, W) of any integer (or bool) dtype -> uint8 or int64 tensor.

    Labels must lie in [0, num_classes) (default: any label >= 0); R must be >= 1.
    """
    t = _as_tensor(annotations, "annotations")
    if t.ndim != 4:
        raise ValueError(f"annotations must have 4 dims (N, R, H, W), got shape {tuple(t.shape)}")
    if t.shape[1] < 1:
        raise ValueError(f"annotations need at least one rater per image (R >= 1), got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex():
        raise ValueError(f"annotations must hold integer class indices, got dtype {t.dtype} "
                         f"(convert with .long() if the values are whole numbers)")
    t = t.to(torch.uint8) if t.dtype == torch.bool else t
    lo, hi = (int(t.min()), int(t.max())) if t.numel() else (0, 0)
    if lo < 0:
        raise ValueError(f"annotation labels must be >= 0, got min {lo}")
    if num_classes is not None and hi >= num_classes:
        raise ValueError(f"annotation labels must be in [0, {num_classes - 1}] for num_classes={num_classes}, got max {hi}")
    # uint8 keeps LIDC-sized sets small (int64 would be 8x larger); items are returned as int64
    return t.to(torch.uint8) if hi < 256 else t.long()


class MultiAnnotatorDataset(Dataset):
    """Images with R annotations each, yielding ``(image (C, H, W) float, mask (H, W) long)``.

    Args:
        images: float (N, C, H, W).
        annotations: class-index masks (N, R, H, W), any integer dtype.
        annotation: ``"random"`` (default) picks one of the R raters on every access, from
            torch's global RNG, so ``fit``'s seed makes it reproducible; an int r always gives rater r.
        transform: optional ``f(image, mask) -> (image, mask)``, applied to every item (e.g. flips).
        num_classes: K; labels must be < K. Default: the largest label + 1 (at least 2).

    Attributes: ``images`` float32 (N, C, H, W), ``annotations`` (N, R, H, W) (uint8 when
    labels fit), ``num_classes``, ``num_raters``, and ``ids`` (names, when read from files).
    """

    def __init__(self, images: Array, annotations: Array, annotation: str | int = "random",
                 transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
                 num_classes: int | None = None):
        self.images = check_images(images)
        self.annotations = check_annotations(annotations, num_classes)
        n, r, h, w = self.annotations.shape
        if self.images.shape[0] != n or self.images.shape[-2:] != (h, w):
            raise ValueError(f"images {tuple(self.images.shape)} and annotations {tuple(self.annotations.shape)} "
                             f"must have the same N, H and W")
        if n < 1:
            raise ValueError("the dataset is empty (N = 0)")
        if annotation != "random" and not (isinstance(annotation, int) and 0 <= annotation < r):
            raise ValueError(f"annotation must be 'random' or a rater index in [0, {r - 1}], got {annotation!r}")
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (binary segmentation is 2 classes), got {num_classes}")
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable f(image, mask) -> (image, mask), got {type(transform).__name__}")
        self.annotation, self.transform = annotation, transform
        self.num_classes = num_classes or max(2, int(self.annotations.max()) + 1)
        self.num_raters = r
        self.ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        r = int(torch.randint(self.num_raters, ())) if self.annotation == "random" else self.annotation
        image, mask = self.images[i], self.annotations[i, r].long()
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask

    @classmethod
    def from_npz(cls, path: str | Path, images_key: str = "images", annotations_key: str = "annotations",
                 **kwargs) -> "MultiAnnotatorDataset":
        """Read ``images`` and ``annotations`` arrays from a ``.npz`` file.

        Images may be float (N, C, H, W), or integer (N, H, W) / (N, C, H, W), which are scaled
        to [0, 1] by their dtype's maximum (uint8: / 255). Other arguments go to the constructor.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        try:
            with np.load(path) as f:
                arrays = {k: f[k] for k in f.files if k in (images_key, annotations_key)}
                files = sorted(f.files)
        except Exception as e:  # not a zip, a pickle, a truncated file...
            raise ValueError(f"cannot read {path} as a .npz file: {e}") from e
        missing = [k for k in (images_key, annotations_key) if k not in arrays]
        if missing:
            raise ValueError(f"{path} has no arrays {missing}; it holds {files}")
        images, annotations = arrays[images_key], arrays[annotations_key]
        return cls(_scale_images(images), annotations, **kwargs)

    @classmethod
    def from_folders(cls, images_dir: str | Path, masks_dir: str | Path, **kwargs) -> "MultiAnnotatorDataset":
        """Read PNG files: images ``<id>.png`` in ``images_dir``, masks ``<id>_<rater>.png`` in ``masks_dir``.

        Images are grey (C = 1) or RGB (C = 3), 8 or 16 bit, scaled to [0, 1]; mask pixels are
        class indices (8-bit grey or palette PNGs). Every image needs the same set of raters, and
        all files the same size. Ids are sorted; raters are sorted by name. Sets ``ids``.
        """
        from PIL import Image  # matplotlib's dependency; imported here so the package loads without it

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
                raise ValueError(f"mask {p.name} is not named <id>_<rater>.png for an image in {images_dir}")
            raters[m.group(1)].append(m.group(2))
        first = raters[ids[0]]
        for i in ids:
            if not raters[i]:
                raise ValueError(f"image {i}.png has no masks {i}_<rater>.png in {masks_dir}")
            if raters[i] != first:
                raise ValueError(f"image {i} has raters {raters[i]}, but {ids[0]} has {first}: every image needs the same raters")

        def read(path: Path) -> np.ndarray:
            try:
                with Image.open(path) as im:
                    return np.asarray(im.convert("RGB") if im.mode in ("RGBA", "LA", "CMYK") else im)
            except Exception as e:
                raise ValueError(f"cannot read {path} as a PNG image: {e}") from e

        images, annotations = [], []
        for i in ids:
            image = read(images_dir / f"{i}.png")
            image = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)  # (C, H, W)
            masks = [read(masks_dir / f"{i}_{r}.png") for r in first]
            for r, m in zip(first, masks):
                if m.ndim != 2:
                    raise ValueError(f"mask {i}_{r}.png must be a single-channel PNG of class indices, got shape {m.shape}")
                if m.shape != image.shape[1:]:
                    raise ValueError(f"mask {i}_{r}.png is {m.shape[0]}x{m.shape[1]}, its image {i}.png "
                                     f"{image.shape[1]}x{image.shape[2]}")
            if images and image.shape != images[0].shape:
                raise ValueError(f"image {i}.png has shape (C, H, W) {image.shape}, {ids[0]}.png {images[0].shape}: "
                                 f"all images must have the same size and channels (crop or pad them first)")
            images.append(image)
            annotations.append(np.stack(masks))
        dataset = cls(_scale_images(np.stack(images)), np.stack(annotations).astype(np.int64), **kwargs)
        dataset.ids = ids
        return dataset


def _scale_images(images: np.ndarray) -> np.ndarray:
    """Integer images -> float32 in [0, 1] by the dtype's maximum; (N, H, W) -> (N, 1, H, W)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if np.issubdtype(images.dtype, np.integer):
        images = images.astype(np.float32) / np.iinfo(images.dtype).max
    elif images.dtype == bool:
        images = images.astype(np.float32)
    return images


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float = 0) -> torch.Tensor:
    """Pad the last two dims (H, W) of ``x`` at the bottom and right up to multiples of ``multiple``.

    The U-Net needs H and W divisible by 2**(len(channels) - 1) (4 for the default three levels).
    Pad images and masks alike; ``value=0`` pads masks with the background class. Works on
    (..., H, W) tensors of any dtype; crop predictions back with ``[..., :H, :W]``.
    """
    if not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"multiple must be a positive int, got {multiple!r}")
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError(f"expected a tensor with at least 2 dims (..., H, W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    ph, pw = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    if ph == pw == 0:
        return x
    # F.pad's constant mode needs a float or (since torch 2.x) any dtype with >= 1 leading dim
    flat = x.reshape(-1, *x.shape[-2:])
    padded = F.pad(flat, (0, pw, 0, ph), value=value)
    return padded.reshape(*x.shape[:-2], *padded.shape[-2:])
