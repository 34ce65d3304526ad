"""Plots: sample grids, mode frequencies, calibration and training curves
(matplotlib figures)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..toy.truth import calibration_curve


def _np(a) -> np.ndarray:
    return (a.detach().cpu().numpy() if isinstance(a, torch.Tensor)
            else np.asarray(a))


def _show(ax, img, title: str = "", cmap: str = "gray",
          vmax: float | None = 1.0) -> None:
    ax.imshow(img, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])


def sample_grid(image, modes, probs, prior_samples, annotations=None,
                reconstructions=None, max_samples: int = 8) -> plt.Figure:
    """One image at a glance.

    Row 1: the image (C, H, W) and its true modes (M, H, W) with their
    probabilities (M,).
    Row 2: prior samples (S, H, W). Row 3 (optional): annotations (R, H, W)
    and, beside each, the posterior reconstruction (R, H, W) decoded from that
    annotation.
    """
    image, modes, probs, prior = (_np(image), _np(modes), _np(probs),
                                  _np(prior_samples)[:max_samples])
    rows = 3 if annotations is not None else 2
    cols = max(1 + len(modes), len(prior),
               2 * len(annotations) if annotations is not None else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    (_show(axes[0, 0], image[0] if image.ndim == 3 else image, "image"),
     axes[0, 0].axis("on"))
    for j, (m, p) in enumerate(zip(modes, probs)):
        (_show(axes[0, j + 1], m, f"true mode p={p:.2f}"),
         axes[0, j + 1].axis("on"))
    for j, s in enumerate(prior):
        _show(axes[1, j], s, f"prior sample {j + 1}"), axes[1, j].axis("on")
    if annotations is not None:
        for r, (a, rec) in enumerate(zip(_np(annotations),
                                         _np(reconstructions))):
            (_show(axes[2, 2 * r], a, f"annotation {r + 1}"),
             axes[2, 2 * r].axis("on"))
            (_show(axes[2, 2 * r + 1], rec, "posterior recon."),
             axes[2, 2 * r + 1].axis("on"))
    fig.tight_layout()
    return fig


def mode_frequency_plot(predicted, true, labels: list[str] | None = None,
                        ax=None) -> plt.Axes:
    """Bars of predicted versus true mode frequencies (M+1,), the last bar
    being "other"."""
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


def calibration_plot(predicted, true, bins: int = 10, ax=None,
                     label: str = "model",
                     by: tuple[str, ...] = ("true",)) -> plt.Axes:
    """How often samples mark each object (N, J) against its true probability
    (N, J), with means binned by the true probability and/or (``by``) by the
    predicted frequency (see ``probunet.toy.calibration_curve``)."""
    predicted, true = _np(predicted).ravel(), _np(true).ravel()
    ax = ax or plt.subplots(figsize=(4, 4))[1]
    ax.scatter(true, predicted, s=4, alpha=0.25, color="C0")
    for key, style, color in (("true", "o-", "C1"),
                              ("predicted", "s--", "C2")):
        if key not in by:
            continue
        curve = calibration_curve(predicted, true, bins, by=key)
        ok = curve["counts"] > 0
        ax.plot(curve["mean_true"][ok], curve["mean_predicted"][ok], style,
                color=color, label=f"{label}, binned by {key}")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    ax.set(xlim=(0, 1), ylim=(0, 1),
           xlabel="true probability that an object is marked",
           ylabel="fraction of samples marking it")
    ax.legend(frameon=False, fontsize=8)
    return ax


# sums within an example, means over the batch
CURVE_LABELS = {"total": "loss, nats per example",
                "recon": "cross-entropy, nats per example",
                "kl": "KL(q || p), nats per example"}


def training_curves(history: dict[str, list[float]],
                    smooth: int = 50) -> plt.Figure:
    """Loss terms of a fit() history against the step, with a running mean over
    ``smooth`` steps."""
    terms = [k for k in ("total", "recon", "kl") if k in history]
    fig, axes = plt.subplots(1, len(terms), figsize=(3.6 * len(terms), 2.8),
                             squeeze=False)
    steps = np.asarray(history["step"])
    for ax, term in zip(axes[0], terms):
        values = np.asarray(history[term], dtype=float)
        ax.plot(steps, values, color="0.8", lw=0.6)
        if len(values) >= smooth:
            ax.plot(steps[smooth - 1:],
                    np.convolve(values, np.ones(smooth) / smooth, "valid"),
                    color="C0")
        ax.set(title=term, xlabel="step", ylabel=CURVE_LABELS[term])
        if term != "kl":
            ax.set_yscale("log")
    fig.tight_layout()
    return fig


@torch.no_grad()
def latent_traversal(model, image: torch.Tensor, dims: list[int] | None = None,
                     span: float = 2.5, steps: int = 7) -> plt.Figure:
    """Decode one image (C, H, W) while moving z along each latent dim from
    -span to +span prior sigmas.

    One row per dim (the other dims at the prior mean); the static twin of
    probunet.widgets.latent_explorer.
    """
    device = next(model.parameters()).device
    x = image[None].to(device)
    prior = model.prior_dist(x)
    dims = list(range(model.latent_dim)) if dims is None else dims
    offsets = torch.linspace(-span, span, steps, device=device)
    fig, axes = plt.subplots(len(dims), steps + 1,
                             figsize=(1.2 * (steps + 1), 1.25 * len(dims)),
                             squeeze=False)
    for row, d in enumerate(dims):
        z = prior.mu.repeat(steps, 1)
        z[:, d] += offsets * prior.sigma[0, d]
        masks = model.decode(x.expand(steps, -1, -1, -1), z).argmax(1).cpu()
        _show(axes[row, 0], _np(image[0]), "image" if row == 0 else "")
        axes[row, 0].set_ylabel(f"z{d}", fontsize=9)
        for j in range(steps):
            _show(axes[row, j + 1], masks[j].numpy(),
                  f"{offsets[j]:+.1f}σ" if row == 0 else "")
    fig.tight_layout()
    return fig


# -----------------------------------------------------------------------------
# the toy data and the two-dimensional conditional VAE


def _mode_labels(num_modes: int) -> list[str]:
    """Names of the modes of the toy data: bit k of mode m marks object k
    (objects left to right)."""
    if num_modes == 4:
        return ["empty", "left", "right", "both"]
    return [f"mode {m}" for m in range(num_modes)]


def toy_examples(images, modes, probs, annotations=None,
                 mode_labels: list[str] | None = None,
                 size: float = 1.15) -> plt.Figure:
    """Several images with their true modes and, optionally, their rater masks.

    images (N, H, W) or (N, 1, H, W) (floats in [0, 1] or uint8); modes
    (N, M, H, W) with probabilities (N, M); annotations (N, R, H, W). One row
    per image: the image, its M true modes titled with their names and
    probabilities, then the R annotations, each titled with the true mode it
    equals (:func:`probunet.metrics.assign_modes`; "other" if none).
    """
    from ..toy.truth import assign_modes

    images, modes, probs = _np(images), _np(modes), _np(probs)
    if images.ndim == 4:
        images = images[:, 0]
    n, m = probs.shape
    if images.ndim != 3 or modes.shape[:2] != (n, m) or len(images) != n:
        raise ValueError(
            "need images (N, H, W), modes (N, M, H, W) and probs (N, M); got "
            f"{images.shape}, {modes.shape}, {probs.shape}")
    labels = list(mode_labels) if mode_labels is not None else _mode_labels(m)
    groups = [1, m] + ([_np(annotations).shape[1]]
                       if annotations is not None else [])
    # a narrow gap between groups
    ratios = [w for g in groups for w in [0.2] + [1.0] * g][1:]
    fig, axes = plt.subplots(n, len(ratios),
                             figsize=(size * sum(ratios), 1.25 * size * n),
                             squeeze=False,
                             gridspec_kw={"width_ratios": ratios})
    for ax in axes.flat:
        ax.axis("off")
    # first column of each group
    cols = np.cumsum([0] + [g + 1 for g in groups])
    vmax = 255 if images.dtype == np.uint8 else 1.0
    if annotations is not None:
        ann = _np(annotations)
        assigned = _np(assign_modes(ann, modes))
    for i in range(n):
        _show(axes[i, 0], images[i], "image", vmax=vmax)
        for j in range(m):
            _show(axes[i, cols[1] + j], modes[i, j],
                  f"{labels[j]} p={probs[i, j]:.2f}")
        if annotations is not None:
            for r in range(ann.shape[1]):
                name = (labels[assigned[i, r]] if assigned[i, r] < m
                        else "other")
                _show(axes[i, cols[2] + r], ann[i, r],
                      f"rater {r + 1}: {name}")
    for ax in axes.flat:
        if ax.images:
            ax.axis("on")
    fig.tight_layout(pad=0.3, w_pad=0.2, h_pad=0.4)
    return fig


def law_plot(contrast, probs, ax=None) -> plt.Axes:
    """The toy data's law: each object's contrast (any shape) against its
    marking probability (same shape), with the line
    :func:`probunet.toy.contrast_to_prob`."""
    from ..toy.shapes import CONTRAST_RANGE, contrast_to_prob

    contrast, probs = _np(contrast).ravel(), _np(probs).ravel()
    if contrast.shape != probs.shape:
        raise ValueError(
            "contrast and probs must have the same number of values, got "
            f"{contrast.size} and {probs.size}")
    ax = ax or plt.subplots(figsize=(4.5, 3.5))[1]
    ax.scatter(contrast, probs, s=3, alpha=0.3, color="C0",
               label="objects of the data (contrast measured)")
    c = np.linspace(*CONTRAST_RANGE, 50)
    ax.plot(c, contrast_to_prob(c), "k--", lw=1.2,
            label="the law: contrast_to_prob")
    ax.set(xlabel="object contrast (mean intensity above background)",
           ylabel="probability that a rater marks it")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    return ax


def gaussian_ellipses(ax, mu, sigma, n_std: float = 2.0, **kwargs) -> list:
    """Draw axis-aligned ellipses of 2-D diagonal Gaussians, ``n_std`` standard
    deviations wide, on ``ax``.

    mu, sigma: (B, 2) (e.g. ``DiagonalGaussian.mu`` and ``.sigma``). Keyword
    arguments go to :class:`matplotlib.patches.Ellipse` (default: unfilled).
    Returns the patches; rescales the axes to show them.
    """
    from matplotlib.patches import Ellipse

    mu, sigma = _np(mu), _np(sigma)
    if mu.ndim != 2 or mu.shape[1] != 2 or sigma.shape != mu.shape:
        raise ValueError(
            f"mu and sigma must both have shape (B, 2), got {mu.shape} and "
            f"{sigma.shape}")
    kwargs = {"fill": False} | kwargs
    patches = [
        ax.add_patch(
            Ellipse(tuple(m), 2 * n_std * s[0], 2 * n_std * s[1], **kwargs))
        for m, s in zip(mu, sigma)
    ]
    ax.autoscale_view()
    return patches


def unet_diagram(channels=(16, 32, 64), in_channels: int = 1,
                 num_classes: int = 2, size: int = 32,
                 convs_per_block: int = 2) -> plt.Figure:
    """Draw the U-Net of :class:`probunet.unet.UNet` with these settings, level
    by level.

    Each box is a feature map: its width grows with its channels
    (the number above it), its height with its spatial size
    (left of each level). Arrows: 3x3 conv + ReLU, 2x2 average pooling,
    bilinear upsampling, the skip connection (the encoder's map copied and
    concatenated with the upsampled one) and the final 1x1 conv to class
    logits.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    channels = tuple(int(c) for c in channels)
    if (len(channels) < 1 or min(channels) < 1 or convs_per_block < 1
            or size < 2**(len(channels) - 1)):
        raise ValueError(
            "need positive channels, convs_per_block >= 1 and size >= "
            "2**(levels-1), "
            f"got channels={channels}, convs_per_block={convs_per_block}, "
            f"size={size}")
    levels, gap, dy = len(channels), 0.55, 2.6
    fill = {"image": "0.55", "conv": "#9ecae1", "pool": "#fcae91",
            "up": "#a1d99b", "skip": "white", "out": "#bcbddc"}
    line = {"conv": "black", "pool": "#de2d26", "up": "#31a354",
            "skip": "0.45", "head": "#756bb1"}
    width = lambda c: 0.12 + 0.6 * np.sqrt(c / max(channels))  # noqa: E731
    height = lambda lvl: 2.0 / 2**lvl + 0.25  # noqa: E731
    # bars: [x, level, channels, kind]; arrows: (from, to, kind)
    bars, arrows, last = [], [], []

    def add(x, lvl, c, kind, src=None, arrow=None):
        bars.append((x, lvl, c, kind))
        if src is not None:
            arrows.append((src, len(bars) - 1, arrow or kind))
        return len(bars) - 1

    def right_of(i):
        return bars[i][0] + width(bars[i][2]) + gap

    prev = add(0.0, 0, in_channels, "image")
    for lvl, c in enumerate(channels):  # encoder
        if lvl > 0:
            prev = add(bars[prev][0], lvl, bars[prev][2], "pool", prev)
        for _ in range(convs_per_block):
            prev = add(right_of(prev), lvl, c, "conv", prev)
        last.append(prev)
    pairs = []
    # decoder: [copied skip | upsampled] -> convs
    for lvl in reversed(range(levels - 1)):
        skip = add(right_of(prev), lvl, channels[lvl], "skip", last[lvl])
        up = add(bars[skip][0] + width(channels[lvl]), lvl, channels[lvl + 1],
                 "up", prev)
        pairs.append((skip, up))
        prev = up
        for _ in range(convs_per_block):
            prev = add(right_of(prev), lvl, channels[lvl], "conv", prev)
    out = add(right_of(prev), 0, num_classes, "out", prev, "head")

    x_min, x_max = -1.3, bars[out][0] + width(num_classes) + 0.3
    y_min, y_max = (-dy * (levels - 1) - height(levels - 1) / 2 - 0.5,
                    height(0) / 2 + 1.0)
    fig, ax = plt.subplots(figsize=(max(6.5, 0.6 * (x_max - x_min)),
                                    0.6 * (y_max - y_min)
                                    + (0.4 if levels >= 3 else 1.2)))
    in_pair = {i for p in pairs for i in p}
    for i, (x0, lvl, c, kind) in enumerate(bars):
        h, y = height(lvl), -dy * lvl
        ax.add_patch(
            plt.Rectangle((x0, y - h / 2), width(c), h, facecolor=fill[kind],
                          edgecolor="0.25", lw=0.8))
        if i not in in_pair:
            ax.text(x0 + width(c) / 2, y + h / 2 + 0.08, str(c), ha="center",
                    va="bottom", fontsize=8)
    # one label over each concatenation: skip + upsampled channels
    for skip, up in pairs:
        x0, lvl, c_skip, _ = bars[skip]
        c_up = bars[up][2]
        ax.text(x0 + (width(c_skip) + width(c_up)) / 2,
                -dy * lvl + height(lvl) / 2 + 0.08, f"{c_skip}+{c_up}",
                ha="center", va="bottom", fontsize=8)
    for lvl in range(levels):
        s = size // 2**lvl
        x0 = bars[0][0] if lvl == 0 else bars[last[lvl - 1]][0]
        ax.text(x0 - 0.15, -dy * lvl, f"{s}×{s}", ha="right", va="center",
                fontsize=8, color="0.3")

    def point(i, side):
        x0, lvl, c, _ = bars[i]
        h, y, w = height(lvl), -dy * lvl, width(c)
        return {"right": (x0 + w, y), "left": (x0, y),
                "bottom": (x0 + w / 2, y - h / 2),
                "top": (x0 + w / 2, y + h / 2 + 0.4)}[side]

    for a, b, kind in arrows:
        sides, style = ("right", "left"), "arc3"
        if kind == "pool":
            sides = ("bottom", "top")
        elif kind == "up":
            sides, style = ("right", "bottom"), "angle,angleA=0,angleB=90"
        ax.annotate(
            "", xy=point(b, sides[1]), xytext=point(a, sides[0]),
            arrowprops=dict(arrowstyle="-|>", color=line[kind],
                            lw=1.1 if kind == "skip" else 1.4,
                            linestyle="--" if kind == "skip" else "-",
                            shrinkA=1, shrinkB=1, connectionstyle=style))
    for i, name in ((0, "image"), (out, "logits")):
        ax.text(bars[i][0] + width(bars[i][2]) / 2,
                height(0) / 2 + 0.45, name, ha="center", va="bottom",
                fontsize=8)
    handles = [
        Line2D([], [], color=line["conv"], lw=1.4, label="3×3 conv + ReLU"),
        Line2D([], [], color=line["pool"], lw=1.4,
               label="2×2 average pooling"),
        Line2D([], [], color=line["up"], lw=1.4,
               label="bilinear upsampling ×2"),
        Line2D([], [], color=line["skip"], lw=1.1, ls="--",
               label="skip connection (copy)"),
        Line2D([], [], color=line["head"], lw=1.4,
               label="1×1 conv to class logits"),
        Patch(facecolor=fill["conv"], edgecolor="0.25", label="feature map"),
        Patch(facecolor=fill["pool"], edgecolor="0.25", label="pooled map"),
        Patch(facecolor=fill["skip"], edgecolor="0.25",
              label="copied encoder map"),
        Patch(facecolor=fill["up"], edgecolor="0.25", label="upsampled map")
    ]
    if levels >= 3:  # the U leaves room at the bottom right
        ax.legend(handles=handles, loc="lower right", ncol=2, fontsize=7.5,
                  frameon=False, borderaxespad=0.1)
    else:
        ax.legend(handles=handles, loc="upper center",
                  bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=7.5,
                  frameon=False)
    ax.set(xlim=(x_min, x_max), ylim=(y_min, y_max), aspect="equal")
    ax.axis("off")
    ax.set_title(
        f"U-Net: channels {channels}, {convs_per_block} conv(s) per level, "
        f"{size}×{size} input", fontsize=9)
    fig.tight_layout()
    return fig


def marginal_grid(images, true_marginal, predicted, modes=None,
                  mode_probs=None, thresholded=None, pixel_samples=None,
                  model: str = "U-Net", max_samples: int = 2) -> plt.Figure:
    """Per-pixel predictions next to the truth, one image per row.

    Columns: the image (N, [C,] H, W); optionally its true modes (N, M, H, W)
    with probabilities (N, M); the true per-pixel foreground probability
    (N, H, W); the model's (N, H, W); optionally its thresholded mask (N, H, W)
    and up to ``max_samples`` masks sampled pixel by pixel (N, S, H, W).
    Probability maps share one colour scale (0 to 1, colour bar on the right).
    """
    images, true_marginal, predicted = (_np(images), _np(true_marginal),
                                        _np(predicted))
    if images.ndim == 4:
        images = images[:, 0]
    n = len(images)
    if true_marginal.shape != images.shape or predicted.shape != images.shape:
        raise ValueError(
            f"images {images.shape}, true_marginal {true_marginal.shape} and "
            f"predicted {predicted.shape} "
            "must all be (N, H, W)")
    modes = None if modes is None else _np(modes)
    if modes is not None and (mode_probs is None or modes.shape[0] != n):
        raise ValueError(
            "modes (N, M, H, W) need mode_probs (N, M) for the same N images")
    samples = (None if pixel_samples is None
               else _np(pixel_samples)[:, :max_samples])
    cols = ([("image", "image")]
            + [("mode", m)
               for m in range(0 if modes is None else modes.shape[1])]
            + [("prob", "true p(foreground)"),
               ("prob", f"{model} p(foreground)")]
            + ([("mask", f"{model} argmax")] if thresholded is not None
               else [])
            + [("sample", s)
               for s in range(0 if samples is None else samples.shape[1])])
    fig, axes = plt.subplots(n, len(cols),
                             figsize=(1.25 * len(cols) + 0.6, 1.4 * n),
                             squeeze=False, layout="constrained")
    for r in range(n):
        prob_cols = iter([true_marginal[r], predicted[r]])
        for c, (kind, what) in enumerate(cols):
            ax, top = axes[r, c], r == 0
            if kind == "image":
                _show(ax, images[r], "image" if top else "")
            elif kind == "mode":
                _show(ax, modes[r, what],
                      f"true mode p={float(_np(mode_probs)[r, what]):.2f}")
            elif kind == "prob":
                im = ax.imshow(next(prob_cols), cmap="viridis", vmin=0, vmax=1,
                               interpolation="nearest")
                ax.set_title(what if top else "", fontsize=8)
                ax.set_xticks([]), ax.set_yticks([])
            elif kind == "mask":
                _show(ax, _np(thresholded)[r], what if top else "")
            else:
                _show(ax, samples[r, what],
                      f"pixel sample {what + 1}" if top else "")
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.01, label="p(foreground)")
    return fig


def lr_schedule_plot(total: int, lr: float,
                     schedules=("constant", "cosine", "step"), warmup: int = 0,
                     history: dict[str, list[float]] | None = None,
                     ax=None) -> plt.Axes:
    """The learning rate of :func:`probunet.train.lr_at` over ``total`` steps
    for each schedule, and, given a fit() history, the rates that run actually
    used (dots)."""
    from ..train import lr_at

    ax = ax or plt.subplots(figsize=(5, 3))[1]
    steps = np.arange(total)
    for name in schedules:
        ax.plot(steps + 1,
                [lr_at(int(s), total, lr, name, warmup) for s in steps],
                label=name)
    if history is not None:
        every = max(1, len(history["step"]) // 40)
        ax.plot(history["step"][::every], history["lr"][::every], "k.", ms=4,
                label="this run")
    ax.set(xlabel="step", ylabel="learning rate", ylim=(0, lr * 1.08))
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.legend(frameon=False, fontsize=8)
    return ax


def method_samples(image, modes, probs, samples: dict,
                   per_method: int = 6) -> plt.Figure:
    """One image, its true modes, and a row of samples per method.

    image (C, H, W); modes (M, H, W) with probabilities (M,); samples maps
    a method's name to its masks (S, H, W), of which the first
    ``per_method`` are shown.
    """
    modes, probs = _np(modes), _np(probs)
    image = _np(image)
    cols = max(1 + len(modes), per_method + 1)
    rows = 1 + len(samples)
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.15 * rows),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    shown = [(axes[0, 0], image[0] if image.ndim == 3 else image, "image")]
    shown += [(axes[0, j + 1], m, f"truth p={p:.2f}")
              for j, (m, p) in enumerate(zip(modes, probs))]
    for r, (name, masks) in enumerate(samples.items(), start=1):
        axes[r, 0].text(0.95, 0.5, name, ha="right", va="center",
                        fontsize=8, transform=axes[r, 0].transAxes)
        shown += [(axes[r, j + 1], s, "")
                  for j, s in enumerate(_np(masks)[:per_method])]
    for ax, img, title in shown:  # framed: an all-white mask stays visible
        _show(ax, img, title)
        ax.axis("on")
    fig.tight_layout(pad=0.3)
    return fig


def ged_against_samples(counts, ged: dict, floor=None,
                        ax=None) -> plt.Axes:
    """GED against the raters as the number of samples S grows, one line
    per method: counts (len L,), ged maps a name to L values; ``floor``:
    the same L values for masks drawn from the truth."""
    ax = ax or plt.subplots(figsize=(5.5, 3.6))[1]
    for name, values in ged.items():
        ax.plot(counts, _np(values), "o-", label=name, ms=4)
    if floor is not None:
        ax.plot(counts, _np(floor), "k--", label="truth", lw=1)
    ax.set(xscale="log", xticks=list(counts), xticklabels=list(counts),
           xlabel="samples S per image", ylabel="GED² against 4 raters")
    ax.legend(frameon=False, fontsize=7, ncol=2)
    return ax


def frequency_scatter(freqs: dict, true, columns: int = 4) -> plt.Figure:
    """Sampled against true mode frequencies, every mode of every image,
    one panel per method: freqs maps a name to (N, M + 1) frequencies
    ("other" last, left out), true is (N, M)."""
    true = _np(true).ravel()
    rows = -(-len(freqs) // columns)
    fig, axes = plt.subplots(rows, columns,
                             figsize=(2.3 * columns, 2.4 * rows),
                             squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[len(freqs):]:
        ax.axis("off")
    for ax, (name, f) in zip(axes.flat, freqs.items()):
        ax.scatter(true, _np(f)[:, :-1].ravel(), s=3, alpha=0.2)
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_title(name, fontsize=8)
        ax.set(xlim=(0, 1), ylim=(0, 1))
    for ax in axes[-1]:
        ax.set_xlabel("true frequency", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("sampled", fontsize=8)
    fig.tight_layout()
    return fig
