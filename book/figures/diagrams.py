"""Draw the Probabilistic U-Net's training-time and inference-time diagrams.

Run from the repository root (or anywhere):

    .venv/bin/python book/figures/diagrams.py

writes book/figures/probunet_training.png and book/figures/probunet_inference.png.
Boxes and arrows only, drawn for this book (book/probunet.md includes them).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent
DPI = 150

# (face, edge) per kind of box
COLORS = {
    "data": ("#f2f2f2", "#555555"),
    "unet": ("#dbe8f6", "#2f6aa3"),
    "prior": ("#dcefd9", "#3a8a35"),
    "posterior": ("#fde5cf", "#c8690e"),
    "latent": ("#fff4c2", "#a88700"),
    "fcomb": ("#eadcf2", "#7a3d9a"),
    "loss": ("#f8d9d9", "#b03030"),
}


class Box:
    """A rounded box centred at (x, y) of size (w, h), with its text."""

    def __init__(self, ax, x, y, w, h, text, kind, fontsize=10.5, stack=0):
        self.x, self.y, self.w, self.h = x, y, w, h
        face, edge = COLORS[kind]
        for k in range(stack, 0, -1):  # shadow copies behind: "S of these"
            d = 0.09 * k
            ax.add_patch(FancyBboxPatch((x - w / 2 + d, y - h / 2 + d), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                        facecolor=face, edgecolor=edge, linewidth=1.0, zorder=1))
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                    facecolor=face, edgecolor=edge, linewidth=1.4, zorder=2))
        ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, zorder=3, linespacing=1.35)

    def side(self, where: str, offset: float = 0.0) -> tuple[float, float]:
        """A point on the box's edge: 'l', 'r', 't' or 'b', shifted along the edge by offset."""
        pad = 0.04
        return {"l": (self.x - self.w / 2 - pad, self.y + offset), "r": (self.x + self.w / 2 + pad, self.y + offset),
                "t": (self.x + offset, self.y + self.h / 2 + pad), "b": (self.x + offset, self.y - self.h / 2 - pad)}[where]


def arrow(ax, start, end, label=None, label_at=0.5, dx=0.0, dy=0.14, color="#333333", style="-|>", ls="-",
          fontsize=9.5, ha="center"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=14, linewidth=1.4, color=color,
                                 linestyle=ls, zorder=4, shrinkA=0, shrinkB=0))
    if label:
        x = start[0] + label_at * (end[0] - start[0]) + dx
        y = start[1] + label_at * (end[1] - start[1]) + dy
        ax.text(x, y, label, ha=ha, va="bottom" if dy >= 0 else "top", fontsize=fontsize, color="#222222", zorder=5,
                bbox=dict(facecolor="white", edgecolor="none", pad=0.5, alpha=0.9))


def canvas(width, height, title):
    fig, ax = plt.subplots(figsize=(width * 0.72, height * 0.72))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.text(0.15, height - 0.3, title, ha="left", va="top", fontsize=14, fontweight="bold")
    return fig, ax


def training_diagram(path: Path) -> None:
    fig, ax = canvas(17.7, 9.0, "Training: z comes from the posterior")
    top, mid, low = 7.3, 4.5, 1.5
    c_net, c_dist, c_mid, c_right = 6.25, 9.35, 12.85, 16.05
    # inputs: the image feeds all three networks, the mask only the posterior
    x = Box(ax, 1.05, 4.4, 1.7, 6.7, "image $x$\n\n(B, C,\nH, W)", "data", fontsize=12.5)
    y = Box(ax, 3.45, 4.1, 1.75, 1.05, "mask $y$\n(B, H, W)", "data", fontsize=12)
    ax.text(3.45, 3.4, "one-hot $-$ 0.5,\nconcat with $x$", ha="center", va="top", fontsize=10.5, color="#222222")
    # the three networks
    unet = Box(ax, c_net, top, 2.35, 1.1, "U-Net", "unet", fontsize=13.5)
    post = Box(ax, c_net, mid, 2.35, 1.4, "posterior net\n$q_\\phi(z\\mid x, y)$", "posterior", fontsize=12)
    prior = Box(ax, c_net, low, 2.35, 1.4, "prior net\n$p_\\psi(z\\mid x)$", "prior", fontsize=12)
    # their outputs
    feats = Box(ax, c_dist, top, 2.2, 1.1, "features\n(B, $F$, H, W)", "unet", fontsize=12)
    qd = Box(ax, c_dist, mid, 2.2, 1.1, "$\\mu_\\phi, \\sigma_\\phi$\n(B, D) each", "posterior", fontsize=12)
    pd = Box(ax, c_dist, low, 2.2, 1.1, "$\\mu_\\psi, \\sigma_\\psi$\n(B, D) each", "prior", fontsize=12)
    z = Box(ax, c_mid, mid, 2.6, 1.1, "$z = \\mu_\\phi + \\sigma_\\phi \\odot \\varepsilon$\n(B, D)", "latent", fontsize=12)
    fcomb = Box(ax, c_mid, top, 2.6, 1.1, "fcomb\n(1×1 convs)", "fcomb", fontsize=12)
    logits = Box(ax, c_right, top, 2.2, 1.1, "logits\n(B, K, H, W)", "fcomb", fontsize=12)
    kl = Box(ax, c_mid, low, 2.6, 1.1, "$\\mathrm{KL}(q_\\phi \\,\\|\\, p_\\psi)$\nsum over D", "loss", fontsize=12)
    ce = Box(ax, c_right, mid, 2.2, 1.1, "cross-entropy\nwith $y$", "loss", fontsize=12)
    loss = Box(ax, c_right, low, 2.2, 1.25, "loss =\nCE + $\\beta\\,$KL", "loss", fontsize=12.5)

    xr = x.x + x.w / 2 + 0.04
    arrow(ax, (xr, top), unet.side("l"))
    arrow(ax, (xr, mid + 0.45), post.side("l", 0.45))
    arrow(ax, (xr, low), prior.side("l"))
    arrow(ax, y.side("r"), (post.side("l")[0], y.y))
    arrow(ax, unet.side("r"), feats.side("l"))
    arrow(ax, post.side("r"), qd.side("l"))
    arrow(ax, prior.side("r"), pd.side("l"))
    arrow(ax, qd.side("r"), z.side("l"), "sample", dy=0.08, fontsize=11)
    arrow(ax, feats.side("r"), fcomb.side("l"), "concat", dy=0.08, fontsize=11)
    arrow(ax, z.side("t"), fcomb.side("b"), "tile to\nH×W", dx=0.12, dy=0.0, ha="left", fontsize=11)
    arrow(ax, fcomb.side("r"), logits.side("l"))
    arrow(ax, logits.side("b"), ce.side("t"))
    arrow(ax, qd.side("b", 0.4), kl.side("l", 0.3))
    arrow(ax, pd.side("r"), kl.side("l", -0.2))
    arrow(ax, ce.side("b"), loss.side("t"))
    arrow(ax, kl.side("r"), loss.side("l"), "$\\times\\,\\beta$", dy=0.08, fontsize=11)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)


def inference_diagram(path: Path) -> None:
    fig, ax = canvas(17.7, 6.6, "Inference: z comes from the prior, S times")
    top, low = 4.9, 1.7
    c_net, c_dist, c_mid, c_right = 6.25, 9.35, 12.85, 16.05
    x = Box(ax, 1.05, 3.3, 1.7, 4.4, "image $x$\n\n(B, C,\nH, W)", "data", fontsize=12.5)
    unet = Box(ax, c_net, top, 2.35, 1.1, "U-Net\n(run once)", "unet", fontsize=12.5)
    prior = Box(ax, c_net, low, 2.35, 1.4, "prior net\n$p_\\psi(z\\mid x)$", "prior", fontsize=12)
    feats = Box(ax, c_dist, top, 2.2, 1.1, "features\n(B, $F$, H, W)", "unet", fontsize=12)
    pd = Box(ax, c_dist, low, 2.2, 1.1, "$\\mu_\\psi, \\sigma_\\psi$\n(B, D) each", "prior", fontsize=12)
    z = Box(ax, c_mid, low, 2.6, 1.35, "$z_s \\sim p_\\psi(z\\mid x)$\n$s = 1, \\dots, S$", "latent", stack=2, fontsize=12)
    fcomb = Box(ax, c_mid, top, 2.6, 1.1, "fcomb\n(per sample)", "fcomb", stack=2, fontsize=12)
    logits = Box(ax, c_right, top, 2.4, 1.1, "logits\n(B, S, K, H, W)", "fcomb", stack=2, fontsize=11.5)
    masks = Box(ax, c_right, low, 2.2, 1.35, "$S$ masks\n(B, S, H, W)", "data", stack=2, fontsize=12)

    xr = x.x + x.w / 2 + 0.04
    arrow(ax, (xr, top), unet.side("l"))
    arrow(ax, (xr, low), prior.side("l"))
    arrow(ax, unet.side("r"), feats.side("l"))
    arrow(ax, prior.side("r"), pd.side("l"))
    arrow(ax, pd.side("r"), z.side("l"), "sample", dy=0.08, fontsize=11)
    arrow(ax, feats.side("r"), fcomb.side("l"), "concat", dy=0.08, fontsize=11)
    arrow(ax, z.side("t", -0.3), fcomb.side("b", -0.3), "tile to\nH×W", dx=0.12, dy=0.0, ha="left", fontsize=11)
    arrow(ax, fcomb.side("r"), logits.side("l"))
    arrow(ax, logits.side("b", -0.3), masks.side("t", -0.3), "argmax\nover K", dx=0.12, dy=0.0, ha="left", fontsize=11)
    ax.text(0.2, 0.3, "No mask, so no posterior net. The U-Net runs once; only fcomb runs S times.",
            ha="left", va="center", fontsize=11.5, color="#444444")
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)


def main() -> None:
    training_diagram(HERE / "probunet_training.png")
    inference_diagram(HERE / "probunet_inference.png")
    print("wrote", HERE / "probunet_training.png", "and", HERE / "probunet_inference.png")


if __name__ == "__main__":
    main()
