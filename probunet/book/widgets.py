"""An ipywidgets latent-space explorer: sliders over z, the decoded mask
updating live.

Works with ipywidgets 7 (Colab) and 8. A static page cannot run its callbacks:
pair it with :func:`probunet.viz.latent_traversal`, which draws the same thing.
"""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from ..model import ProbabilisticUNet


def latent_explorer(model: ProbabilisticUNet, images: torch.Tensor,
                    span: float = 3.0) -> widgets.Widget:
    """Sliders for each latent dim (in prior standard deviations) and for the
    image index.

    images: (N, C, H, W). For the chosen image the decoded foreground
    probability and mask are redrawn whenever a slider moves; z = prior mean +
    slider * prior sigma.
    """
    device = next(model.parameters()).device
    image = widgets.IntSlider(0, 0, len(images) - 1, description="image")
    sliders = [
        widgets.FloatSlider(0.0, min=-span, max=span, step=0.1,
                            description=f"z{d} (σ)", continuous_update=False)
        for d in range(model.latent_dim)
    ]
    out = widgets.Output()

    def redraw(*_):
        x = images[image.value:image.value + 1].to(device)
        with torch.no_grad():
            prior = model.prior_dist(x)
            offset = torch.tensor([[s.value for s in sliders]], device=device,
                                  dtype=x.dtype)
            probs = model.decode(x, prior.mu
                                 + offset * prior.sigma).softmax(1)[0].cpu()
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.6))
            for ax, img, title in zip(
                    axes, [x[0, 0].cpu().numpy(), (1 - probs[0]).numpy(),
                           probs.argmax(0).numpy()],
                    ["image", "p(foreground | x, z)", "decoded mask"]):
                (ax.imshow(img, cmap="gray", vmin=0, vmax=1),
                 ax.set_title(title, fontsize=9), ax.axis("off"))
            plt.show()

    for w in [image, *sliders]:
        w.observe(redraw, names="value")
    redraw()
    return widgets.HBox([widgets.VBox([image, *sliders]), out])
