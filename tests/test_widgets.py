import matplotlib

matplotlib.use("Agg")
import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from probunet import ProbabilisticUNet  # noqa: E402
from probunet.book.plots import latent_traversal  # noqa: E402
from probunet.book.widgets import latent_explorer  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ProbabilisticUNet(channels=(4, 8), convs_per_block=1, latent_dim=3).eval()


def test_latent_traversal_draws_one_row_per_dim(model):
    fig = latent_traversal(model, torch.rand(1, 16, 16), steps=5)
    assert len(fig.axes) == 3 * 6
    assert [ax.get_title() for ax in fig.axes[1:6]] == ["-2.5σ", "-1.2σ", "+0.0σ", "+1.2σ", "+2.5σ"]
    plt.close(fig)


def test_latent_explorer_has_a_slider_per_dim_and_redraws(model, monkeypatch):
    draws = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: (draws.append(plt.gcf()), plt.close("all")))
    ui = latent_explorer(model, torch.rand(4, 1, 16, 16))
    controls = ui.children[0].children
    assert isinstance(controls[0], widgets.IntSlider) and controls[0].max == 3
    sliders = controls[1:]
    assert len(sliders) == 3 and all(isinstance(s, widgets.FloatSlider) for s in sliders)
    assert len(draws) == 1
    sliders[1].value = 2.0
    controls[0].value = 2
    assert len(draws) == 3
    assert [ax.get_title() for ax in draws[-1].axes] == ["image", "p(foreground | x, z)", "decoded mask"]
