"""The landing page's figure: one toy image, its valid annotations, the U-Net's blurred answer, Prob U-Net samples.

    .venv/bin/python book/figures/landing.py   # writes book/figures/landing.png
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from probunet.toy import ToyAmbiguousDataset  # noqa: E402
from probunet.evaluate import sample_masks  # noqa: E402
from probunet.book import load_pretrained  # noqa: E402
from probunet.train import seed_everything  # noqa: E402

INDEX = 339  # a test image whose two objects are both genuinely ambiguous (p about 0.4 and 0.65)


def main() -> None:
    test = ToyAmbiguousDataset("test")
    x = test.images[INDEX:INDEX + 1]
    modes, probs = test.modes(INDEX)
    prob_unet, unet = load_pretrained("probunet_toy", "cpu"), load_pretrained("unet_toy", "cpu")
    seed_everything(0)
    samples = sample_masks(prob_unet, x, n=8)[0]
    with torch.no_grad():
        soft = unet(x).softmax(1)[0, 1]
    top = [(x[0, 0], "image", "gray")] + [(m, f"valid mask, p={p:.2f}", "gray") for m, p in zip(modes, probs)]
    top += [(soft, "U-Net: one blurred answer", "magma")]
    bottom = [(s, f"Prob U-Net sample {k + 1}", "gray") for k, s in enumerate(samples)]
    fig, axes = plt.subplots(2, 8, figsize=(12, 3.3))
    for ax in axes.flat:
        ax.axis("off")
    for row, panels in enumerate([top, bottom]):
        for ax, (img, title, cmap) in zip(axes[row], panels):
            shown = ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            if cmap == "magma":  # the probability map: the masks are 0/1, this one needs its scale
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
    fig.tight_layout()
    out = Path(__file__).with_name("landing.png")
    fig.savefig(out, dpi=150)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
