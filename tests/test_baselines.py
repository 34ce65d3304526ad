"""The Probabilistic U-Net's rivals (probunet.baselines): shapes, what their
samples can and cannot do, gradients, the M-heads rule, the SSN covariance,
checkpoints, training with fit and bad input."""

import pytest
import torch

from probunet import (MultiAnnotatorDataset, TrainConfig, evaluate_annotations,
                      fit, load_model, save_checkpoint)
from probunet.baselines import (DropoutUNet, Image2ImageVAE, MultiHeadUNet,
                                StochasticSegmentationNetwork, UNetEnsemble)

torch.set_num_threads(1)
SMALL = dict(channels=(4, 8), convs_per_block=1)
CLASSES = {
    "ensemble": (UNetEnsemble, dict(members=3)),
    "mheads": (MultiHeadUNet, dict(heads=3)),
    "dropout": (DropoutUNet, dict(p=0.5)),
    "image2image": (Image2ImageVAE, dict(latent_dim=3)),
    "ssn": (StochasticSegmentationNetwork, dict(rank=4, mc_samples=5)),
}


def build(name, **kwargs):
    cls, extra = CLASSES[name]
    torch.manual_seed(0)
    return cls(**(SMALL | extra | kwargs))


def batch(b=2, c=1, k=2, hw=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, c, hw, hw, generator=g),
            torch.randint(k, (b, hw, hw), generator=g))


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("c,k", [(1, 2), (3, 4)])
def test_shapes(name, c, k):
    model = build(name, in_channels=c, num_classes=k)
    x, y = batch(c=c, k=k)
    terms = model.loss(x, y)
    assert terms["total"].dim() == 0 and torch.isfinite(terms["total"])
    assert model.sample(x, 5).shape == (2, 5, k, 16, 16)
    assert model.eval()(x).shape == (2, k, 16, 16)


def distinct_masks(model, x, n=60):
    """Number of distinct argmax masks among n samples, per image."""
    masks = model.sample(x, n).argmax(2)  # (B, n, H, W)
    return [len({m.numpy().tobytes() for m in image}) for image in masks]


@pytest.mark.parametrize("name,count", [("ensemble", 3), ("mheads", 3)])
def test_a_finite_set_gives_at_most_that_many_masks(name, count):
    model = build(name).eval()
    x, _ = batch()
    distinct = distinct_masks(model, x)
    assert all(1 < d <= count for d in distinct), distinct


@pytest.mark.parametrize("name", ["dropout", "image2image", "ssn"])
def test_continuous_noise_gives_many_masks(name):
    model = build(name).eval()
    x, _ = batch()
    assert min(distinct_masks(model, x)) > 10


def test_dropout_is_off_in_forward_and_on_in_sample():
    model = build("dropout").eval()
    x, _ = batch()
    assert torch.equal(model(x), model(x))
    a, b = model.sample(x, 1), model.sample(x, 1)
    assert not torch.equal(a, b)
    assert torch.equal(model(x), model(x))  # sampling switched it off again


def test_image2image_prior_ignores_the_image_and_samples_decode_its_draws():
    model = build("image2image").eval()
    x, _ = batch()
    p = model.prior(x)
    assert torch.equal(p.mu, torch.zeros(2, 3))
    assert torch.equal(p.log_sigma, torch.zeros(2, 3))
    torch.manual_seed(5)
    samples = model.sample(x, 2)
    torch.manual_seed(5)
    z = torch.randn(4, 3)  # the rows sample_by_passes draws, image-major
    decoded = model.decode(x.repeat_interleave(2, 0), z)
    assert torch.allclose(samples.flatten(0, 1), decoded, atol=1e-5)


@pytest.mark.parametrize("name", CLASSES)
def test_gradients_reach_every_parameter(name):
    model = build(name).train()
    x, y = batch(b=4)
    model.loss(x, y)["total"].backward()
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def head_grads(model, x, y):
    """Per head, the size of the gradient on its output channels."""
    model.zero_grad()
    model.loss(x, y)["total"].backward()
    g = model.head.weight.grad.flatten(1).abs().sum(1)  # (heads * K,)
    return g.unflatten(0, (model.heads, model.num_classes)).sum(1)


def test_mheads_trains_only_the_best_head_per_example():
    model = build("mheads")
    x, y = batch(b=2)
    with torch.no_grad():
        logits = model.head_logits(x)
        ce = torch.stack([torch.nn.functional.cross_entropy(
            logits[:, m], y, reduction="none").flatten(1).sum(1)
            for m in range(3)], 1)  # (B, heads)
    best = ce.argmin(1)
    for i in range(2):
        grads = head_grads(model, x[i:i + 1], y[i:i + 1])
        assert grads[best[i]] > 0
        others = [m for m in range(3) if m != best[i]]
        assert torch.all(grads[others] == 0), grads
    # the loss is the best head's cross-entropy, averaged over the batch
    assert torch.isclose(model.loss(x, y)["total"], ce.min(1).values.mean())


def test_relaxed_mheads_gives_the_other_heads_epsilon():
    model = build("mheads", epsilon=0.1)
    x, y = batch(b=1)
    grads = head_grads(model, x, y)
    assert torch.all(grads > 0), grads  # every head learns a little
    with torch.no_grad():
        logits = model.head_logits(x)
        ce = torch.stack([torch.nn.functional.cross_entropy(
            logits[:, m], y, reduction="sum") for m in range(3)])
    best = ce.min()
    want = 0.9 * best + 0.1 * (ce.sum() - best) / 2
    terms = model.loss(x, y)
    assert torch.isclose(terms["total"], want)
    assert torch.isclose(terms["recon"], best)


def test_ssn_covariance_is_low_rank_plus_diagonal_and_positive():
    model = build("ssn", rank=4)
    x, _ = batch(b=1, hw=8)
    dist = model.distribution(x)
    cov = dist.covariance_matrix[0]  # (KHW, KHW) = (128, 128)
    factor, diag = dist.cov_factor[0], dist.cov_diag[0]
    assert factor.shape == (128, 4) and torch.all(diag > 0)
    assert torch.allclose(cov, factor @ factor.T + torch.diag(diag),
                          atol=1e-5)
    assert torch.linalg.matrix_rank(cov - torch.diag(diag)) <= 4
    assert torch.linalg.eigvalsh(cov).min() > 0
    # the samples follow that covariance
    eta = dist.sample((20000,))[:, 0]
    emp = torch.cov(eta.T)
    assert (emp - cov).abs().max() < 0.1 * cov.diagonal().max()


def test_ssn_loss_is_the_monte_carlo_log_likelihood():
    model = build("ssn", mc_samples=1)
    x, y = batch()
    torch.manual_seed(3)
    nll = model.loss(x, y)["total"]
    torch.manual_seed(3)
    eta = model.distribution(x).rsample((1,))[0].unflatten(1, (2, 16, 16))
    ce = torch.nn.functional.cross_entropy(eta, y, reduction="sum") / 2
    assert torch.isclose(nll, ce, rtol=1e-5)


@pytest.mark.parametrize("name", CLASSES)
def test_checkpoint_round_trip(name, tmp_path):
    model = build(name).eval()
    save_checkpoint(tmp_path / "m.pt", model, {"seed": 0})
    loaded = load_model(tmp_path / "m.pt", "cpu")
    assert type(loaded) is type(model) and loaded.config == model.config
    x, _ = batch()
    assert torch.equal(loaded(x), model(x))
    torch.manual_seed(1)
    a = model.sample(x, 3)
    torch.manual_seed(1)
    assert torch.equal(loaded.sample(x, 3), a)


def toy_set():
    """Left half or right half marked, the image says nothing: two modes."""
    x = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    left = torch.zeros(16, 16, dtype=torch.uint8)
    left[:, :8] = 1
    masks = torch.stack([left, 1 - left]).expand(16, 2, 16, 16)
    return MultiAnnotatorDataset(x, masks)


@pytest.mark.parametrize("name", CLASSES)
def test_trains_with_fit_and_is_scored(name):
    model = build(name)
    data = toy_set()
    history = fit(model, data, TrainConfig(steps=60, batch_size=8, lr=3e-3),
                  device="cpu", progress=False, log_every=10)
    assert history["total"][-1] < history["total"][0]
    scores = evaluate_annotations(model, data, n=4)
    assert 0 <= scores["hm_iou"] <= 1


BAD = [
    (lambda: UNetEnsemble(members=0), ValueError, r"members must be >= 1"),
    (lambda: MultiHeadUNet(heads=2.5), TypeError, r"heads must be an int"),
    (lambda: MultiHeadUNet(epsilon=1.0), ValueError, r"epsilon must be < 1"),
    (lambda: MultiHeadUNet(heads=1, epsilon=0.1), ValueError, r"one head"),
    (lambda: DropoutUNet(p=1.0), ValueError, r"p must be < 1"),
    (lambda: DropoutUNet(p=-0.1), ValueError, r"p must be >= 0"),
    (lambda: Image2ImageVAE(latent_dim=0), ValueError, r"latent_dim must be"),
    (lambda: StochasticSegmentationNetwork(rank=0), ValueError, r"rank must"),
    (lambda: StochasticSegmentationNetwork(channels=(4, 0)), ValueError,
     r"channels\[i\] must be >= 1"),
]


@pytest.mark.parametrize("make,error,message", BAD)
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("name", CLASSES)
def test_bad_input(name):
    model = build(name)
    x, y = batch()
    with pytest.raises(ValueError, match="input channel"):
        model.sample(torch.rand(2, 3, 16, 16), 2)
    with pytest.raises(ValueError, match="NaN"):
        model.loss(x * float("nan"), y)
    with pytest.raises(ValueError, match="float64"):
        model.loss(x.double(), y)
    with pytest.raises(ValueError, match="multiples of"):
        model.eval()(torch.rand(2, 1, 15, 15))
    with pytest.raises(ValueError, match="labels must be in"):
        model.loss(x, y + 2)
    with pytest.raises(TypeError, match="n must be an int"):
        model.sample(x, 1.5)
