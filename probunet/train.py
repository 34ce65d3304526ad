"""The training loop shared by the Probabilistic U-Net and the U-Net baseline.

``fit`` draws minibatches from any Dataset of ``(image (C, H, W), mask (H, W))``
pairs, calls ``model.loss(x, y, **loss_kwargs)`` and steps Adam. All randomness (batch
order, the dataset's annotation draws, the posterior samples) comes from torch's
global RNG, seeded once by ``seed`` and stored in every checkpoint, so a run
resumed from a checkpoint on the CPU continues exactly as if never stopped.
"""
from __future__ import annotations

import math
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate
from tqdm.auto import tqdm

from .model import ProbabilisticUNet
from .unet import UNet

MODELS = {"ProbabilisticUNet": ProbabilisticUNet, "UNet": UNet}


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; anything else is passed to torch.device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def lr_at(step: int, total: int, lr: float, schedule: str, warmup: int = 0) -> float:
    """Learning rate at ``step`` of ``total``: linear warm-up, then "constant", "cosine" (to 1% of lr) or "step" (x0.1 at 60% and 85%)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))
    if schedule == "step":
        return lr * (0.1 ** ((t >= 0.6) + (t >= 0.85)))
    raise ValueError(f"unknown lr schedule {schedule!r}; choose 'constant', 'cosine' or 'step'")


def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    config: dict, history: dict[str, list[float]], sampler_state: dict | None = None) -> None:
    """Write model, optimizer, step, config, history and RNG states atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model_class": type(model).__name__, "model_config": model.config, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "step": step, "config": config, "history": history,
        "sampler": sampler_state, "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (a dict; see its keys there)."""
    return torch.load(path, map_location=map_location, weights_only=False)


def load_model(path: str | Path, device: str | torch.device = "auto") -> torch.nn.Module:
    """Rebuild the model saved in a checkpoint, with its weights, on ``device``, in eval mode."""
    ckpt = load_checkpoint(path)
    model = MODELS[ckpt["model_class"]](**ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return model.to(resolve_device(device)).eval()


class _EpochSampler:
    """Batches of indices: a fresh permutation of the dataset each epoch, drawn from torch's global RNG."""

    def __init__(self, n: int, batch_size: int):
        self.n, self.batch_size, self.order, self.pos = n, batch_size, torch.empty(0, dtype=torch.long), 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > len(self.order):
            self.order, self.pos = torch.randperm(self.n), 0
        batch = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return batch

    def state_dict(self) -> dict:
        return {"order": self.order.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.order, self.pos = state["order"].clone(), state["pos"]


def fit(model: torch.nn.Module, dataset: Dataset, *, steps: int | None = None, epochs: int | None = None,
        batch_size: int = 32, lr: float = 1e-3, lr_schedule: str = "cosine", warmup: int = 0, beta: float = 1.0,
        loss_kwargs: dict | None = None, weight_decay: float = 0.0, seed: int = 0, device: str | torch.device = "auto",
        checkpoint: str | Path | None = None, checkpoint_every: int = 500, resume: bool = False,
        max_seconds: float | None = None, progress: bool = True) -> dict[str, list[float]]:
    """Train ``model`` on ``dataset`` with Adam and return the history of every step's loss terms.

    Give ``steps`` or ``epochs`` (an epoch is len(dataset) // batch_size steps). ``beta`` weighs the
    KL term of the Probabilistic U-Net (ignored for the U-Net); ``loss_kwargs`` go to ``model.loss``
    as well (e.g. ``{"analytic_kl": False}``). With ``checkpoint`` set,
    the state is saved every ``checkpoint_every`` steps and at the end; ``resume=True`` continues
    from that file when it exists. ``max_seconds`` stops early (the schedule still spans ``steps``).
    History keys: "step", "lr", "seconds", and the loss terms ("total", "recon"[, "kl"]).
    """
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps or epochs")
    if batch_size < 1 or batch_size > len(dataset):
        raise ValueError(f"batch_size must be in [1, len(dataset) = {len(dataset)}], got {batch_size}")
    total = steps if steps is not None else epochs * (len(dataset) // batch_size)
    if total < 1:
        raise ValueError(f"need at least one training step, got steps={steps}, epochs={epochs}")
    lr_at(0, total, lr, lr_schedule)  # validates the schedule name
    config = dict(steps=total, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, warmup=warmup, beta=beta,
                  loss_kwargs=dict(loss_kwargs or {}), weight_decay=weight_decay, seed=seed)
    device = resolve_device(device)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sampler = _EpochSampler(len(dataset), batch_size)
    if beta != 1.0 and not hasattr(model, "elbo"):
        warnings.warn(f"beta={beta} is ignored: {type(model).__name__} has no elbo() (no KL term to weigh)", stacklevel=2)
    loss_kwargs = ({"beta": beta} if hasattr(model, "elbo") else {}) | dict(loss_kwargs or {})
    history: dict[str, list[float]] = {"step": [], "lr": [], "seconds": []}
    start = 0
    seed_everything(seed)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint, map_location=device)
        if ckpt["model_class"] != type(model).__name__ or ckpt["model_config"] != model.config:
            raise ValueError(f"checkpoint {checkpoint} holds a {ckpt['model_class']} {ckpt['model_config']}, "
                             f"not this {type(model).__name__} {model.config}")
        if ckpt["config"] != config:
            changed = {k: (ckpt["config"].get(k), v) for k, v in config.items() if ckpt["config"].get(k) != v}
            raise ValueError(f"cannot resume {checkpoint} with other training settings (saved, given): {changed}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, history = ckpt["step"], ckpt["history"]
        sampler.load_state_dict(ckpt["sampler"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        if ckpt["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["cuda_rng"]])
    t0 = time.perf_counter() - (history["seconds"][-1] if history["seconds"] else 0.0)
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    bar = tqdm(range(start, total), initial=start, total=total, disable=not progress, desc=type(model).__name__,
               mininterval=0.5)
    step = start
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, lr, lr_schedule, warmup)
        x, y = default_collate([dataset[int(i)] for i in sampler.next()])
        terms = model.loss(x.to(device), y.to(device), **loss_kwargs)
        if not torch.isfinite(terms["total"]):
            raise FloatingPointError(f"loss became {terms['total'].item()} at step {step}: lower lr or check the data")
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        history["step"].append(step + 1)
        history["lr"].append(optimizer.param_groups[0]["lr"])
        history["seconds"].append(time.perf_counter() - t0)
        for name, value in terms.items():
            history.setdefault(name, []).append(float(value.detach()))
        if progress and (step % 20 == 0 or step == total - 1):
            bar.set_postfix({k: f"{v.item():.3g}" for k, v in terms.items()}, refresh=False)
        if checkpoint is not None and (step + 1) % checkpoint_every == 0:
            save_checkpoint(checkpoint, model, optimizer, step + 1, config, history, sampler.state_dict())
        if deadline is not None and time.perf_counter() > deadline:
            step += 1
            break
    else:
        step = total
    bar.close()
    if checkpoint is not None:
        save_checkpoint(checkpoint, model, optimizer, step, config, history, sampler.state_dict())
    model.eval()
    return history
