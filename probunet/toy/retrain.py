"""Train a shipped toy model again, from scratch, with the recipe stored in its weights.

The book's experiments load shipped weights so that they run in seconds; ``retrain`` is
the "train it yourself" switch: the same class, configuration and recipe, a seed of your
choice, and your own CPU or GPU.
"""
from __future__ import annotations

import time

import torch

from ..pretrained import load_pretrained
from ..registry import build_model
from ..train import fit, seed_everything
from .shapes import ToyAmbiguousDataset

RECIPE_KEYS = ("batch_size", "lr", "lr_schedule", "beta")  # the recipe entries that are arguments of fit


def retrain(name: str, seed: int = 0, steps: int | None = None, device: str | torch.device = "auto",
            progress: bool = True) -> torch.nn.Module:
    """A fresh model like the shipped ``name``, trained on the toy training set with its recipe.

    ``steps`` overrides the recipe's number of steps (to try it quickly). Returns the model in
    eval mode on ``device``, with ``model.info`` saying how it was trained (as shipped weights do).
    """
    shipped = load_pretrained(name, device="cpu")
    recipe = shipped.info.get("recipe", {})
    missing = [k for k in RECIPE_KEYS + ("steps", "annotation") if k not in recipe]
    if missing:
        raise ValueError(f"the weights {name!r} store no {', '.join(missing)} in their recipe: cannot retrain them")
    steps = recipe["steps"] if steps is None else steps
    seed_everything(seed)  # the initial weights too, not only the batches
    model = build_model(type(shipped).__name__, shipped.config)
    train = ToyAmbiguousDataset("train", annotation=recipe["annotation"])
    start = time.perf_counter()
    fit(model, train, steps=steps, seed=seed, device=device, progress=progress, log_every=100,
        **{k: recipe[k] for k in RECIPE_KEYS})
    model.info = {"recipe": dict(recipe, steps=steps, seed=seed), "device": str(next(model.parameters()).device),
                  "torch": torch.__version__, "train_seconds": round(time.perf_counter() - start, 1),
                  "made_by": f"probunet.toy.retrain({name!r})"}
    return model.eval()
