"""The rivals chapter's figures: every method's samples, GED against S, and
sampled against true frequencies."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from probunet.book.plots import (frequency_scatter,  # noqa: E402
                                 ged_against_samples, method_samples)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_method_samples_shows_truth_and_each_methods_samples():
    modes = torch.zeros(4, 8, 8, dtype=torch.uint8)
    samples = {"a": torch.ones(10, 8, 8), "b": torch.zeros(3, 8, 8)}
    fig = method_samples(torch.rand(1, 8, 8), modes,
                         torch.tensor([0.1, 0.2, 0.3, 0.4]), samples,
                         per_method=5)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 1 + 4 + 5 + 3  # image, modes, 5 of a, all 3 of b
    assert [ax.get_title() for ax in shown[:2]] == ["image", "truth p=0.10"]
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert labels == ["a", "b"]
    # an all-foreground mask keeps its frame, so it does not vanish
    assert shown[5].axison and np.all(shown[5].images[0].get_array() == 1)


def test_ged_against_samples_draws_a_line_per_method_and_the_floor():
    ax = ged_against_samples((1, 4, 16), {"x": [0.9, 0.5, 0.3],
                                          "y": [0.4, 0.4, 0.4]},
                             floor=[0.6, 0.2, 0.1])
    lines = {line.get_label(): line for line in ax.lines}
    assert set(lines) == {"x", "y", "truth"}
    assert list(lines["x"].get_ydata()) == [0.9, 0.5, 0.3]
    assert list(lines["truth"].get_xdata()) == [1, 4, 16]
    assert ax.get_xscale() == "log"


def test_frequency_scatter_plots_every_mode_but_other():
    true = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    freqs = {"m": torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0]])}
    fig = frequency_scatter(freqs, true, columns=2)
    points = fig.axes[0].collections[0].get_offsets()
    assert np.allclose(points, [[0.2, 0.1], [0.8, 0.7], [0.5, 0.5],
                                [0.5, 0.5]])
    assert not fig.axes[1].axison  # the unused panel is blank
