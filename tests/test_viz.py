"""Tests of the figure functions of probunet.viz for the toy data and the 2-D conditional VAE."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from probunet.toy.shapes import CONTRAST_RANGE, contrast_to_prob, generate_toy, modes_of  # noqa: E402
from probunet.book.plots import gaussian_ellipses, law_plot, toy_examples  # noqa: E402


@pytest.fixture(scope="module")
def toy():
    return generate_toy(3, seed=5)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.images]


def test_toy_examples_shows_images_and_modes(toy):
    modes, probs = modes_of(toy["objects"], toy["probs"])
    fig = toy_examples(toy["images"], modes, probs)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 3 * (1 + 4)
    t = titles(fig)
    assert t[:5] == ["image"] + [f"{name} p={p:.2f}" for name, p in zip(["empty", "left", "right", "both"], probs[0])]
    # the uint8 image is shown on its own 0..255 scale, the masks on 0..1
    assert shown[0].images[0].get_clim() == (0, 255) and shown[1].images[0].get_clim() == (0, 1)
    np.testing.assert_array_equal(shown[2].images[0].get_array(), modes[0, 1])


def test_toy_examples_names_the_mode_of_each_annotation(toy):
    modes, probs = modes_of(toy["objects"], toy["probs"])
    ann = toy["annotations"].copy()
    ann[0, 0] = modes[0, 3]  # rater 1 marks both objects
    ann[0, 1] = 0  # rater 2 marks nothing
    ann[0, 2] = 0
    ann[0, 2, :3, :3] = 1  # rater 3 marks a blob that is no mode
    fig = toy_examples(torch.from_numpy(toy["images"] / 255.0)[:, None], modes, probs, ann,
                       mode_labels=["none", "L", "R", "LR"])
    assert len([ax for ax in fig.axes if ax.images]) == 3 * (1 + 4 + 4)
    t = titles(fig)
    assert t[1:5] == [f"{name} p={p:.2f}" for name, p in zip(["none", "L", "R", "LR"], probs[0])]
    assert t[5:8] == ["rater 1: LR", "rater 2: none", "rater 3: other"]


def test_toy_examples_rejects_mismatched_shapes(toy):
    modes, probs = modes_of(toy["objects"], toy["probs"])
    with pytest.raises(ValueError, match="need images"):
        toy_examples(toy["images"][:2], modes, probs)


def test_law_plot_draws_the_data_and_the_law():
    c = np.array([0.3, 0.5, 0.7])
    ax = law_plot(c, contrast_to_prob(c) + 0.01)
    (line,) = ax.lines
    x, y = line.get_data()
    assert x[0] == CONTRAST_RANGE[0] and x[-1] == CONTRAST_RANGE[1]
    np.testing.assert_allclose(y, contrast_to_prob(x))
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 1], contrast_to_prob(c) + 0.01)
    assert ax.get_xlabel() and ax.get_ylabel()
    with pytest.raises(ValueError, match="same number"):
        law_plot(c, c[:2])


def test_gaussian_ellipses_have_the_gaussians_centres_and_widths():
    fig, ax = plt.subplots()
    mu, sigma = torch.tensor([[0.0, 1.0], [2.0, -1.0]]), torch.tensor([[0.5, 0.25], [1.0, 2.0]])
    patches = gaussian_ellipses(ax, mu, sigma, n_std=2.0, color="C3")
    assert len(patches) == 2 and len(ax.patches) == 2
    assert patches[1].center == (2.0, -1.0)
    assert (patches[0].width, patches[0].height) == (2.0, 1.0)
    assert (patches[1].width, patches[1].height) == (4.0, 8.0)
    assert not patches[0].get_fill()
    lo, hi = ax.get_ylim()
    assert lo <= -5 and hi >= 1.5  # the view was rescaled to show them
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        gaussian_ellipses(ax, mu[:, :1], sigma[:, :1])


def test_calibration_plot_draws_each_binning_it_is_asked_for():
    from probunet.book.plots import calibration_plot
    from probunet.toy import calibration_curve

    rng = np.random.default_rng(0)
    true = rng.uniform(0.05, 0.95, 500)
    predicted = np.clip(true + rng.normal(0, 0.1, 500), 0, 1)
    ax = calibration_plot(predicted, true, by=("true", "predicted"))
    lines = {line.get_label(): line for line in ax.lines}
    assert set(lines) == {"model, binned by true", "model, binned by predicted", "perfect"}
    for key in ("true", "predicted"):
        curve = calibration_curve(predicted, true, by=key)
        ok = curve["counts"] > 0
        x, y = lines[f"model, binned by {key}"].get_data()
        assert np.allclose(x, curve["mean_true"][ok]) and np.allclose(y, curve["mean_predicted"][ok])
    assert [line.get_label() for line in calibration_plot(predicted, true).lines] == ["model, binned by true", "perfect"]
