"""Tests of the model's options beyond the reference: coordinate channels, a mixture prior, GECO."""
from __future__ import annotations

import math

import pytest
import torch

from probunet.toy import ToyAmbiguousDataset
from probunet.latent import DiagonalGaussian, GaussianMixture
from probunet.model import GECO_LAMBDA_RANGE, GECO_MOMENTUM, GECO_RATE, ProbabilisticUNet, add_coordinates
from probunet.checkpoint import load_checkpoint, load_model, save_checkpoint
from probunet.train import fit

torch.set_num_threads(1)

TINY = dict(channels=(4, 8), convs_per_block=1, fcomb_channels=8, latent_dim=3)
VARIANTS = {"coordinates": dict(coordinates=True), "mixture": dict(prior_components=3),
            "geco": dict(geco_target=0.01), "all": dict(coordinates=True, prior_components=3, geco_target=0.01)}


def make(seed=0, **kw) -> ProbabilisticUNet:
    torch.manual_seed(seed)
    return ProbabilisticUNet(1, 2, **(TINY | kw))


def batch(b=4, h=16, w=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g), torch.randint(0, 2, (b, h, w), generator=g)


def test_add_coordinates_appends_rows_and_columns_in_minus_one_to_one():
    x = torch.zeros(2, 3, 4, 5)
    out = add_coordinates(x)
    assert out.shape == (2, 5, 4, 5) and torch.equal(out[:, :3], x)
    rows, cols = out[0, 3], out[0, 4]
    assert torch.allclose(rows[:, 0], torch.tensor([-1, -1 / 3, 1 / 3, 1])) and torch.all(rows == rows[:, :1])
    assert torch.allclose(cols[0], torch.tensor([-1, -0.5, 0, 0.5, 1])) and torch.all(cols == cols[:1])


@pytest.mark.parametrize("name", list(VARIANTS))
def test_shapes_of_every_variant(name):
    model = make(**VARIANTS[name]).eval()
    x, y = batch(3)
    assert model.sample(x, 5).shape == (3, 5, 2, 16, 16)
    assert model.reconstruct(x, y, n=2).shape == (3, 2, 2, 16, 16)
    assert model(x, y)["total"].shape == ()
    defaults = dict(in_channels=1, num_classes=2, fcomb_layers=3, coordinates=False, prior_components=1,
                    geco_target=None)
    assert model.config == TINY | defaults | VARIANTS[name]


def test_coordinates_reach_all_three_nets_and_break_translation_invariance():
    model = make(coordinates=True)
    first = {name: next(m for m in getattr(model, name).modules() if isinstance(m, torch.nn.Conv2d)).in_channels
             for name in ("unet", "prior", "posterior")}
    assert first == {"unet": 3, "prior": 3, "posterior": 5}  # image + row + column (+ 2 one-hot classes)
    # a constant image: away from the zero-padded border the output is constant without coordinates, not with them
    x, z = torch.full((1, 1, 32, 32), 0.5), torch.zeros(1, 3)
    for coords in (False, True):
        centre = make(coordinates=coords).eval().decode(x, z)[0, :, 12:20, 12:20]
        flat = torch.allclose(centre, centre[:, :1, :1].expand_as(centre), atol=1e-6)
        assert flat != coords


def test_mixture_log_prob_matches_a_hand_computed_density():
    # M = 2, D = 1: weights 1/4 and 3/4, means 0 and 2, sigmas 1 and 0.5, at z = 1
    mix = GaussianMixture(torch.tensor([[[0.0], [2.0]]]), torch.log(torch.tensor([[[1.0], [0.5]]])),
                          torch.log(torch.tensor([[0.25, 0.75]])))
    normal = lambda z, m, s: math.exp(-0.5 * ((z - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))  # noqa: E731
    expected = math.log(0.25 * normal(1, 0, 1) + 0.75 * normal(1, 2, 0.5))
    assert mix.log_prob(torch.tensor([[1.0]])).item() == pytest.approx(expected, rel=1e-6)


def test_mixture_of_one_component_is_the_gaussian():
    g = torch.Generator().manual_seed(0)
    mu, ls = torch.randn(4, 3, generator=g), 0.3 * torch.randn(4, 3, generator=g)
    gauss, mix = DiagonalGaussian(mu, ls), GaussianMixture(mu[:, None], ls[:, None], torch.zeros(4, 1))
    z = torch.randn(4, 3, generator=g)
    assert torch.allclose(mix.log_prob(z), gauss.log_prob(z), atol=1e-5)


def test_mixture_samples_follow_the_weights_and_components():
    torch.manual_seed(0)
    mu = torch.tensor([[[-10.0, 0.0], [10.0, 0.0], [0.0, 10.0]]])
    mix = GaussianMixture(mu, torch.full((1, 3, 2), math.log(0.1)), torch.log(torch.tensor([[0.2, 0.3, 0.5]])))
    z = mix.rsample(20_000)[0]  # (n, D)
    assert mix.rsample().shape == (1, 2) and z.shape == (20_000, 2)
    which = torch.cdist(z, mu[0]).argmin(1)
    freqs = torch.bincount(which, minlength=3).float() / len(z)
    assert torch.allclose(freqs, torch.tensor([0.2, 0.3, 0.5]), atol=0.015)
    assert (z - mu[0][which]).std().item() == pytest.approx(0.1, rel=0.05)


def test_mixture_prior_kl_is_the_sampled_estimate_and_zero_when_prior_equals_posterior():
    model = make(prior_components=2).eval()
    x, y = batch(1)
    q = model.posterior_dist(x, y)
    with torch.no_grad():  # both components of the prior = the posterior's Gaussian: log q(z) - log p(z) = 0
        model.prior.to_params.weight.zero_()
        model.prior.to_params.bias.copy_(torch.cat([q.mu[0], q.log_sigma[0]]).repeat(2))
    assert model.elbo(x, y)["kl"].abs().item() < 1e-5
    # in general: one posterior draw's log q(z) - log p(z), whatever analytic_kl says; its mean over draws is > 0
    model = make(prior_components=2, seed=3).eval()
    x, y = batch()
    torch.manual_seed(0)
    first = model.elbo(x, y)["kl"]
    torch.manual_seed(0)
    assert torch.equal(first, model.elbo(x, y, analytic_kl=False)["kl"])
    kls = torch.stack([model.elbo(x, y)["kl"] for _ in range(200)])
    assert kls.std() > 0 and kls.mean() > 0


def test_sample_draws_from_the_mixture_prior():
    model = make(prior_components=3).eval()
    x, _ = batch(2)
    torch.manual_seed(0)
    p = model.prior_dist(x)
    assert isinstance(p, GaussianMixture) and p.mu.shape == (2, 3, 3) and p.log_weights.shape == (2, 3)
    assert torch.allclose(p.log_weights.exp().sum(1), torch.ones(2))
    torch.manual_seed(1)
    z = p.rsample(4)
    torch.manual_seed(1)
    assert torch.allclose(model.sample(x, 4), model.decode(x, z))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradients_reach_every_net(name):
    model = make(**VARIANTS[name]).train()
    x, y = batch()
    model.loss(x, y)["total"].backward()
    for net in ("unet", "prior", "posterior", "fcomb"):
        grads = [p.grad for p in getattr(model, net).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), net
    if "prior_components" in VARIANTS[name]:  # the component weights learn too
        assert model.prior.to_weights.weight.grad.abs().sum() > 0


def test_geco_loss_and_multiplier_match_a_hand_computed_step():
    model = make(geco_target=0.01).train()
    x, y = batch()
    pixels = 16 * 16
    torch.manual_seed(0)
    elbo = model.elbo(x, y)
    torch.manual_seed(0)
    terms = model.loss(x, y)
    c = elbo["recon"].item() - 0.01 * pixels
    c_ma = (1 - GECO_MOMENTUM) * c  # the moving average starts at 0
    lam = min(max(math.exp(GECO_RATE * c_ma / pixels), GECO_LAMBDA_RANGE[0]), GECO_LAMBDA_RANGE[1])
    assert model.geco_constraint.item() == pytest.approx(c_ma, rel=1e-5)
    assert model.geco_lambda.item() == pytest.approx(lam, rel=1e-5)
    assert terms["total"].item() == pytest.approx(elbo["kl"].item() + lam * c_ma, rel=1e-5)
    # the gradient is this batch's: d total / d recon = lambda
    recon_grad = torch.autograd.grad(terms["total"], terms["recon"], retain_graph=True)[0]
    assert recon_grad.item() == pytest.approx(lam, rel=1e-5)


def test_geco_multiplier_moves_only_in_training_and_stays_in_range():
    model = make(geco_target=1e-6).eval()  # a target no model reaches: lambda would grow without bound
    x, y = batch()
    model.loss(x, y)
    assert model.geco_lambda.item() == 1.0 and model.geco_constraint.item() == 0.0
    model.train()
    with torch.no_grad():
        model.loss(x, y)
    assert model.geco_lambda.item() == 1.0
    for _ in range(300):
        model.loss(x, y)
    assert model.geco_lambda.item() == GECO_LAMBDA_RANGE[1]
    easy = make(geco_target=50.0).train()  # cross-entropy far below target: lambda falls to its floor
    for _ in range(300):
        easy.loss(x, y)
    assert easy.geco_lambda.item() == pytest.approx(GECO_LAMBDA_RANGE[0])


def test_geco_refuses_a_beta():
    model = make(geco_target=0.01).train()
    x, y = batch()
    with pytest.raises(ValueError, match="GECO sets the KL weight"):
        model.loss(x, y, beta=2.0)
    with pytest.raises(ValueError, match="GECO sets the KL weight"):
        fit(model, ToyAmbiguousDataset("train"), steps=2, batch_size=2, beta_warmup=2, progress=False, device="cpu")


@pytest.mark.parametrize("bad", [dict(prior_components=0), dict(geco_target=0.0), dict(geco_target=-1.0),
                                 dict(geco_target=float("nan"))])
def test_bad_options(bad):
    with pytest.raises(ValueError, match="(prior_components|geco_target) must be"):
        make(**bad)


def test_config_holds_every_option_so_a_checkpoint_rebuilds_the_model():
    assert set(make().config) == {"in_channels", "num_classes", "channels", "convs_per_block", "latent_dim",
                                  "fcomb_layers", "fcomb_channels", "coordinates", "prior_components", "geco_target"}


class Interrupting(torch.utils.data.Dataset):
    """Passes items through, and raises KeyboardInterrupt at item ``stop_at`` (a run stopped by the user)."""

    def __init__(self, data, stop_at: float = float("inf")):
        self.data, self.stop_at, self.count = data, stop_at, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.count += 1
        if self.count > self.stop_at:
            raise KeyboardInterrupt
        return self.data[i]


@pytest.mark.parametrize("variant", ["default", "all"])
def test_a_run_interrupted_after_3_steps_resumes_to_the_same_weights_as_6_straight_steps(tmp_path, variant):
    data = ToyAmbiguousDataset("train")
    kw = TINY | VARIANTS.get(variant, {})
    settings = dict(steps=6, batch_size=4, seed=0, progress=False, device="cpu", checkpoint_every=3)
    torch.manual_seed(0)
    straight = ProbabilisticUNet(**kw)
    fit(straight, Interrupting(data), checkpoint=tmp_path / "a.pt", **settings)
    torch.manual_seed(0)
    resumed = ProbabilisticUNet(**kw)
    with pytest.raises(KeyboardInterrupt):  # stopped while drawing the 4th batch
        fit(resumed, Interrupting(data, stop_at=3 * 4), checkpoint=tmp_path / "b.pt", **settings)
    assert load_checkpoint(tmp_path / "b.pt")["training"]["step"] == 3
    assert not all(torch.equal(v, straight.state_dict()[k]) for k, v in resumed.state_dict().items())
    fresh = ProbabilisticUNet(**kw)  # a new process: only the checkpoint carries the state
    fit(fresh, Interrupting(data), checkpoint=tmp_path / "b.pt", resume=True, **settings)
    assert load_checkpoint(tmp_path / "b.pt")["training"]["step"] == 6
    for k, v in straight.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k
    if variant == "all":
        assert fresh.geco_lambda.item() == straight.geco_lambda.item() != 1.0


def test_checkpoint_round_trip_of_every_variant(tmp_path):
    data = ToyAmbiguousDataset("train")
    kw = TINY | VARIANTS["all"]
    torch.manual_seed(0)
    model = ProbabilisticUNet(**kw)
    fit(model, data, steps=6, batch_size=4, seed=0, progress=False, device="cpu", checkpoint=tmp_path / "a.pt")
    loaded = load_model(tmp_path / "a.pt", device="cpu")
    assert loaded.config == model.config and loaded.geco_lambda.item() == model.geco_lambda.item() != 1.0
    x = data.images[:2]
    model.eval()
    torch.manual_seed(5)
    expected = model.sample(x, 3)
    torch.manual_seed(5)
    assert torch.equal(loaded.sample(x, 3), expected)
    # half-precision weights (as shipped) load back into float32 within float16's rounding
    save_checkpoint(tmp_path / "w.pt", model, half=True)
    rebuilt = load_model(tmp_path / "w.pt", device="cpu")
    for k, v in model.state_dict().items():
        assert rebuilt.state_dict()[k].dtype == v.dtype
        assert torch.allclose(rebuilt.state_dict()[k], v, rtol=1e-3, atol=1e-4), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_variant_works_on_cuda():
    x, y = (t.cuda() for t in batch(2))
    model = make(**VARIANTS["all"]).cuda().train()
    terms = model.loss(x, y)
    terms["total"].backward()
    assert all(v.is_cuda and torch.isfinite(v) for v in terms.values())
    assert model.eval().sample(x, 3).is_cuda
