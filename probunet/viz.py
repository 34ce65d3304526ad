"""Plots: sample grids, mode frequencies, calibration and training curves (matplotlib figures)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .metrics import calibration_curve


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _show(ax, img, title: str = "", cmap: str = "gray", vmax: float | None = 1.0) -> None:
    ax.imshow(img, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])


def sample_grid(image, modes, probs, prior_samples, annotations=None, reconstructions=None,
                max_samples: int = 8) -> plt.Figure:
    """One image at a glance.

    Row 1: the image (C, H, W) and its true modes (M, H, W) with their probabilities (M,).
    Row 2: prior samples (S, H, W). Row 3 (optional): annotations (R, H, W) and, beside each,
    the posterior reconstruction (R, H, W) decoded from that annotation.
    """
    image, modes, probs, prior = _np(image), _np(modes), _np(probs), _np(prior_samples)[:max_samples]
    rows = 3 if annotations is not None else 2
    cols = max(1 + len(modes), len(prior), 2 * len(annotations) if annotations is not None else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    _show(axes[0, 0], image[0] if image.ndim == 3 else image, "image"), axes[0, 0].axis("on")
    for j, (m, p) in enumerate(zip(modes, probs)):
        _show(axes[0, j + 1], m, f"true mode p={p:.2f}"), axes[0, j + 1].axis("on")
    for j, s in enumerate(prior):
        _show(axes[1, j], s, f"prior sample {j + 1}"), axes[1, j].axis("on")
    if annotations is not None:
        for r, (a, rec) in enumerate(zip(_np(annotations), _np(reconstructions))):
            _show(axes[2, 2 * r], a, f"annotation {r + 1}"), axes[2, 2 * r].axis("on")
            _show(axes[2, 2 * r + 1], rec, "posterior recon."), axes[2, 2 * r + 1].axis("on")
    fig.tight_layout()
    return fig


def mode_frequency_plot(predicted, true, labels: list[str] | None = None, ax=None) -> plt.Axes:
    """Bars of predicted versus true mode frequencies (M+1,), the last bar being "other"."""
    predicted, true = _np(predicted), _np(true)
    labels = labels or [f"mode {m}" for m in range(len(true) - 1)] + ["other"]
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    x = np.arange(len(true))
    ax.bar(x - 0.2, true, 0.4, label="truth", color="0.6")
    ax.bar(x + 0.2, predicted, 0.4, label="model", color="C0")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("frequency")
    ax.legend(frameon=False)
    return ax


def calibration_plot(predicted, true, bins: int = 10, ax=None, label: str = "model") -> plt.Axes:
    """How often samples mark each object (N, K) against its true probability (N, K), with binned means."""
    predicted, true = _np(predicted).ravel(), _np(true).ravel()
    ax = ax or plt.subplots(figsize=(4, 4))[1]
    ax.scatter(true, predicted, s=4, alpha=0.25, color="C0")
    curve = calibration_curve(predicted, true, bins)
    ok = curve["counts"] > 0
    ax.plot(curve["mean_true"][ok], curve["mean_predicted"][ok], "o-", color="C1", label=f"{label} (binned)")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="true probability that an object is marked",
           ylabel="fraction of samples marking it")
    ax.legend(frameon=False, fontsize=8)
    return ax


def training_curves(history: dict[str, list[float]], smooth: int = 50) -> plt.Figure:
    """Loss terms of a fit() history against the step, with a running mean over ``smooth`` steps."""
    terms = [k for k in ("total", "recon", "kl") if k in history]
    fig, axes = plt.subplots(1, len(terms), figsize=(3.6 * len(terms), 2.8), squeeze=False)
    steps = np.asarray(history["step"])
    for ax, term in zip(axes[0], terms):
        values = np.asarray(history[term], dtype=float)
        ax.plot(steps, values, color="0.8", lw=0.6)
        if len(values) >= smooth:
            ax.plot(steps[smooth - 1:], np.convolve(values, np.ones(smooth) / smooth, "valid"), color="C0")
        ax.set(title=term, xlabel="step")
        if term != "kl":
            ax.set_yscale("log")
    fig.tight_layout()
    return fig
