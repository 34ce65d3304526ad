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
from ..train import RECIPE

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


ANNOTATIONS = {"fresh": "a fresh annotation from the true law",
               "stored": "one of the 4 stored raters"}


def describe(model: torch.nn.Module, name: str) -> str:
    """How a shipped model was made, read from what its file records, in
    lines of at most 79 characters: its class, recipe and seed, and what it
    was trained on. The chapters print it next to every model they load."""
    info = getattr(model, "info", None) or {}
    recipe = info.get("recipe")
    if recipe is None:
        return f"shipped {name}: {type(model).__name__}, no recipe recorded"
    changed = [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
               for k, v in recipe.items()
               if k != "seed" and RECIPE.to_dict().get(k) != v]
    how = "the one recipe" + (f", except {', '.join(changed)}"
                              if changed else "")
    data = {"shapes": "the shapes", "exclusive": "the exclusive objects"}
    made = ("retrained" if info.get("made_by") == "probunet.toy.retrain"
            else "shipped")
    lines = [f"{made} {name}: {type(model).__name__}",
             f"  seed {recipe['seed']} of {how}",
             f"  ({recipe['steps']:,} steps of batch {recipe['batch_size']}, "
             f"Adam lr {recipe['lr']:g} {recipe['lr_schedule']}, beta "
             f"{recipe['beta']:g})",
             f"  on {data.get(info.get('dataset', 'shapes'))}, "
             f"{ANNOTATIONS[info.get('annotation', 'fresh')]} per step"]
    return "\n".join(lines)
