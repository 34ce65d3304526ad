import json

import pytest
import torch

from probunet import ProbabilisticUNet, ToyAmbiguousDataset, UNet
from probunet.evaluate import sample_masks
from probunet.metrics import ged_exact
from probunet.pretrained import WEIGHTS_DIR, available, load_pretrained, save_weights
from probunet.toy import retrain
from probunet.train import seed_everything

torch.set_num_threads(1)


def test_shipped_weights_load_with_how_they_were_made():
    assert {"probunet_toy", "unet_toy"} <= set(available())
    model = load_pretrained("probunet_toy", device="cpu")
    assert isinstance(model, ProbabilisticUNet) and not model.training
    assert model.info["recipe"]["steps"] > 1000 and "test_scores" in model.info
    assert isinstance(load_pretrained("unet_toy", device="cpu"), UNet)


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="no shipped weights named 'nope'; available: .*probunet_toy"):
        load_pretrained("nope")


def test_shipped_prob_unet_beats_the_unet_against_the_truth():
    test = ToyAmbiguousDataset("test")
    modes, probs = test.all_modes()
    torch.manual_seed(0)
    scores = {name: ged_exact(sample_masks(load_pretrained(name, device="cpu"), test.images[:100], n=16),
                              modes[:100], probs[:100]).mean().item() for name in ("probunet_toy", "unet_toy")}
    assert scores["probunet_toy"] < 0.1 and scores["unet_toy"] > 0.2, scores


def test_save_weights_round_trip(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = ProbabilisticUNet(channels=(4, 8), convs_per_block=1, latent_dim=2)
    monkeypatch.setattr("probunet.pretrained.WEIGHTS_DIR", tmp_path)
    save_weights(model, tmp_path / "tiny.pt", info={"note": "test"})
    loaded = load_pretrained("tiny", device="cpu")
    assert loaded.info == {"note": "test"}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_shipped_variants_differ_only_in_beta_or_latent_size():
    variants = [name for name in available() if name.startswith("variant_")]
    assert len(variants) == 5
    default = load_pretrained("probunet_toy", device="cpu").config
    for name in variants:
        model = load_pretrained(name, device="cpu")
        beta = model.info["recipe"]["beta"]
        assert name == f"variant_beta{beta:g}_d{model.latent_dim}"
        assert {k: v for k, v in model.config.items() if k != "latent_dim"} == \
               {k: v for k, v in default.items() if k != "latent_dim"}


def test_shipped_recipe_variants_carry_their_options_and_benchmark_scores():
    """The chapter on shortfalls reads these weights and the benchmark's JSON: they must agree."""
    bench = json.loads((WEIGHTS_DIR / "toy_benchmark.json").read_text())
    seed0 = {row["config"]: row for row in bench["rows"] if row["seed"] == 0}
    options = {"coordinates": dict(coordinates=True), "mixture_prior": dict(prior_components=4),
               "coordinates_mixture": dict(coordinates=True, prior_components=4),
               "geco": dict(geco_target=pytest.approx(0.004)), "stored_raters": {}}
    for config, expected in options.items():
        model = load_pretrained(f"probunet_toy_{config}", device="cpu")
        assert {k: model.config[k] for k in expected} == expected
        assert model.info["recipe"]["annotation"] == bench["annotations"].get(config, bench["recipe"]["annotation"])
        assert model.info["recipe"]["steps"] == bench["steps"] == 10_000
        assert model.info["test_scores"] == {k: seed0[config][k] for k in model.info["test_scores"]}
    summary = {row["config"]: row for row in bench["summary"]}
    assert set(summary) == set(options) | {"reference", "unet", "truth"}
    assert all(row["seeds"] == [0, 1, 2] for row in summary.values())


def test_retrain_trains_a_fresh_model_with_the_shipped_recipe():
    shipped = load_pretrained("probunet_toy", device="cpu")
    a = retrain("probunet_toy", seed=3, steps=4, device="cpu", progress=False)
    assert type(a) is type(shipped) and a.config == shipped.config and not a.training
    assert a.info["recipe"] == dict(shipped.info["recipe"], steps=4, seed=3)
    weights = a.state_dict()
    assert any(not torch.equal(v, shipped.state_dict()[k]) for k, v in weights.items())  # its own, not the shipped
    b = retrain("probunet_toy", seed=3, steps=4, device="cpu", progress=False)
    c = retrain("probunet_toy", seed=4, steps=4, device="cpu", progress=False)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in weights.items())        # the seed fixes the run
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in weights.items())
    seed_everything(3)  # the start retrain builds: 4 steps of training moved it
    untrained = ProbabilisticUNet(**shipped.config).state_dict()
    assert any(not torch.equal(v, untrained[k]) for k, v in weights.items())


def test_retrain_needs_a_recipe(tmp_path, monkeypatch):
    import probunet.pretrained as pretrained

    save_weights(UNet(channels=(4, 8)), tmp_path / "bare.pt", info={"recipe": {"steps": 10}})
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ValueError, match="'bare' store no batch_size, lr, lr_schedule, beta, annotation in their recipe"):
        retrain("bare")
    with pytest.raises(ValueError, match="no shipped weights named 'nope'"):
        retrain("nope")
