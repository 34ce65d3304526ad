"""Weights shipped with the package, so that the chapters need no download
and no long training.

``python benchmarks/toy.py --export ...`` makes them with the one toy recipe
(:data:`probunet.toy.RECIPE`); each file records its recipe, seed, steps,
torch version and training seconds in ``model.info``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import baselines, toy  # noqa: F401  (registers their classes)
from ..checkpoint import load_model

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def available() -> list[str]:
    """Names of the shipped weights, e.g. ``["probunet_toy", ...]``."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def load_pretrained(
    name: str = "probunet_toy", device: str | torch.device = "auto"
) -> torch.nn.Module:
    """A shipped model with its weights, in eval mode, on ``device``.

    ``model.info`` says how it was made (recipe, seed, steps, seconds).
    """
    path = WEIGHTS_DIR / f"{name}.pt"
    if not path.exists():
        raise ValueError(
            f"no shipped weights named {name!r}; available: {available()}"
        )
    return load_model(path, device)
