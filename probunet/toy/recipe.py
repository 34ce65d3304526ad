"""The one recipe that trains every toy model the book analyses.

Every shipped toy model (``probunet.book.load_pretrained``) was trained by
``benchmarks/toy.py`` or ``benchmarks/rivals.py`` with :data:`RECIPE` and
seed 0, on the shapes' training set (or the one its weights name), a fresh
annotation drawn from the true law at every step (``annotation="fresh"``)
unless its weights say otherwise. The weights store
the recipe; :func:`retrain` runs it again, for the "train it yourself"
switch of the chapters.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from ..checkpoint import build_model
from ..train import RECIPE, TrainConfig, fit, seed_everything
from .exclusive import ExclusiveObjectsDataset
from .shapes import ToyAmbiguousDataset

__all__ = ["RECIPE", "retrain", "toy_train_set"]  # RECIPE lives in train


def toy_train_set(annotation: str = "fresh", dataset: str = "shapes"
                  ) -> ToyAmbiguousDataset | ExclusiveObjectsDataset:
    """A toy training set as the recipe uses it: ``"shapes"`` or
    ``"exclusive"`` (the mutually exclusive objects)."""
    sets = {"shapes": ToyAmbiguousDataset,
            "exclusive": ExclusiveObjectsDataset}
    if dataset not in sets:
        raise ValueError(f"dataset must be one of {sorted(sets)}, "
                         f"got {dataset!r}")
    return sets[dataset]("train", annotation=annotation)


def retrain(
    model: torch.nn.Module,
    seed: int | None = None,
    steps: int | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> torch.nn.Module:
    """A fresh model like ``model``, trained again with its stored recipe.

    ``model`` is a shipped or loaded model whose ``info`` holds the recipe
    (``info["recipe"]``, a :class:`TrainConfig` as a dict), the
    annotation mode (``info["annotation"]``) and, for models of the
    rivals benchmark, the data set (``info["dataset"]``, default the
    shapes). ``seed`` and ``steps``
    override the recipe's. Returns the new model in eval mode with its own
    ``info``.
    """
    info = getattr(model, "info", None)
    if not isinstance(info, dict) or "recipe" not in info:
        raise ValueError("model.info holds no recipe: cannot retrain it")
    cfg = TrainConfig(**info["recipe"])
    cfg = dataclasses.replace(
        cfg, seed=cfg.seed if seed is None else seed,
        steps=cfg.steps if steps is None else steps)
    seed_everything(cfg.seed)  # the initial weights too, not only batches
    fresh = build_model(type(model).__name__, model.config)
    annotation = info.get("annotation", "fresh")
    dataset = info.get("dataset", "shapes")
    start = time.perf_counter()
    fit(fresh, toy_train_set(annotation, dataset), cfg, device=device,
        progress=progress, log_every=100)
    fresh.info = {
        "recipe": cfg.to_dict(), "annotation": annotation,
        "dataset": dataset,
        "torch": str(torch.__version__),
        "device": str(next(fresh.parameters()).device),
        "train_seconds": round(time.perf_counter() - start, 1),
        "made_by": "probunet.toy.retrain",
    }
    return fresh.eval()
