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
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm.auto import tqdm

from .evaluate import evaluate_annotations
from .registry import build_model, resolve_device


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    model = build_model(ckpt["model_class"], ckpt["model_config"])
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


class _Forever:
    """An endless batch sampler over an _EpochSampler, for a DataLoader with worker processes."""

    def __init__(self, sampler: _EpochSampler):
        self.sampler = sampler

    def __iter__(self):
        while True:
            yield self.sampler.next().tolist()


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
NEW_SETTING_DEFAULTS = dict(beta_warmup=0, clip_grad_norm=None, amp=None, log_every=1)


def _validate(model: torch.nn.Module, dataset, n: int, batch_size: int, seed: int) -> dict[str, float]:
    """GED and matched IoU of n prior samples per image of a validation set, without touching the training RNG."""
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
        torch.manual_seed(seed)
        scores = evaluate_annotations(model, dataset, n=n, batch_size=batch_size)
    model.train()
    ged = scores["ged_unbiased"] if math.isfinite(scores["ged_unbiased"]) else scores["ged_biased"]
    return {"val_ged": ged, "val_hm_iou": scores["hm_iou"]}


def fit(model: torch.nn.Module, dataset: Dataset, *, steps: int | None = None, epochs: int | None = None,
        batch_size: int = 32, lr: float = 1e-3, lr_schedule: str = "cosine", warmup: int = 0, beta: float = 1.0,
        beta_warmup: int = 0, loss_kwargs: dict | None = None, weight_decay: float = 0.0,
        clip_grad_norm: float | None = None, amp: str | None = None, seed: int = 0,
        device: str | torch.device = "auto", num_workers: int = 0, pin_memory: bool = False,
        checkpoint: str | Path | None = None, checkpoint_every: int = 500, resume: bool = False,
        val_dataset=None, val_every: int = 500, val_samples: int = 16, best_checkpoint: str | Path | None = None,
        log_every: int = 1, max_seconds: float | None = None, progress: bool = True) -> dict[str, list[float]]:
    """Train ``model`` on ``dataset`` with Adam and return the history of its loss terms.

    Give ``steps`` or ``epochs`` (an epoch is len(dataset) // batch_size steps).

    - Loss: ``beta`` weighs the KL term of the Probabilistic U-Net (ignored for the U-Net), raised
      linearly from 0 over the first ``beta_warmup`` steps if set; ``loss_kwargs`` go to
      ``model.loss`` as well (e.g. ``{"analytic_kl": False}``).
    - Optimisation: ``clip_grad_norm`` clips the gradients' total norm; ``amp="bf16"`` (CPU or
      CUDA) or ``"fp16"`` (CUDA, with loss scaling) runs the forward pass under autocast, while
      the KL, log sigma and the loss sums stay float32.
    - Data: ``num_workers`` > 0 loads batches in worker processes (``pin_memory`` speeds up the
      copy to a GPU). Then the workers draw the annotations, seeded from ``seed``: a run is
      reproducible, but a resumed one does not continue bit for bit as with ``num_workers=0``.
    - Checkpoints: with ``checkpoint`` set, the state is saved every ``checkpoint_every`` steps
      and at the end; ``resume=True`` continues from that file when it exists.
    - Validation: with ``val_dataset`` (``.images``, ``.annotations``), every ``val_every`` steps
      and at the end ``val_samples`` prior samples per image give the GED (unbiased when R >= 2)
      and matched IoU; the weights with the lowest GED go to ``best_checkpoint`` (default:
      ``<checkpoint>_best.pt``; readable by :func:`load_model`).
    - ``log_every``: the loss terms are averaged over ``log_every`` steps and read back once per
      window, so a GPU is not made to wait on every step; a non-finite loss is caught there.
    - ``max_seconds`` stops early (the schedule still spans ``steps``).

    History keys: "step", "lr", "seconds", the loss terms ("total", "recon"[, "kl"]), and
    "val_step", "val_ged", "val_hm_iou" with a validation set.
    """
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps or epochs")
    if batch_size < 1 or batch_size > len(dataset):
        raise ValueError(f"batch_size must be in [1, len(dataset) = {len(dataset)}], got {batch_size}")
    total = steps if steps is not None else epochs * (len(dataset) // batch_size)
    if total < 1:
        raise ValueError(f"need at least one training step, got steps={steps}, epochs={epochs}")
    for name, value in (("checkpoint_every", checkpoint_every), ("log_every", log_every), ("val_every", val_every),
                        ("val_samples", val_samples)):
        if not isinstance(value, int) or value < 1:
            unit = "samples" if name == "val_samples" else "steps"
            raise ValueError(f"{name} must be a positive number of {unit}, got {value!r}")
    if beta_warmup < 0 or num_workers < 0 or (clip_grad_norm is not None and clip_grad_norm <= 0):
        raise ValueError(f"beta_warmup and num_workers must be >= 0 and clip_grad_norm > 0, "
                         f"got {beta_warmup}, {num_workers}, {clip_grad_norm}")
    lr_at(0, total, lr, lr_schedule)  # validates the schedule name
    device = resolve_device(device)
    if amp is not None and (amp not in AMP_DTYPES or (amp == "fp16" and device.type != "cuda")):
        raise ValueError(f"amp must be None, 'bf16' or (on CUDA) 'fp16', got {amp!r} on {device.type}")
    if val_dataset is not None and not (hasattr(val_dataset, "images") and hasattr(val_dataset, "annotations")):
        raise ValueError(f"val_dataset needs .images and .annotations, got {type(val_dataset).__name__}")
    config = dict(steps=total, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, warmup=warmup, beta=beta,
                  loss_kwargs=dict(loss_kwargs or {}), weight_decay=weight_decay, seed=seed)
    # settings added later are stored only when used, so older checkpoints still resume
    config |= {k: v for k, v in dict(beta_warmup=beta_warmup, clip_grad_norm=clip_grad_norm, amp=amp,
                                     log_every=log_every).items() if v != NEW_SETTING_DEFAULTS[k]}
    if best_checkpoint is None and checkpoint is not None and val_dataset is not None:
        best_checkpoint = Path(checkpoint).with_name(Path(checkpoint).stem + "_best.pt")
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")  # fp16 gradients underflow without scaling
    sampler = _EpochSampler(len(dataset), batch_size)
    has_kl = hasattr(model, "elbo")
    if beta != 1.0 and not has_kl:
        warnings.warn(f"beta={beta} is ignored: {type(model).__name__} has no elbo() (no KL term to weigh)", stacklevel=2)
    loss_kwargs = ({"beta": beta} if has_kl else {}) | dict(loss_kwargs or {})
    history: dict[str, list[float]] = {"step": [], "lr": [], "seconds": []}
    start = 0
    seed_everything(seed)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint, map_location=device)
        if ckpt["model_class"] != type(model).__name__ or ckpt["model_config"] != model.config:
            raise ValueError(f"checkpoint {checkpoint} holds a {ckpt['model_class']} {ckpt['model_config']}, "
                             f"not this {type(model).__name__} {model.config}")
        if ckpt["config"] != config:
            changed = {k: (ckpt["config"].get(k), config.get(k)) for k in config.keys() | ckpt["config"].keys()
                       if ckpt["config"].get(k) != config.get(k)}
            raise ValueError(f"cannot resume {checkpoint} with other training settings (saved, given): {changed}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, history = ckpt["step"], ckpt["history"]
        sampler.load_state_dict(ckpt["sampler"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        if ckpt["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["cuda_rng"]])
    best_ged = min(history.get("val_ged", []), default=math.inf)
    if num_workers > 0:
        # the workers' RNGs are seeded from this generator, not from the global one
        loader = DataLoader(dataset, batch_sampler=_Forever(sampler), num_workers=num_workers,
                            pin_memory=pin_memory and device.type == "cuda",
                            generator=torch.Generator().manual_seed(seed + start))
        batches = iter(loader)
        next_batch = lambda: next(batches)  # noqa: E731
    else:
        pin = pin_memory and device.type == "cuda"
        next_batch = lambda: [t.pin_memory() if pin else t  # noqa: E731
                              for t in default_collate([dataset[int(i)] for i in sampler.next()])]
    t0 = time.perf_counter() - (history["seconds"][-1] if history["seconds"] else 0.0)
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    bar = tqdm(range(start, total), initial=start, total=total, disable=not progress, desc=type(model).__name__,
               mininterval=0.5)
    window: dict[str, torch.Tensor] = {}  # loss terms summed on the device since the last log
    step = start
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, lr, lr_schedule, warmup)
        if has_kl and beta_warmup:
            loss_kwargs["beta"] = beta * min(1.0, (step + 1) / beta_warmup)
        x, y = next_batch()
        with torch.autocast(device.type, dtype=AMP_DTYPES.get(amp, torch.bfloat16), enabled=amp is not None):
            terms = model.loss(x.to(device, non_blocking=True), y.to(device, non_blocking=True), **loss_kwargs)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(terms["total"]).backward()
        if clip_grad_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        for name, value in terms.items():
            window[name] = window.get(name, 0) + value.detach().float()
        last = step + 1 == total or (deadline is not None and time.perf_counter() > deadline)
        if (step + 1 - start) % log_every == 0 or last:
            count = (step + 1 - start) % log_every or log_every  # steps in this window
            logged = {name: float(value) / count for name, value in window.items()}  # one sync per window
            window = {}
            if not math.isfinite(logged["total"]):
                raise FloatingPointError(f"loss became {logged['total']} by step {step + 1}: lower lr, clip the "
                                         f"gradients (clip_grad_norm) or check the data")
            history["step"].append(step + 1)
            history["lr"].append(optimizer.param_groups[0]["lr"])
            history["seconds"].append(time.perf_counter() - t0)
            for name, value in logged.items():
                history.setdefault(name, []).append(value)
            if progress:
                bar.set_postfix({k: f"{v:.3g}" for k, v in logged.items()}, refresh=False)
        if val_dataset is not None and ((step + 1) % val_every == 0 or last):
            scores = _validate(model, val_dataset, val_samples, batch_size, seed + step + 1)
            history.setdefault("val_step", []).append(step + 1)
            for name, value in scores.items():
                history.setdefault(name, []).append(value)
            if scores["val_ged"] < best_ged:
                best_ged = scores["val_ged"]
                if best_checkpoint is not None:
                    save_checkpoint(best_checkpoint, model, optimizer, step + 1, config, history, sampler.state_dict())
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
