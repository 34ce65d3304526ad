"""Tests of the figure functions of probunet.viz for the chapters on the U-Net and the training loop."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from probunet.toy import generate_toy, modes_of  # noqa: E402
from probunet.train import lr_at  # noqa: E402
from probunet.book.plots import lr_schedule_plot, marginal_grid, unet_diagram  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


@pytest.mark.parametrize("channels, convs", [((16, 32, 64), 2), ((8, 16, 32, 64), 3), ((16,), 1)])
def test_unet_diagram_draws_every_feature_map(channels, convs):
    fig = unet_diagram(channels, in_channels=1, num_classes=2, size=64, convs_per_block=convs)
    levels = len(channels)
    # image + encoder (pooled maps and convs) + decoder (copy, upsampled, convs) + logits
    expected = 1 + levels * convs + (levels - 1) + (levels - 1) * (2 + convs) + 1
    (ax,) = fig.axes
    assert len(ax.patches) == expected
    labels = texts(fig)
    for lvl in range(levels):  # spatial size of every level
        assert f"{64 // 2**lvl}×{64 // 2**lvl}" in labels
    for lvl in range(levels - 1):  # one label per concatenation: skip + upsampled channels
        assert f"{channels[lvl]}+{channels[lvl + 1]}" in labels
    assert {"image", "logits", "1", "2"} <= set(labels)
    assert str(channels) in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "2×2 average pooling" in legend and "bilinear upsampling ×2" in legend


def test_unet_diagram_rejects_bad_settings():
    with pytest.raises(ValueError, match="size"):
        unet_diagram((16, 32, 64), size=2)
    with pytest.raises(ValueError, match="positive"):
        unet_diagram((16, 0))
    with pytest.raises(ValueError, match="convs_per_block"):
        unet_diagram((16, 32), convs_per_block=0)


def test_marginal_grid_layout():
    toy = generate_toy(3, seed=1)
    modes, probs = modes_of(toy["objects"], toy["probs"])
    marginal = np.einsum("nm,nmhw->nhw", probs, modes)
    images = torch.from_numpy(toy["images"] / 255.0).float()[:, None]
    predicted = torch.from_numpy(marginal).float()
    samples = torch.bernoulli(predicted[:, None].expand(-1, 5, -1, -1))
    fig = marginal_grid(images, marginal, predicted, modes, probs, predicted > 0.5, samples, model="Net", max_samples=2)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 3 * (1 + 4 + 2 + 1 + 2)
    titles = [ax.get_title() for ax in image_axes]
    assert {"image", "true p(foreground)", "Net p(foreground)", "Net argmax", "pixel sample 2"} <= set(titles)
    assert f"true mode p={probs[2, 3]:.2f}" in titles
    assert any(ax.get_ylabel() == "p(foreground)" for ax in fig.axes)  # the colour bar
    # without the optional columns: image, true and predicted probability
    fig = marginal_grid(images[:1], marginal[:1], predicted[:1])
    assert len([ax for ax in fig.axes if ax.images]) == 3


def test_marginal_grid_rejects_mismatched_shapes():
    x = np.zeros((2, 8, 8))
    with pytest.raises(ValueError, match="must all be"):
        marginal_grid(x, x[:1], x)
    with pytest.raises(ValueError, match="mode_probs"):
        marginal_grid(x, x, x, modes=np.zeros((2, 4, 8, 8)))


def test_lr_schedule_plot_follows_lr_at():
    history = {"step": list(range(1, 101)), "lr": [lr_at(s, 100, 1e-3, "cosine") for s in range(100)]}
    ax = lr_schedule_plot(100, 1e-3, history=history)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"constant", "cosine", "step", "this run"}
    for name in ("constant", "cosine", "step"):
        np.testing.assert_allclose(lines[name].get_ydata(), [lr_at(s, 100, 1e-3, name) for s in range(100)])
    run = lines["this run"]
    np.testing.assert_allclose(run.get_ydata(), np.asarray(history["lr"])[np.asarray(run.get_xdata()) - 1])
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "learning rate"


def test_training_curves_label_every_axis_and_smooth_only_long_histories():
    from probunet.book.plots import training_curves
    history = {"step": list(range(1, 61)), "total": list(np.linspace(5, 1, 60)), "recon": list(np.linspace(4, 0.5, 60)),
               "kl": list(np.linspace(1, 0.5, 60))}
    fig = training_curves(history, smooth=50)
    assert [ax.get_title() for ax in fig.axes] == ["total", "recon", "kl"]
    assert all("nats per example" in ax.get_ylabel() for ax in fig.axes)
    assert [len(ax.lines) for ax in fig.axes] == [2, 2, 2]           # raw + running mean
    assert [len(ax.lines) for ax in training_curves(history, smooth=100).axes] == [1, 1, 1]
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log", "linear"]
