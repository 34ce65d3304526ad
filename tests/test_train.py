"""Tests of probunet.train (fit, schedules, checkpoints, exact resume) and probunet.evaluate.sample_masks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probunet import train
from probunet.toy import ToyAmbiguousDataset, load_split
from probunet.evaluate import sample_masks
from probunet.model import ProbabilisticUNet
from probunet.checkpoint import load_checkpoint, load_model, resolve_device, save_checkpoint
from probunet.train import lr_at
from probunet.unet import UNet

torch.set_num_threads(1)  # tiny tensors: extra threads only add contention on a shared 2-core machine

LOSS_TERMS = ("step", "lr", "total", "recon", "kl")


def fit(model, dataset, **kwargs):
    """train.fit on the CPU unless a test names a device: exact reproducibility is promised on the CPU only."""
    return train.fit(model, dataset, **({"device": "cpu"} | kwargs))


def prob_unet(seed=0, latent_dim=2, **kw) -> ProbabilisticUNet:
    torch.manual_seed(seed)
    return ProbabilisticUNet(channels=kw.pop("channels", (4, 8)), convs_per_block=1, latent_dim=latent_dim,
                             fcomb_channels=8, **kw)


def unet(seed=0, channels=(4, 8), **kw) -> UNet:
    torch.manual_seed(seed)
    return UNet(channels=channels, convs_per_block=1, **kw)


@pytest.fixture(scope="module")
def train_ds() -> ToyAmbiguousDataset:
    return ToyAmbiguousDataset("train")


@pytest.fixture(scope="module")
def small_ds() -> ToyAmbiguousDataset:
    """64 training images: 8 batches of 8 per epoch, so 20 steps cross epoch boundaries."""
    return ToyAmbiguousDataset(arrays={k: v[:64] for k, v in load_split("train").items()})


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_params(a, b):
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k


def constant_predictor_loss(ds) -> float:
    """Per-image cross-entropy of always predicting the foreground frequency: what 'learning nothing' costs."""
    f = ds.annotations.double().mean().item()
    return -ds.images.shape[-1] * ds.images.shape[-2] * (f * math.log(f) + (1 - f) * math.log(1 - f))


# -----------------------------------------------------------------------------
# the loss goes down


def test_fit_lowers_the_loss_of_a_prob_unet(train_ds):
    # measured here (60 steps, batch 8, seeds 0-7): last-10 / first-10 mean total in 0.14-0.38, last-10 mean
    # in 76-226 against 228 for the best constant prediction; seed 0 gives 0.18 and 88
    model = prob_unet(seed=0)
    hist = fit(model, train_ds, steps=60, batch_size=8, lr=1e-2, seed=0, progress=False)
    assert set(hist) == {"step", "lr", "seconds", "total", "recon", "kl"}
    assert all(len(v) == 60 for v in hist.values())
    assert hist["step"] == list(range(1, 61))
    total = np.array(hist["total"])
    assert np.isfinite(total).all()
    np.testing.assert_allclose(total, np.array(hist["recon"]) + np.array(hist["kl"]), rtol=1e-5)
    first, last = total[:10].mean(), total[-10:].mean()
    assert last < 0.5 * first
    assert last < 0.8 * constant_predictor_loss(train_ds)
    assert not model.training, "fit should leave the model in eval mode"


def test_fit_lowers_the_loss_of_a_unet(train_ds):
    # measured here (channels (8, 16), 60 steps, lr 3e-3, seeds 0-7): ratio 0.20-0.30, last-10 mean 109-175
    model = unet(seed=0, channels=(8, 16))
    hist = fit(model, train_ds, steps=60, batch_size=8, lr=3e-3, seed=0, progress=False)
    assert set(hist) == {"step", "lr", "seconds", "total", "recon"}
    assert hist["total"] == hist["recon"]
    total = np.array(hist["total"])
    assert total[-10:].mean() < 0.5 * total[:10].mean()
    assert total[-10:].mean() < 0.8 * constant_predictor_loss(train_ds)


def test_beta_reaches_the_elbo(small_ds):
    hist = fit(prob_unet(), small_ds, steps=4, batch_size=8, beta=0.0, progress=False)
    assert hist["total"] == hist["recon"] and max(hist["kl"]) > 0
    hist = fit(prob_unet(), small_ds, steps=4, batch_size=8, beta=3.0, progress=False)
    np.testing.assert_allclose(hist["total"], np.array(hist["recon"]) + 3 * np.array(hist["kl"]), rtol=1e-5)


def test_beta_for_a_model_without_a_kl_term_warns(small_ds):
    with pytest.warns(UserWarning, match="beta is ignored: UNet has no KL term"):
        hist = fit(unet(), small_ds, steps=2, batch_size=8, beta=3.0, progress=False)
    assert "kl" not in hist


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")
def test_non_finite_loss_stops_training(small_ds, monkeypatch):
    model = unet()
    monkeypatch.setattr(model, "loss", lambda x, y: {"total": torch.tensor(float("nan"), requires_grad=True)})
    with pytest.raises(FloatingPointError, match="loss became nan by step 1"):
        fit(model, small_ds, steps=3, batch_size=8, progress=False)


# -----------------------------------------------------------------------------
# reproducibility, checkpoints, resume


def test_same_seed_gives_identical_runs(small_ds):
    runs = []
    for fit_seed in (3, 3, 4):
        model = prob_unet(seed=0)
        hist = fit(model, small_ds, steps=15, batch_size=8, lr=3e-3, seed=fit_seed, progress=False)
        runs.append((model, hist))
    (m1, h1), (m2, h2), (m3, h3) = runs
    for key in LOSS_TERMS:
        assert h1[key] == h2[key], key
    assert_same_params(m1, m2)
    assert h1["total"] != h3["total"], "a different seed should give a different run"


@pytest.mark.parametrize("make", [prob_unet, unet])
def test_checkpoint_round_trip(small_ds, tmp_path, make):
    model = make()
    path = tmp_path / "ckpt.pt"
    fit(model, small_ds, steps=7, batch_size=8, checkpoint=path, checkpoint_every=5, progress=False)
    loaded = load_model(path, device="cpu")
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    assert_same_params(loaded, model)
    x, y = small_ds.images[:4], small_ds.annotations[:4, 0]
    torch.manual_seed(11)
    a = model.sample(x, 3)
    torch.manual_seed(11)
    b = loaded.sample(x, 3)
    assert torch.equal(a, b)
    if isinstance(model, ProbabilisticUNet):
        assert torch.equal(model.reconstruct(x, y, use_posterior_mean=True),
                           loaded.reconstruct(x, y, use_posterior_mean=True))
    # a model with other weights gives other outputs: the comparison above means something
    torch.manual_seed(11)
    assert not torch.equal(make(seed=5).eval().sample(x, 3), a)


def test_checkpoint_contents_and_atomic_write(small_ds, tmp_path):
    path = tmp_path / "run" / "ckpt.pt"
    model = prob_unet()
    hist = fit(model, small_ds, steps=6, batch_size=8, lr=2e-3, seed=9, checkpoint=path, checkpoint_every=4,
               progress=False)
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"], "a temporary file was left behind"
    ckpt = load_checkpoint(path)
    assert {"format", "version", "model", "info", "training", "model_class", "model_config"} == set(ckpt)
    state = ckpt["training"]
    assert {"optimizer", "scaler", "step", "config", "history", "dataset", "sampler"} <= set(state)
    assert state["step"] == 6 and ckpt["model_class"] == "ProbabilisticUNet" and ckpt["model_config"] == model.config
    assert state["config"]["steps"] == 6 and state["config"]["lr"] == 2e-3 and state["config"]["seed"] == 9
    assert state["config"]["batch_size"] == 8 and ckpt["info"]["recipe"] == state["config"]
    assert state["dataset"]["length"] == len(small_ds) and len(state["dataset"]["hash"]) == 40
    assert state["history"]["total"] == hist["total"]
    assert len(state["optimizer"]["state"]) == len(list(model.parameters()))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ckpt["model"].items())

    # a save that dies half way leaves the previous checkpoint readable
    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    real_save = torch.save
    torch.save = broken_save
    try:
        with pytest.raises(OSError, match="disk full"):
            save_checkpoint(path, model, training={"step": 99})
    finally:
        torch.save = real_save
    assert load_checkpoint(path)["training"]["step"] == 6


class Crash(Exception):
    pass


def test_exact_resume_after_a_crash(small_ds, tmp_path, monkeypatch):
    kw = dict(steps=20, batch_size=8, lr=3e-3, seed=1, checkpoint_every=10, progress=False)
    # the reference: 20 steps straight
    ref = prob_unet(seed=0)
    ref_hist = fit(ref, small_ds, checkpoint=tmp_path / "ref.pt", **kw)

    # the same run, killed right after writing its step-10 checkpoint
    real_save = train.save_checkpoint

    def save_then_crash(path, model, info, training, **kwargs):
        real_save(path, model, info, training, **kwargs)
        if training["step"] == 10:
            raise Crash

    monkeypatch.setattr(train, "save_checkpoint", save_then_crash)
    path = tmp_path / "run.pt"
    with pytest.raises(Crash):
        fit(prob_unet(seed=0), small_ds, checkpoint=path, **kw)
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    assert load_checkpoint(path)["training"]["step"] == 10

    # a new process would have other weights and another RNG state: resume must not depend on either
    resumed = prob_unet(seed=123)
    torch.manual_seed(999)
    torch.rand(17)
    hist = fit(resumed, small_ds, checkpoint=path, resume=True, **kw)
    assert hist["step"] == list(range(1, 21))
    for key in LOSS_TERMS:
        assert hist[key] == ref_hist[key], key
    assert_same_params(resumed, ref)
    assert load_checkpoint(path)["training"]["step"] == 20


def test_exact_resume_one_step_at_a_time(small_ds, tmp_path):
    """max_seconds=0 stops after every step; resuming 12 times equals 12 steps straight."""
    kw = dict(steps=12, batch_size=8, lr=3e-3, seed=2, checkpoint_every=5, progress=False)
    ref = prob_unet()
    ref_hist = fit(ref, small_ds, **kw)
    path = tmp_path / "ckpt.pt"
    for i in range(12):
        model = prob_unet(seed=0 if i == 0 else 100 + i)  # the first call starts the run: the reference's init
        hist = fit(model, small_ds, checkpoint=path, resume=True, max_seconds=0, **kw)
        assert len(hist["step"]) == i + 1 and load_checkpoint(path)["training"]["step"] == i + 1
    for key in LOSS_TERMS:
        assert hist[key] == ref_hist[key], key
    assert_same_params(model, ref)


def test_resume_refuses_another_model(small_ds, tmp_path):
    path = tmp_path / "ckpt.pt"
    fit(prob_unet(latent_dim=2), small_ds, steps=2, batch_size=8, checkpoint=path, progress=False)
    for other in (prob_unet(latent_dim=3), prob_unet(channels=(4, 4)), unet()):
        before = params(other)
        with pytest.raises(ValueError, match="cannot resume .* holds a ProbabilisticUNet"):
            fit(other, small_ds, steps=4, batch_size=8, checkpoint=path, resume=True, progress=False)
        assert all(torch.equal(v, params(other)[k]) for k, v in before.items())
    # without resume=True the file is simply overwritten by the new run
    fit(unet(), small_ds, steps=1, batch_size=8, checkpoint=path, progress=False)
    assert load_checkpoint(path)["model_class"] == "UNet"


def test_resume_refuses_other_training_settings(small_ds, tmp_path):
    path = tmp_path / "ckpt.pt"
    fit(prob_unet(), small_ds, steps=2, batch_size=8, lr=1e-3, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match=r"other settings .*'lr': \(0.001, 0.01\)"):
        fit(prob_unet(), small_ds, steps=2, batch_size=8, lr=1e-2, checkpoint=path, resume=True, progress=False)
    with pytest.raises(ValueError, match="other settings .*'steps'"):
        fit(prob_unet(), small_ds, steps=5, batch_size=8, lr=1e-3, checkpoint=path, resume=True, progress=False)


def test_resume_without_a_checkpoint_starts_fresh(small_ds, tmp_path):
    path = tmp_path / "new.pt"
    a = fit(prob_unet(), small_ds, steps=3, batch_size=8, checkpoint=path, resume=True, progress=False)
    b = fit(prob_unet(), small_ds, steps=3, batch_size=8, progress=False)
    assert a["step"] == [1, 2, 3] and a["total"] == b["total"]
    assert load_checkpoint(path)["training"]["step"] == 3


# -----------------------------------------------------------------------------
# schedules and arguments


def test_lr_schedules():
    lr, total = 0.01, 1000
    assert lr_at(0, total, lr, "cosine") == pytest.approx(lr)
    assert lr_at(total - 1, total, lr, "cosine") == pytest.approx(0.01 * lr, rel=1e-3)
    assert lr_at(total // 2, total, lr, "cosine") == pytest.approx(lr * (0.01 + 0.99 * 0.5))
    cos = [lr_at(s, total, lr, "cosine") for s in range(total)]
    assert all(a >= b for a, b in zip(cos, cos[1:]))
    assert lr_at(599, total, lr, "step") == pytest.approx(lr)
    assert lr_at(600, total, lr, "step") == pytest.approx(lr / 10)
    assert lr_at(849, total, lr, "step") == pytest.approx(lr / 10)
    assert lr_at(850, total, lr, "step") == pytest.approx(lr / 100)
    assert {lr_at(s, total, lr, "constant") for s in range(0, total, 7)} == {lr}
    assert [lr_at(s, 100, 1.0, "constant", warmup=4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_at(4, 104, 1.0, "step", warmup=4) == 1.0 and lr_at(64, 104, 1.0, "step", warmup=4) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown lr schedule 'linear'"):
        lr_at(0, total, lr, "linear")


def test_fit_follows_the_schedule(small_ds):
    hist = fit(unet(), small_ds, steps=10, batch_size=8, lr=0.02, lr_schedule="step", warmup=2, progress=False)
    assert hist["lr"] == [lr_at(s, 10, 0.02, "step", 2) for s in range(10)]
    assert hist["lr"][0] == pytest.approx(0.01) and hist["lr"][-1] == pytest.approx(0.0002)


def test_fit_rejects_bad_arguments(small_ds):
    model = unet()
    before = params(model)
    cases = [
        (dict(steps=0), "steps must be >= 1, got 0"),
        (dict(steps=5, batch_size=65), r"batch_size=65 is larger than the dataset \(64 items\)"),
        (dict(steps=5, batch_size=0), "batch_size must be >= 1"),
        (dict(steps=5, lr_schedule="linear"), "lr_schedule must be one of"),
        (dict(steps=5, checkpoint_every=0), "checkpoint_every must be >= 1, got 0"),
        (dict(steps=5, checkpoint_every=-10), "checkpoint_every must be >= 1"),
        (dict(steps=5, log_every=0), "log_every must be >= 1"),
        (dict(steps=5, val_every=0), "val_every must be >= 1"),
        (dict(steps=5, clip_grad_norm=0.0), "clip_grad_norm must be > 0"),
        (dict(steps=5, beta_warmup=-1), "beta_warmup must be >= 0"),
        (dict(steps=5, amp="fp16"), "amp='fp16' needs CUDA"),
        (dict(steps=5, amp="fp8"), "amp must be None, 'bf16'"),
        (dict(steps=5, val_dataset=torch.utils.data.TensorDataset(torch.zeros(4))), "val_dataset needs .images"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            fit(model, small_ds, **({"batch_size": 8, "progress": False} | kwargs))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "a rejected fit changed the model"


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_progress_bar_goes_to_stderr(small_ds, capsys):
    fit(prob_unet(), small_ds, steps=3, batch_size=8, progress=True)
    err = capsys.readouterr().err
    assert "ProbabilisticUNet" in err and "3/3" in err
    fit(unet(), small_ds, steps=2, batch_size=8, progress=True)
    assert "UNet" in capsys.readouterr().err
    fit(unet(), small_ds, steps=2, batch_size=8, progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_the_recipe_reaches_the_loss(small_ds, monkeypatch):
    model = prob_unet()
    calls = []
    real = model.elbo

    def spy(x, y, **kwargs):
        calls.append(kwargs)
        return real(x, y, **kwargs)

    monkeypatch.setattr(model, "elbo", spy)
    fit(model, small_ds, steps=2, batch_size=8, beta=0.5, analytic_kl=False, progress=False)
    assert calls == [{"beta": 0.5, "analytic_kl": False}] * 2


# -----------------------------------------------------------------------------
# evaluate.sample_masks


def test_sample_masks(small_ds):
    model = prob_unet().eval()
    images = small_ds.images[:7]
    torch.manual_seed(0)
    masks = sample_masks(model, images, n=5, batch_size=3)
    assert masks.shape == (7, 5, 32, 32) and masks.dtype == torch.uint8 and masks.device.type == "cpu"
    assert set(masks.unique().tolist()) <= {0, 1}
    torch.manual_seed(0)
    expected = torch.cat([model.sample(images[i:i + 3], 5).argmax(2) for i in range(0, 7, 3)])
    assert torch.equal(masks, expected.to(torch.uint8))
    u = sample_masks(unet(), images, n=4)
    assert u.shape == (7, 4, 32, 32) and u.dtype == torch.uint8
    assert all(torch.equal(u[:, j], u[:, 0]) for j in range(4))
    three = sample_masks(prob_unet(num_classes=3), images, n=6)
    assert set(three.unique().tolist()) <= {0, 1, 2}
    with pytest.raises(ValueError, match="n must be >= 1"):
        sample_masks(model, images, n=0)


# -----------------------------------------------------------------------------
# options for larger data: workers, validation, clipping, KL warm-up, mixed precision, sparse logging


def test_log_every_averages_windows_and_keeps_the_last_step(small_ds):
    every = fit(prob_unet(), small_ds, steps=10, batch_size=8, progress=False)
    sparse = fit(prob_unet(), small_ds, steps=10, batch_size=8, log_every=4, progress=False)
    assert sparse["step"] == [4, 8, 10] and sparse["lr"] == [every["lr"][i] for i in (3, 7, 9)]
    for k in ("total", "recon", "kl"):  # the same run, logged as means over steps 1-4, 5-8, 9-10
        want = [np.mean(every[k][0:4]), np.mean(every[k][4:8]), np.mean(every[k][8:10])]
        assert sparse[k] == pytest.approx(want, rel=1e-5)


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")
def test_a_non_finite_loss_is_caught_at_the_next_log(small_ds, monkeypatch):
    model = unet()
    calls = []

    def loss(x, y):
        calls.append(1)
        value = float("nan") if len(calls) == 3 else 1.0
        return {"total": torch.tensor(value, requires_grad=True)}
    monkeypatch.setattr(model, "loss", loss)
    with pytest.raises(FloatingPointError, match="loss became nan by step 5"):
        fit(model, small_ds, steps=10, batch_size=8, log_every=5, progress=False)


def test_beta_warmup_ramps_the_kl_weight(small_ds, monkeypatch):
    model = prob_unet()
    betas = []
    original = model.loss
    monkeypatch.setattr(model, "loss", lambda x, y, **kw: betas.append(kw["beta"]) or original(x, y, **kw))
    fit(model, small_ds, steps=6, batch_size=8, beta=2.0, beta_warmup=4, progress=False)
    assert betas == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2.0])


def test_clip_grad_norm_bounds_the_step_gradients(small_ds, monkeypatch):
    norms = []
    original = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        grads = [p.grad.norm() for group in self.param_groups for p in group["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack(grads)).item())
        return original(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.Adam, "step", step)
    fit(prob_unet(), small_ds, steps=5, batch_size=8, clip_grad_norm=0.5, progress=False)
    assert len(norms) == 5 and max(norms) <= 0.5 + 1e-5
    norms.clear()
    fit(prob_unet(), small_ds, steps=5, batch_size=8, progress=False)
    assert min(norms) > 0.5  # without clipping the same steps' gradients are larger: the bound did something


def test_bf16_autocast_trains_on_the_cpu(small_ds):
    hist = fit(prob_unet(), small_ds, steps=30, batch_size=8, lr=3e-3, amp="bf16", progress=False)
    full = fit(prob_unet(), small_ds, steps=30, batch_size=8, lr=3e-3, progress=False)
    assert np.isfinite(hist["total"]).all()
    assert hist["total"][0] == pytest.approx(full["total"][0], rel=0.02)  # same model, same batch: bf16 rounding only
    assert np.mean(hist["recon"][-5:]) < 0.8 * np.mean(hist["recon"][:5])


def test_worker_processes_give_reproducible_runs(small_ds):
    runs = [fit(prob_unet(), small_ds, steps=6, batch_size=8, num_workers=2, pin_memory=True, progress=False)
            for _ in range(2)]
    assert runs[0]["total"] == runs[1]["total"] and np.isfinite(runs[0]["total"]).all()
    other = fit(prob_unet(), small_ds, steps=6, batch_size=8, num_workers=2, seed=1, progress=False)
    assert other["total"] != runs[0]["total"]


def test_validation_keeps_the_best_checkpoint(small_ds, tmp_path):
    val = ToyAmbiguousDataset(arrays={k: v[:6] for k, v in load_split("test").items()})
    path = tmp_path / "run.pt"
    model = prob_unet()
    hist = fit(model, small_ds, steps=12, batch_size=8, lr=3e-3, checkpoint=path, val_dataset=val, val_every=4,
               val_samples=4, progress=False)
    assert hist["val_step"] == [4, 8, 12] and len(hist["val_ged"]) == len(hist["val_hm_iou"]) == 3
    assert all(np.isfinite(hist["val_ged"])) and all(0 <= v <= 1 for v in hist["val_hm_iou"])
    best_step = hist["val_step"][int(np.argmin(hist["val_ged"]))]
    best = load_checkpoint(tmp_path / "run_best.pt")
    assert best["training"]["step"] == best_step
    assert best["training"]["history"]["val_ged"][-1] == min(hist["val_ged"])
    assert isinstance(load_model(tmp_path / "run_best.pt", device="cpu"), ProbabilisticUNet)
    # validation draws its samples from a forked RNG: training runs exactly as without it
    plain = fit(prob_unet(), small_ds, steps=12, batch_size=8, lr=3e-3, progress=False)
    assert plain["total"] == hist["total"]


def test_load_model_rebuilds_the_toy_cvae(tmp_path):
    from probunet.toy.cvae import ToyCVAE, toy_dataset

    torch.manual_seed(0)
    model = ToyCVAE(hidden=16)
    fit(model, toy_dataset(64), steps=5, batch_size=16, checkpoint=tmp_path / "cvae.pt", progress=False)
    loaded = load_model(tmp_path / "cvae.pt", device="cpu")
    assert isinstance(loaded, ToyCVAE) and loaded.config == model.config
    x = torch.linspace(0, 1, 5)[:, None]
    torch.testing.assert_close(loaded.prior_dist(x).mu, model.prior_dist(x).mu)


# -----------------------------------------------------------------------------
# CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_and_sample_on_cuda(small_ds, tmp_path):
    model = prob_unet()
    path = tmp_path / "ckpt.pt"
    hist = fit(model, small_ds, steps=6, batch_size=8, device="auto", checkpoint=path, checkpoint_every=3,
               progress=False)
    assert next(model.parameters()).is_cuda and np.isfinite(hist["total"]).all()
    masks = sample_masks(model, small_ds.images[:5], n=3)
    assert masks.device.type == "cpu" and masks.dtype == torch.uint8 and masks.shape == (5, 3, 32, 32)
    assert next(load_model(path).parameters()).is_cuda
    assert not next(load_model(path, device="cpu").parameters()).is_cuda
    # resume on CUDA: max_seconds=0 stops after the first step, resume=True runs the other 8 with the same settings
    part_path = tmp_path / "part.pt"
    settings = dict(steps=9, batch_size=8, device="cuda", checkpoint=part_path, progress=False)
    part = fit(prob_unet(seed=3), small_ds, max_seconds=0, **settings)
    assert part["step"] == [1] and load_checkpoint(part_path)["training"]["step"] == 1
    resumed = prob_unet(seed=4)
    hist = fit(resumed, small_ds, resume=True, **settings)
    assert hist["step"] == list(range(1, 10)) and hist["total"][0] == part["total"][0]
    assert next(resumed.parameters()).is_cuda and np.isfinite(hist["total"]).all()
    with pytest.raises(ValueError, match="other settings"):
        fit(prob_unet(seed=3), small_ds, resume=True, **(settings | {"steps": 12}))
    # the options for LIDC-sized data: workers, pinned memory, both kinds of autocast, clipping, sparse logs
    for amp in ("bf16", "fp16"):
        hist = fit(prob_unet(), small_ds, steps=8, batch_size=8, device="cuda", amp=amp, clip_grad_norm=1.0,
                   num_workers=2, pin_memory=True, log_every=4, progress=False)
        assert hist["step"] == [4, 8] and np.isfinite(hist["total"]).all(), amp


def test_resume_sees_the_new_settings(small_ds, tmp_path):
    """clip_grad_norm=1.0 or amp are training settings too: a checkpoint remembers them."""
    path = tmp_path / "c.pt"
    fit(prob_unet(), small_ds, steps=4, batch_size=8, clip_grad_norm=1.0, max_seconds=0, checkpoint=path, progress=False)
    assert load_checkpoint(path)["training"]["config"]["clip_grad_norm"] == 1.0
    with pytest.raises(ValueError, match="clip_grad_norm"):
        fit(prob_unet(), small_ds, steps=4, batch_size=8, checkpoint=path, resume=True, progress=False)
    hist = fit(prob_unet(), small_ds, steps=4, batch_size=8, clip_grad_norm=1.0, checkpoint=path, resume=True,
               progress=False)
    assert hist["step"] == [1, 2, 3, 4]


def test_channels_last_trains_the_same_model_in_the_faster_layout(small_ds):
    """benchmarks/speed.py measured channels-last weights 1.2-1.4x faster on the CPU; the maths is the same."""
    settings = dict(steps=5, batch_size=8, lr=1e-3, seed=0, progress=False, device="cpu")
    torch.manual_seed(0)
    fast = prob_unet()
    hist_fast = fit(fast, small_ds, channels_last=True, **settings)
    conv = fast.unet.encoder.blocks[1][0].weight  # (C_out, C_in > 1, 3, 3)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    torch.manual_seed(0)
    plain = prob_unet()
    hist_plain = fit(plain, small_ds, **settings)
    assert plain.unet.encoder.blocks[1][0].weight.is_contiguous()
    np.testing.assert_allclose(hist_fast["total"], hist_plain["total"], rtol=1e-4)
