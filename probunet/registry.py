"""Every model class that ``fit`` can train and save, by name, so that checkpoints and shipped weights
rebuild them; and the device they run on."""
from __future__ import annotations

import torch

from .model import ProbabilisticUNet
from .toy_cvae import ToyCVAE
from .unet import UNet

MODELS: dict[str, type[torch.nn.Module]] = {cls.__name__: cls for cls in (ProbabilisticUNet, UNet, ToyCVAE)}


def build_model(class_name: str, config: dict) -> torch.nn.Module:
    """A fresh model of the named class (a key of ``MODELS``) built with ``config`` (its ``model.config``)."""
    if class_name not in MODELS:
        raise ValueError(f"unknown model class {class_name!r}; known: {sorted(MODELS)}")
    return MODELS[class_name](**config)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; anything else is passed to torch.device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
