"""Tests of probunet.unet, probunet.latent and probunet.model: shapes, the loss, the latent space, bad input."""
from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal
from torch.distributions import kl_divergence as torch_kl

from probunet.latent import LOG_SIGMA_RANGE, DiagonalGaussian, kl_divergence, posterior_input
from probunet.model import ProbabilisticUNet
from probunet.unet import UNet

torch.set_num_threads(1)  # tiny tensors: extra threads only add contention on a shared 2-core machine

TINY = dict(channels=(4, 8), convs_per_block=1, fcomb_channels=8)


def make(in_channels=1, num_classes=2, latent_dim=3, seed=0, **kw) -> ProbabilisticUNet:
    torch.manual_seed(seed)
    return ProbabilisticUNet(in_channels, num_classes, latent_dim=latent_dim, **(TINY | kw)).eval()


def make_unet(in_channels=1, num_classes=2, seed=0, **kw) -> UNet:
    torch.manual_seed(seed)
    return UNet(in_channels, num_classes, channels=kw.pop("channels", (4, 8)), convs_per_block=1, **kw).eval()


def batch(b=4, c=1, h=16, w=16, k=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g), torch.randint(0, k, (b, h, w), generator=g)


def set_log_sigma_bias(net, value: float, zero_weights: bool = True):
    d = net.latent_dim
    with torch.no_grad():
        net.to_params.bias[d:] = value
        if zero_weights:
            net.to_params.weight[d:] = 0


# -----------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("hw", [(16, 16), (32, 48), (64, 64)])
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("c", [1, 3])
def test_output_shapes(hw, k, c):
    h, w = hw
    model, unet = make(c, k), make_unet(c, k)
    x, y = batch(2, c, h, w, k)
    d = model.latent_dim
    assert model.sample(x, 3).shape == (2, 3, k, h, w)
    assert model.sample(x).shape == (2, 1, k, h, w)
    assert model.reconstruct(x, y).shape == (2, 1, k, h, w)
    assert model.reconstruct(x, y, n=4).shape == (2, 4, k, h, w)
    assert model.reconstruct(x, y, use_posterior_mean=True, n=2).shape == (2, 2, k, h, w)
    assert model.decode(x, torch.zeros(2, d)).shape == (2, k, h, w)
    assert model.decode(x, torch.zeros(2, 5, d)).shape == (2, 5, k, h, w)
    assert model.prior_dist(x).mu.shape == (2, d) and model.posterior_dist(x, y).log_sigma.shape == (2, d)
    assert unet(x).shape == (2, k, h, w)
    assert unet.sample(x, 3).shape == (2, 3, k, h, w)
    terms = model.elbo(x, y)
    assert set(terms) == {"total", "recon", "kl"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in terms.values())


def test_three_levels_and_no_fcomb_hidden_layers():
    model = make(channels=(4, 8, 8), fcomb_layers=0)
    x, y = batch(2, 1, 32, 32)
    assert model.sample(x, 2).shape == (2, 2, 2, 32, 32)
    assert torch.isfinite(model.elbo(x, y)["total"])


def test_decode_n_latents_equals_decoding_each():
    model = make()
    x, _ = batch(3)
    z = torch.randn(3, 4, model.latent_dim)
    out = model.decode(x, z)
    for j in range(4):
        torch.testing.assert_close(out[:, j], model.decode(x, z[:, j]))
    # images do not mix inside a batch
    torch.testing.assert_close(out[1:2], model.decode(x[1:2], z[1:2]))


def test_sample_decodes_prior_draws():
    model = make()
    x, _ = batch(3)
    torch.manual_seed(5)
    s = model.sample(x, 4)
    torch.manual_seed(5)
    z = model.prior_dist(x).rsample(4)
    torch.testing.assert_close(s, model.decode(x, z))
    assert not torch.allclose(s[:, 0], s[:, 1]), "prior samples should differ"


# -----------------------------------------------------------------------------
# the latent space


def test_analytic_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu_q, mu_p = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    ls_q, ls_p = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    q, p = DiagonalGaussian(mu_q, ls_q), DiagonalGaussian(mu_p, ls_p)
    ref = torch_kl(Independent(Normal(mu_q, ls_q.exp()), 1), Independent(Normal(mu_p, ls_p.exp()), 1))
    out = kl_divergence(q, p)
    assert out.shape == (5,)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(kl_divergence(q, q), torch.zeros(5, dtype=torch.float64))
    # and log_prob is the Normal's
    z = torch.randn(5, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(q.log_prob(z), Independent(Normal(mu_q, ls_q.exp()), 1).log_prob(z))


def test_sampled_kl_averages_to_analytic_kl():
    model = make(latent_dim=3)
    with torch.no_grad():  # move the prior away from the posterior so the KL is not ~0
        model.prior.to_params.bias[:3] += 1.0
        model.prior.to_params.bias[3:] -= 0.5
    x, y = batch(1)
    xs, ys = x.expand(1000, -1, -1, -1), y.expand(1000, -1, -1)
    with torch.no_grad():
        analytic = model.elbo(x, y)["kl"].item()
        q, p = model.posterior_dist(x, y), model.prior_dist(x)
        z = q.rsample(4000)[0]
        draws = q.log_prob(z) - p.log_prob(z)  # per-draw estimates, only to size the tolerance
        means = []
        for seed in range(4):
            torch.manual_seed(seed)
            terms = model.elbo(xs, ys, analytic_kl=False)
            torch.testing.assert_close(terms["total"], terms["recon"] + terms["kl"])
            means.append(terms["kl"].item())
    assert analytic > 1.0
    se = draws.std().item() / 4000**0.5
    assert abs(sum(means) / 4 - analytic) < 5 * se
    assert len(set(means)) == 4, "the sampled KL should change with the posterior draw"


def test_log_sigma_is_clamped():
    model = make()
    set_log_sigma_bias(model.posterior, 1e4)
    set_log_sigma_bias(model.prior, -1e4)
    x, y = batch()
    q, p = model.posterior_dist(x, y), model.prior_dist(x)
    assert (q.log_sigma == LOG_SIGMA_RANGE[1]).all() and (p.log_sigma == LOG_SIGMA_RANGE[0]).all()
    model.train()
    for analytic in (True, False):
        model.zero_grad()
        terms = model.elbo(x, y, analytic_kl=analytic)
        assert all(torch.isfinite(v) for v in terms.values()), terms
        terms["total"].backward()
        assert all(torch.isfinite(prm.grad).all() for prm in model.parameters() if prm.grad is not None)
    # the other way round as well
    set_log_sigma_bias(model.posterior, -1e4)
    set_log_sigma_bias(model.prior, 1e4)
    assert torch.isfinite(model.elbo(x, y)["total"])


def test_posterior_depends_on_y_and_prior_does_not():
    model = make()
    assert list(inspect.signature(model.prior_dist).parameters) == ["x"]
    x, y = batch()
    y2 = 1 - y
    p_before = model.prior_dist(x)
    q1, q2 = model.posterior_dist(x, y), model.posterior_dist(x, y2)
    assert not torch.allclose(q1.mu, q2.mu)
    model.elbo(x, y2)
    p_after = model.prior_dist(x)
    assert torch.equal(p_before.mu, p_after.mu) and torch.equal(p_before.log_sigma, p_after.log_sigma)
    torch.testing.assert_close(model.elbo(x, y)["kl"], kl_divergence(q1, p_before).mean())
    assert model.elbo(x, y)["kl"] != model.elbo(x, y2)["kl"]


def test_gradients_reach_every_net():
    model = make().train()
    x, y = batch()
    model.elbo(x, y)["total"].backward()
    for name in ("unet", "prior", "posterior", "fcomb"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    # with beta = 0 only the KL could reach the prior: it gets nothing
    model.zero_grad(set_to_none=True)
    model.elbo(x, y, beta=0.0)["total"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.prior.parameters())


def test_posterior_input_is_image_and_shifted_one_hot():
    x, y = batch(2, 3, 16, 16, k=4)
    out = posterior_input(x, y, 4)
    assert out.shape == (2, 3 + 4, 16, 16) and out.dtype == x.dtype
    assert torch.equal(out[:, :3], x)
    for k in range(4):
        expected = torch.where(y == k, 0.5, -0.5)
        assert torch.equal(out[:, 3 + k], expected)
    model = make(in_channels=3, num_classes=4)
    q = model.posterior_dist(x, y)
    torch.testing.assert_close(q.mu, model.posterior(out).mu)


def test_reconstruct_with_posterior_mean_is_deterministic():
    model = make()
    x, y = batch()
    torch.manual_seed(0)
    a = model.reconstruct(x, y, use_posterior_mean=True, n=3)
    torch.manual_seed(1)
    b = model.reconstruct(x, y, use_posterior_mean=True, n=3)
    assert torch.equal(a, b)
    expected = model.decode(x, model.posterior_dist(x, y).mu)
    for j in range(3):
        torch.testing.assert_close(a[:, j], expected)
    # without the flag, reconstructions are posterior samples
    torch.manual_seed(0)
    c = model.reconstruct(x, y, n=2)
    assert not torch.allclose(c[:, 0], c[:, 1])


@pytest.mark.parametrize("beta", [0.0, 0.5, 3.0])
def test_elbo_total_is_recon_plus_beta_kl(beta):
    model = make()
    x, y = batch()
    terms = model.elbo(x, y, beta=beta)
    assert terms["kl"] > 0
    torch.testing.assert_close(terms["total"], terms["recon"] + beta * terms["kl"])
    assert model.loss(x, y, beta=beta)["total"].shape == ()


def test_recon_is_per_image_sum_averaged_over_batch():
    model = make()
    x, y = batch(4, 1, 16, 16)
    torch.manual_seed(7)
    terms = model.elbo(x, y)
    torch.manual_seed(7)
    z = model.posterior_dist(x, y).rsample()
    logits = model.decode(x, z)
    per_image = F.cross_entropy(logits, y, reduction="none").sum((1, 2))
    torch.testing.assert_close(terms["recon"], per_image.mean())
    torch.testing.assert_close(terms["recon"], F.cross_entropy(logits, y, reduction="sum") / 4)
    assert terms["recon"] > 16 * 16 * 0.1, "recon should be a sum over pixels, not a mean"


def test_duplicating_the_batch_keeps_the_loss():
    """With a near-deterministic posterior, recon and KL of [x, x] equal those of x: batch means, not sums."""
    model = make()
    set_log_sigma_bias(model.posterior, -100.0)  # clamped to sigma = e^-6
    x, y = batch(3)
    torch.manual_seed(0)
    one = model.elbo(x, y)
    torch.manual_seed(0)
    two = model.elbo(torch.cat([x, x]), torch.cat([y, y]))
    torch.testing.assert_close(two["recon"], one["recon"], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(two["kl"], one["kl"], rtol=1e-5, atol=1e-5)
    singles = torch.stack([model.elbo(x[i:i + 1], y[i:i + 1])["recon"] for i in range(3)])
    torch.testing.assert_close(one["recon"], singles.mean(), rtol=1e-3, atol=1e-3)


def test_unet_baseline_loss_and_sample():
    unet = make_unet(num_classes=3)
    x, y = batch(4, k=3)
    terms = unet.loss(x, y)
    assert set(terms) == {"total", "recon"}
    torch.testing.assert_close(terms["recon"], F.cross_entropy(unet(x), y, reduction="sum") / 4)
    torch.testing.assert_close(terms["total"], terms["recon"])
    s = unet.sample(x, 5)
    pred = unet(x)
    assert s.shape == (4, 5, 3, 16, 16)
    for j in range(5):
        assert torch.equal(s[:, j], pred)


# -----------------------------------------------------------------------------
# bad input


@pytest.fixture(scope="module")
def models():
    return make(), make_unet()


def test_wrong_channel_count(models):
    model, unet = models
    x, y = batch(2, c=2)
    for call in (lambda: model.sample(x), lambda: model.elbo(x, y), lambda: unet(x), lambda: unet.loss(x, y)):
        with pytest.raises(ValueError, match=r"expected 1 input channel\(s\), got 2"):
            call()
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\)"):
        model.sample(torch.rand(1, 16, 16))


def test_mask_size_mismatch(models):
    model, unet = models
    x, _ = batch(2)
    for y in (torch.zeros(2, 16, 8, dtype=torch.long), torch.zeros(3, 16, 16, dtype=torch.long)):
        for call in (model.elbo, model.posterior_dist, model.reconstruct, unet.loss):
            with pytest.raises(ValueError, match="does not match image shape"):
                call(x, y)
    with pytest.raises(ValueError, match=r"class indices \(B, H, W\)"):
        model.elbo(x, torch.zeros(2, 1, 16, 16, dtype=torch.long))


@pytest.mark.parametrize("bad_label", [-1, 2, 7])
def test_labels_out_of_range(models, bad_label):
    model, unet = models
    x, y = batch(2)
    y[1, 3, 4] = bad_label
    for call in (model.elbo, model.posterior_dist, model.reconstruct, unet.loss):
        with pytest.raises(ValueError, match=r"mask labels must be in \[0, 1\]"):
            call(x, y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_float_or_bool_mask(models, dtype):
    model, unet = models
    x, y = batch(2)
    for call in (model.elbo, unet.loss):
        with pytest.raises(ValueError, match=f"integer class indices, got dtype {dtype}"):
            call(x, y.to(dtype))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32])
def test_integer_mask_of_other_dtype_works_or_is_rejected(models, dtype):
    model, unet = models
    x, y = batch(2)
    for name in ("elbo", "unet"):
        try:
            torch.manual_seed(0)
            out = model.elbo(x, y.to(dtype)) if name == "elbo" else unet.loss(x, y.to(dtype))
        except ValueError:
            continue
        torch.manual_seed(0)
        ref = model.elbo(x, y) if name == "elbo" else unet.loss(x, y)
        torch.testing.assert_close(out["total"], ref["total"])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_image(models, value):
    model, unet = models
    x, y = batch(2)
    x[0, 0, 2, 2] = value
    for call in (lambda: model.sample(x), lambda: model.elbo(x, y), lambda: unet(x)):
        with pytest.raises(ValueError, match="NaN or inf"):
            call()


def test_unsupported_size_names_size_and_multiple():
    model = make(channels=(4, 8, 8))
    unet = make_unet(channels=(4, 8, 8))
    x, y = batch(1, 1, 30, 30)
    pattern = r"30x30.*3 levels.*multiples of 2\*\*\(levels-1\) = 4.*28x28"
    for call in (lambda: model.sample(x), lambda: model.elbo(x, y), lambda: model.prior_dist(x), lambda: unet(x)):
        with pytest.raises(ValueError, match=pattern):
            call()
    with pytest.raises(ValueError, match=r"32x30"):
        model.sample(torch.rand(1, 1, 32, 30))
    with pytest.raises(ValueError, match=r"2x2.*= 4"):  # smaller than one bottom-level pixel
        model.sample(torch.rand(1, 1, 2, 2))
    assert model.sample(torch.rand(1, 1, 28, 28)).shape == (1, 1, 2, 28, 28)


def test_n_below_one(models):
    model, unet = models
    x, y = batch(2)
    for call in (lambda: model.sample(x, 0), lambda: model.reconstruct(x, y, n=0),
                 lambda: model.reconstruct(x, y, use_posterior_mean=True, n=-1), lambda: unet.sample(x, 0)):
        with pytest.raises(ValueError, match="n must be >= 1"):
            call()


def test_num_classes_below_two():
    for cls in (ProbabilisticUNet, UNet):
        for k in (1, 0):
            with pytest.raises(ValueError, match=f"num_classes must be >= 2.*got {k}"):
                cls(1, k, channels=(4, 8), convs_per_block=1)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="latent_dim"):
        ProbabilisticUNet(latent_dim=0, **TINY)
    with pytest.raises(ValueError, match=r"channels\[i\] must be >= 1, got 0"):
        ProbabilisticUNet(channels=(4, 0), convs_per_block=1)
    with pytest.raises(TypeError, match="channels must be a non-empty tuple"):
        UNet(channels=(), convs_per_block=1)


def test_decode_rejects_z_of_the_wrong_shape(models):
    model, _ = models
    x, _ = batch(2)
    d = model.latent_dim
    for z in (torch.zeros(2, d + 1), torch.zeros(3, d), torch.zeros(2), torch.zeros(2, 1, 1, d), torch.zeros(1, 4, d)):
        with pytest.raises(ValueError, match=rf"z must be \(B, {d}\) or \(B, n, {d}\) with B = 2, got"):
            model.decode(x, z)


# -----------------------------------------------------------------------------
# CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_works_on_cuda():
    model, unet = make().to("cuda"), make_unet().to("cuda")
    x, y = batch(2)
    x, y = x.cuda(), y.cuda()
    s = model.sample(x, 3)
    assert s.is_cuda and s.shape == (2, 3, 2, 16, 16)
    assert model.reconstruct(x, y, use_posterior_mean=True).is_cuda
    for analytic in (True, False):
        terms = model.elbo(x, y, analytic_kl=analytic)
        assert all(v.is_cuda and torch.isfinite(v) for v in terms.values())
    terms["total"].backward()
    assert unet.sample(x, 2).is_cuda and unet.loss(x, y)["total"].is_cuda


# -----------------------------------------------------------------------------
# fcomb's split first convolution, chunked sampling, forward


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_fcomb_equals_the_reference_tile_and_concatenate(layers):
    """W [f; tile(z)] + b, then the rest: the split form gives the same logits."""
    model = make(latent_dim=3, fcomb_layers=layers, num_classes=3)
    x, _ = batch(2)
    z = torch.randn(2, 3)
    features = model.unet(x)
    tiled = z[:, :, None, None].expand(-1, -1, *features.shape[-2:])
    h = torch.cat([features, tiled], 1)
    reference = (model.fcomb.body(h) if layers else h)
    reference = model.fcomb.logits(reference)
    torch.testing.assert_close(model.decode(x, z), reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_chunked_sampling_gives_the_same_logits(chunk):
    model = make()
    x, _ = batch(2)
    z = torch.randn(2, 7, model.latent_dim)
    features = model.unet(x)
    whole = model.fcomb(features, z, chunk=7)
    torch.testing.assert_close(model.fcomb(features, z, chunk=chunk), whole)
    torch.testing.assert_close(whole[:, 4], model.fcomb(features, z[:, 4]), rtol=1e-5, atol=1e-6)


def test_default_chunk_bounds_the_activations(monkeypatch):
    """With a budget of one image's activations, samples are decoded one batch row at a time."""
    import probunet.model as model_module

    model = make()
    x, _ = batch(2)
    z = torch.randn(2, 5, model.latent_dim)
    full = model.decode(x, z)
    sizes = []
    original = model.fcomb._rest
    monkeypatch.setattr(model.fcomb, "_rest", lambda h: sizes.append(h.shape[0]) or original(h))
    monkeypatch.setattr(model_module, "SAMPLE_CHUNK_ELEMENTS", 2 * 8 * 16 * 16)  # B * C1 * H * W: one sample each
    torch.testing.assert_close(model.decode(x, z), full)
    assert sizes == [2] * 5  # B * chunk samples per pass, never B * n


def test_forward_is_the_elbo_with_masks_and_samples_without():
    model = make()
    x, y = batch(3)
    torch.manual_seed(2)
    terms = model(x, y, beta=0.5)
    torch.manual_seed(2)
    expected = model.elbo(x, y, beta=0.5)
    assert set(terms) == {"total", "recon", "kl"}
    for k in terms:
        torch.testing.assert_close(terms[k], expected[k])
    torch.manual_seed(3)
    s = model(x, n=4)
    torch.manual_seed(3)
    torch.testing.assert_close(s, model.sample(x, 4))
    assert s.shape == (3, 4, 2, 16, 16)


def test_elbo_terms_stay_float32_under_bf16_autocast():
    model = make().train()
    x, y = batch(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = model.elbo(x, y)
        q = model.posterior_dist(x, y)
    assert all(t.dtype == torch.float32 for t in terms.values())
    assert q.mu.dtype == q.log_sigma.dtype == torch.float32
    assert torch.isfinite(terms["total"])


def test_wrappers_that_call_forward_train_the_model():
    """torch.compile (here its tracing, backend="eager") and DistributedDataParallel (one CPU process) call forward."""
    import socket

    import torch.distributed as dist

    model = make().train()
    x, y = batch(2)
    torch.manual_seed(4)
    expected = model(x, y)["total"]
    compiled = torch.compile(model, backend="eager")
    torch.manual_seed(4)
    torch.testing.assert_close(compiled(x, y)["total"], expected)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        torch.manual_seed(4)
        total = ddp(x, y)["total"]
        total.backward()
        torch.testing.assert_close(total, expected)
        assert all(p.grad is not None for p in model.parameters())
    finally:
        dist.destroy_process_group()
