"""One checkpoint format for every model, safe to load from anywhere.

A checkpoint is a dict of tensors and plain Python values, written by
``torch.save``::

    format        "probunet-checkpoint"     what the file is
    version       1
    model_class   "ProbabilisticUNet"       a class registered below
    model_config  {...}                     its constructor's arguments
    model         state_dict                the weights
    info          {...}                     how it was made (recipe, seed, ...)
    training      {...} or absent           what resuming needs (see train)

Loading uses ``torch.load(weights_only=True)``: unpickling a file from
elsewhere cannot run code. A file that is not such a checkpoint raises a
``ValueError`` that says what it is.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

FORMAT, VERSION = "probunet-checkpoint", 1
MODELS: dict[str, type[nn.Module]] = {}

def register_model(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: make ``cls`` loadable by name from checkpoints.

    A registered class has a ``config`` dict attribute holding its
    constructor's arguments.
    """
    MODELS[cls.__name__] = cls
    return cls

def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else the CPU; else a checked device."""
    if str(device) == "auto":
        cuda = torch.cuda.is_available()
        return torch.device("cuda" if cuda else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', "
                         f"got {device!r}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r}, but torch.cuda.is_available() is "
            f"False: use device='auto' or 'cpu'")
    return device

def save_checkpoint(path: str | Path, model: nn.Module,
                    info: dict | None = None, training: dict | None = None,
                    half: bool = False) -> None:
    """Write ``model`` (class, config, weights), ``info`` and ``training``.

    ``half=True`` stores float weights as float16 (half the file; loading
    casts them back to the model's dtype). Written to a temporary file and
    renamed, so an interrupted save never leaves a truncated file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": type(model).__name__,
        "model_config": dict(model.config),
        "model": {
            k: v.detach().cpu().half() if half and v.is_floating_point()
            else v.detach().cpu()
            for k, v in model.state_dict().items()
        },
        "info": dict(info or {}),
    }
    if training is not None:
        state["training"] = training
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, on the CPU.

    Raises ValueError for a missing, truncated, garbage or foreign file,
    a bare state_dict, or one that holds objects other than tensors and
    plain containers (which could run code when unpickled).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such checkpoint file: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = [line.strip() for line in str(e).splitlines()
                 if "Unsupported global" in line]
        if not found:  # garbage, or a plain pickle: never unpickled here
            raise ValueError(
                f"{path} is not a readable torch file (garbage, or a plain "
                f"pickle, which is not unpickled since it could run code)"
            ) from e
        raise ValueError(
            f"{path} holds objects other than tensors and plain values; "
            f"refusing to unpickle them (that could run code). {found[0]}"
        ) from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"{path} is not a readable torch file (truncated or not a "
            f"checkpoint): {e}") from e
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT:
        if ckpt.get("version") != VERSION:
            raise ValueError(
                f"{path} is a probunet checkpoint of version "
                f"{ckpt.get('version')!r}; this package reads {VERSION}")
        return ckpt
    if isinstance(ckpt, dict) and ckpt and all(
        isinstance(v, torch.Tensor) for v in ckpt.values()
    ):
        raise ValueError(
            f"{path} is a bare state_dict ({len(ckpt)} tensors), not a "
            f"probunet checkpoint: build the model yourself and call "
            f"model.load_state_dict(torch.load(path, weights_only=True))")
    kind = type(ckpt).__name__
    keys = sorted(map(str, ckpt))[:5] if isinstance(ckpt, dict) else ""
    raise ValueError(
        f"{path} is not a probunet checkpoint: it holds a {kind} {keys}")

def build_model(class_name: str, config: dict) -> nn.Module:
    """A fresh model of a registered class, built with its ``config``."""
    if class_name not in MODELS:
        raise ValueError(
            f"unknown model class {class_name!r}; registered: "
            f"{sorted(MODELS)}. Import the module that defines it first "
            f"(the rivals: import probunet.baselines), or pass "
            f"model_class=")
    return MODELS[class_name](**config)

def load_model(path: str | Path, device: str | torch.device = "auto",
               model_class: type[nn.Module] | None = None) -> nn.Module:
    """The model saved in a checkpoint, with its weights, in eval mode.

    ``model_class`` overrides the registry (for a class of your own).
    The file's ``info`` (how the model was made) is ``model.info``.
    """
    ckpt = load_checkpoint(path)
    if model_class is None:
        model = build_model(ckpt["model_class"], ckpt["model_config"])
    else:
        model = model_class(**ckpt["model_config"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise ValueError(f"{path}: the weights do not fit: {e}") from e
    model.info = ckpt["info"]
    return model.to(resolve_device(device)).eval()
