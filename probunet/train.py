"""The training loop shared by every model of the package.

A :class:`TrainConfig` is the recipe: what decides the trained weights
(steps, batch size, learning rate and schedule, beta, seed, ...). ``fit``
runs it on any model with ``loss(x, y) -> dict`` and any Dataset of
``(image (C, H, W), mask (H, W))`` pairs, and stores it in every checkpoint.
All randomness (batch order, the dataset's annotation draws, the posterior
samples) comes from torch's global RNG, seeded once by the recipe's seed and
saved in every checkpoint, so a run resumed on the CPU continues exactly as
if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, resolve_device, save_checkpoint
from .evaluate import evaluate_annotations
from .unet import check_number

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
SCHEDULES = ("constant", "cosine", "step")

@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The recipe: every setting of ``fit`` that changes the trained weights.

    Loss: ``beta`` weighs the KL term (ignored by models without one),
    raised linearly from 0 over the first ``beta_warmup`` steps;
    ``analytic_kl=False`` uses the one-sample KL estimate. Optimisation:
    Adam with ``lr`` and ``weight_decay``, a linear ``warmup`` and then the
    ``lr_schedule``, ``clip_grad_norm`` on the gradients' total norm, and
    ``amp`` ("bf16", or "fp16" on CUDA) for mixed precision.
    """

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    warmup: int = 0
    beta: float = 1.0
    beta_warmup: int = 0
    analytic_kl: bool = True
    weight_decay: float = 0.0
    clip_grad_norm: float | None = None
    amp: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("steps", self.steps, 1, integer=True)
        check_number("batch_size", self.batch_size, 1, integer=True)
        check_number("warmup", self.warmup, 0, integer=True)
        check_number("beta_warmup", self.beta_warmup, 0, integer=True)
        check_number("seed", self.seed, 0, integer=True)
        check_number("beta", self.beta, 0, integer=False)
        check_number("weight_decay", self.weight_decay, 0, integer=False)
        check_number("lr", self.lr, 0, integer=False)
        if not self.lr > 0 or math.isinf(self.lr) or math.isinf(self.beta):
            raise ValueError(f"lr must be > 0 and lr, beta finite, "
                             f"got lr={self.lr!r}, beta={self.beta!r}")
        if self.clip_grad_norm is not None:
            check_number("clip_grad_norm", self.clip_grad_norm, 0, False)
            if self.clip_grad_norm == 0:
                raise ValueError("clip_grad_norm must be > 0 (or None)")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, "
                             f"got {self.lr_schedule!r}")
        if self.amp not in (None, *AMP_DTYPES):
            raise ValueError(
                f"amp must be None, 'bf16' or 'fp16', got {self.amp!r}")
        if not isinstance(self.analytic_kl, bool):
            raise TypeError(
                f"analytic_kl must be a bool, got {self.analytic_kl!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

# The one recipe of every model the book analyses, and of the command line.
# Batch 8: on a CPU, 4x the updates of batch 32 at the same images/s.
RECIPE = TrainConfig(steps=10_000, batch_size=8, lr=1e-3,
                     lr_schedule="cosine", beta=1.0, seed=0)

def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

def lr_at(step: int, total: int, lr: float, schedule: str,
          warmup: int = 0) -> float:
    """The learning rate at ``step`` of ``total``.

    A linear warm-up over ``warmup`` steps, then "constant", "cosine" (down
    to 1% of lr) or "step" (x0.1 at 60% and again at 85% of the run).
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1))))
    if schedule == "step":
        return lr * (0.1 ** ((t >= 0.6) + (t >= 0.85)))
    raise ValueError(
        f"unknown lr schedule {schedule!r}; choose one of {SCHEDULES}")

def dataset_fingerprint(dataset) -> dict:
    """Length and, for datasets with ``.images``, a hash of their data.

    Resuming compares it, so that a run does not silently continue on other
    data. At most 64 evenly spaced items are hashed: cheap for large sets.
    """
    n = len(dataset)
    out = {"length": n, "hash": None}
    if isinstance(getattr(dataset, "images", None), torch.Tensor):
        h = hashlib.sha1()
        for i in np.linspace(0, n - 1, min(n, 64)).astype(int).tolist():
            h.update(dataset.images[i].numpy().tobytes())
            annotations = getattr(dataset, "annotations", None)
            if isinstance(annotations, torch.Tensor):
                h.update(annotations[i].numpy().tobytes())
        out["hash"] = h.hexdigest()
    return out

class _EpochSampler:
    """Batches of indices: a new permutation each epoch (torch's RNG)."""

    def __init__(self, n: int, batch_size: int):
        self.n, self.batch_size = n, batch_size
        self.order, self.pos = torch.empty(0, dtype=torch.long), 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > len(self.order):
            self.order, self.pos = torch.randperm(self.n), 0
        batch = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return batch

    def state_dict(self) -> dict:
        return {"order": self.order.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.order, self.pos = state["order"].clone(), state["pos"]

class _Forever:
    """An endless batch sampler, for a DataLoader with worker processes."""

    def __init__(self, sampler: _EpochSampler):
        self.sampler = sampler

    def __iter__(self):
        while True:
            yield self.sampler.next().tolist()

def _validate(model, dataset, n: int, batch_size: int, seed: int) -> dict:
    """GED and matched IoU of n prior samples per image of a validation
    set, drawn without touching the training RNG."""
    cuda = torch.cuda.is_available()
    devices = [torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        scores = evaluate_annotations(model, dataset, n, batch_size)
    model.train()
    ged = scores["ged_unbiased"]
    ged = ged if math.isfinite(ged) else scores["ged_biased"]
    return {"val_ged": ged, "val_hm_iou": scores["hm_iou"]}

def _check_run(dataset, cfg, runtime: dict) -> None:
    """ValueError or TypeError for run settings that cannot work."""
    if len(dataset) < 1:
        raise ValueError("the training dataset is empty")
    if cfg.batch_size > len(dataset):
        raise ValueError(
            f"batch_size={cfg.batch_size} is larger than the dataset "
            f"({len(dataset)} items)")
    for name in ("checkpoint_every", "val_every", "val_samples", "log_every"):
        check_number(name, runtime[name], 1, integer=True)
    check_number("num_workers", runtime["num_workers"], 0, integer=True)
    if runtime["max_seconds"] is not None:
        check_number("max_seconds", runtime["max_seconds"], 0, False)
    val = runtime["val_dataset"]
    if val is not None and not (hasattr(val, "images")
                                and hasattr(val, "annotations")):
        raise ValueError(f"val_dataset needs .images and .annotations, "
                         f"got {type(val).__name__}")

def _resume(path, model, optimizer, scaler, sampler, cfg, data) -> tuple:
    """Load a run's state from ``path``: (start step, history)."""
    ckpt = load_checkpoint(path)
    saved = (ckpt["model_class"], ckpt["model_config"])
    if saved != (type(model).__name__, model.config):
        raise ValueError(
            f"cannot resume {path}: it holds a {saved[0]} {saved[1]}, "
            f"not this {type(model).__name__} {model.config}")
    if "training" not in ckpt:
        raise ValueError(f"cannot resume {path}: it holds no training state")
    state = ckpt["training"]
    old, new = state["config"], cfg.to_dict()
    if old != new:
        changed = {k: (old.get(k), new[k]) for k in new
                   if old.get(k) != new[k]}
        raise ValueError(f"cannot resume {path} with other settings "
                         f"(saved, given): {changed}")
    if state["dataset"] != data:
        raise ValueError(f"cannot resume {path} on another dataset: saved "
                         f"{state['dataset']}, given {data}")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    sampler.load_state_dict(state["sampler"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["step"], state["history"]

def fit(model: torch.nn.Module, dataset: Dataset,
        config: TrainConfig | None = None, *,
        device: str | torch.device = "auto", num_workers: int = 0,
        pin_memory: bool = False, channels_last: bool = False,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 500, resume: bool = False,
        val_dataset=None, val_every: int = 500, val_samples: int = 16,
        best_checkpoint: str | Path | None = None, log_every: int = 1,
        max_seconds: float | None = None, progress: bool = True,
        **settings) -> dict[str, list[float]]:
    """Train ``model`` on ``dataset`` with Adam; return the loss history.

    The recipe is ``config`` (a :class:`TrainConfig`), with any of its
    fields given as keywords on top: ``fit(model, data, steps=500, lr=1e-3)``.
    The rest only says how to run it:

    - ``num_workers`` > 0 loads batches in worker processes. They draw the
      annotations themselves: a run is reproducible, but a resumed one does
      not continue bit for bit as it does with ``num_workers=0``.
    - ``channels_last=True`` stores the weights channels-last: 1.2-1.4x the
      training speed on the CPUs we measured (``benchmarks/speed.py``).
    - ``checkpoint``: the run's state is saved there every
      ``checkpoint_every`` steps and at the end; ``resume=True`` continues
      from it (same recipe, same dataset, else a ValueError).
    - ``val_dataset`` (``.images``, ``.annotations``): every ``val_every``
      steps, ``val_samples`` prior samples per image give the GED and
      matched IoU; the best weights go to ``best_checkpoint`` (default:
      ``<checkpoint>_best.pt``).
    - ``log_every``: loss terms are averaged over that many steps and read
      back once per window, so a GPU does not wait on every step.
    - ``max_seconds`` stops early (the schedule still spans ``steps``).

    History keys: "step", "lr", "seconds", the loss terms ("total",
    "recon"[, "kl"]), and "val_step", "val_ged", "val_hm_iou".
    """
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {config!r}")
    unknown = set(settings) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"fit() got unknown settings {sorted(unknown)}")
    cfg = dataclasses.replace(config or TrainConfig(), **settings)
    runtime = dict(locals())
    _check_run(dataset, cfg, runtime)
    device = resolve_device(device)
    if cfg.amp == "fp16" and device.type != "cuda":
        raise ValueError("amp='fp16' needs CUDA; use amp='bf16' on the CPU")
    has_kl = hasattr(model, "elbo")
    if cfg.beta != 1.0 and not has_kl:
        name = type(model).__name__
        warnings.warn(f"beta is ignored: {name} has no KL term", stacklevel=2)
    loss_kwargs = {"analytic_kl": cfg.analytic_kl} if has_kl else {}
    if checkpoint is not None and val_dataset is not None:
        path = Path(checkpoint)
        best_checkpoint = (best_checkpoint
                           or path.with_stem(path.stem + "_best"))
    data = dataset_fingerprint(dataset)

    memory = torch.channels_last if channels_last else torch.preserve_format
    model.to(device, memory_format=memory).train()
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # fp16 gradients underflow without loss scaling
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16")
    sampler = _EpochSampler(len(dataset), cfg.batch_size)
    history: dict[str, list[float]] = {"step": [], "lr": [], "seconds": []}
    start = 0
    seed_everything(cfg.seed)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        start, history = _resume(
            checkpoint, model, optimizer, scaler, sampler, cfg, data)

    def save(path, step):
        cuda = torch.cuda.is_available()
        training = {
            "config": cfg.to_dict(), "step": step, "history": history,
            "optimizer": optimizer.state_dict(), "dataset": data,
            "scaler": scaler.state_dict(), "sampler": sampler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if cuda else None,
        }
        info = {"recipe": cfg.to_dict(), "steps_done": step,
                "train_seconds": round(history["seconds"][-1], 1),
                "torch": str(torch.__version__), "device": str(device)}
        save_checkpoint(path, model, info, training)

    pin = pin_memory and device.type == "cuda"
    if num_workers > 0:
        # the workers' RNGs are seeded from this generator
        loader = DataLoader(
            dataset, batch_sampler=_Forever(sampler), pin_memory=pin,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(cfg.seed + start))
        batches = iter(loader)
        next_batch = lambda: next(batches)  # noqa: E731
    else:
        def next_batch():
            items = [dataset[int(i)] for i in sampler.next()]
            return [t.pin_memory() if pin else t
                    for t in default_collate(items)]

    seconds = history["seconds"][-1] if history["seconds"] else 0.0
    t0 = time.perf_counter() - seconds
    deadline = None if max_seconds is None else t0 + seconds + max_seconds
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps,
               disable=not progress, desc=type(model).__name__,
               mininterval=0.5)
    best_ged = min(history.get("val_ged", []), default=math.inf)
    window: dict[str, torch.Tensor] = {}  # loss terms summed on the device
    step = start
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(
                step, cfg.steps, cfg.lr, cfg.lr_schedule, cfg.warmup)
        if has_kl:
            ramp = min(1.0, (step + 1) / cfg.beta_warmup) \
                if cfg.beta_warmup else 1.0
            loss_kwargs["beta"] = cfg.beta * ramp
        x, y = next_batch()
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        dtype = AMP_DTYPES.get(cfg.amp, torch.bfloat16)
        with torch.autocast(device.type, dtype, enabled=cfg.amp is not None):
            terms = model.loss(x, y, **loss_kwargs)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(terms["total"]).backward()
        if cfg.clip_grad_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(
                model.parameters(), cfg.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        for name, value in terms.items():
            window[name] = window.get(name, 0) + value.detach().float()
        out_of_time = deadline is not None and time.perf_counter() > deadline
        last = step + 1 == cfg.steps or out_of_time
        if (step + 1 - start) % log_every == 0 or last:
            count = (step + 1 - start) % log_every or log_every
            # one read-back per window
            logged = {k: float(v) / count for k, v in window.items()}
            window = {}
            if not math.isfinite(logged["total"]):
                raise FloatingPointError(
                    f"loss became {logged['total']} by step {step + 1}: "
                    f"lower lr, set clip_grad_norm or check the data")
            history["step"].append(step + 1)
            history["lr"].append(optimizer.param_groups[0]["lr"])
            history["seconds"].append(time.perf_counter() - t0)
            for name, value in logged.items():
                history.setdefault(name, []).append(value)
            if progress:
                post = {k: f"{v:.3g}" for k, v in logged.items()}
                bar.set_postfix(post, refresh=False)
        if val_dataset is not None and ((step + 1) % val_every == 0 or last):
            scores = _validate(model, val_dataset, val_samples,
                               cfg.batch_size, cfg.seed + step + 1)
            history.setdefault("val_step", []).append(step + 1)
            for name, value in scores.items():
                history.setdefault(name, []).append(value)
            if scores["val_ged"] < best_ged:
                best_ged = scores["val_ged"]
                if best_checkpoint is not None:
                    save(best_checkpoint, step + 1)
        if checkpoint is not None and (step + 1) % checkpoint_every == 0:
            save(checkpoint, step + 1)
        if out_of_time:
            step += 1
            break
    else:
        step = cfg.steps
    bar.close()
    if checkpoint is not None:
        save(checkpoint, step)
    model.eval()
    return history
