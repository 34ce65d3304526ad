"""Weights shipped with the package, so the book's experiments need no download and no long training.

``python benchmarks/toy.py --export ...`` and ``benchmarks/beta_latent.py`` make them; ``load_pretrained`` reads them on any device.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .registry import build_model, resolve_device

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def save_weights(model: torch.nn.Module, path: str | Path, info: dict | None = None) -> None:
    """Write a model's class, config and weights (no optimizer state), plus free-form ``info``."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"model_class": type(model).__name__, "model_config": model.config, "model": state,
                "info": info or {}}, path)


def available() -> list[str]:
    """Names of the shipped weights, e.g. ``["probunet_toy", "unet_toy"]``."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def load_pretrained(name: str = "probunet_toy", device: str | torch.device = "auto") -> torch.nn.Module:
    """Build a shipped model with its weights, in eval mode, on ``device`` ("auto": CUDA if present).

    Its ``info`` dict (how it was trained) is attached as ``model.info``.
    """
    path = WEIGHTS_DIR / f"{name}.pt"
    if not path.exists():
        raise ValueError(f"no shipped weights named {name!r}; available: {available()}")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(saved["model_class"], saved["model_config"])
    model.load_state_dict(saved["model"])
    model.info = saved["info"]
    return model.to(resolve_device(device)).eval()
