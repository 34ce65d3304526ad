"""The LIDC-like lesions, written in the two forms LIDC-IDRI is shared in.

:mod:`probunet.lidc` reads the HPU-Net paper's PNG crops and the PyTorch
port's pickle. The real files cannot be downloaded where the book's tests
run, so these functions write the lesions of :mod:`probunet.toy.lesions`
in exactly those layouts (180x180 tiles, ``_l0``..``_l3`` or ``_l1``..
``_l4``, 0/255 masks, one folder per patient; or a dict of float images and
4 binary masks with a series id), for the loaders and the command line.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .lesions import generate_lesions


def lidc_like(n: int, seed: int, size: int = 180,
              per_patient: int = 4) -> tuple[dict[str, np.ndarray],
                                             list[str]]:
    """``n`` lesions of ``size`` pixels (:func:`generate_lesions`) and a
    patient name for each, ``per_patient`` consecutive items per patient."""
    if per_patient < 1:
        raise ValueError(f"per_patient must be >= 1, got {per_patient}")
    arrays = generate_lesions(n, size=size, seed=seed)
    patients = [f"LIDC-LIKE-{seed:04d}-{i // per_patient:04d}"
                for i in range(n)]
    return arrays, patients


def write_lidc_crops(root: str | Path, split: str,
                     arrays: dict[str, np.ndarray], patients: list[str],
                     first_grader: int = 0) -> Path:
    """Write images uint8 (N, H, W) and annotations (N, 4, H, W) as
    ``root/split/images/<patient>/z-<k>_c0.png`` and
    ``root/split/gt/<patient>/z-<k>_c0_l<g>.png`` (0/255), graders
    numbered from ``first_grader``. Returns ``root``."""
    from PIL import Image

    root = Path(root)
    images, annotations = arrays["images"], arrays["annotations"]
    for i, (image, masks) in enumerate(zip(images, annotations)):
        name = f"z-{i:05d}.0_c0"
        for sub in ("images", "gt"):
            (root / split / sub / patients[i]).mkdir(parents=True,
                                                     exist_ok=True)
        Image.fromarray(image).save(
            root / split / "images" / patients[i] / f"{name}.png")
        for g, mask in enumerate(masks, start=first_grader):
            Image.fromarray((mask > 0).astype(np.uint8) * 255).save(
                root / split / "gt" / patients[i] / f"{name}_l{g}.png")
    return root


def write_lidc_pickle(path: str | Path, arrays: dict[str, np.ndarray],
                      series: list[str]) -> Path:
    """Write the arrays as the port's pickle: ``key -> {"image": float32
    (H, W) in [0, 1], "masks": 4 uint8 (H, W) 0/1, "series_uid": str}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        f"{series[i]}_slice{i:05d}": {
            "image": arrays["images"][i].astype(np.float32) / 255,
            "masks": [m.astype(np.uint8) for m in arrays["annotations"][i]],
            "series_uid": series[i],
        } for i in range(len(series))}
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path
