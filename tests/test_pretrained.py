"""The shipped weights: one recipe, the files record it, and they still score what the benchmark says."""

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

from probunet import ProbabilisticUNet, UNet, save_checkpoint
from probunet.baselines import DropoutUNet, Image2ImageVAE, StochasticSegmentationNetwork, UNetEnsemble
from probunet.book import WEIGHTS_DIR, available, describe, load_pretrained
from probunet.toy import RECIPE, ExclusiveObjectsDataset, ToyAmbiguousDataset, evaluate, retrain
from probunet.train import TrainConfig, seed_everything

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
BENCH = json.loads((WEIGHTS_DIR / "toy_benchmark.json").read_text())
SEED0 = {row["config"]: row for row in BENCH["rows"] if row["seed"] == 0}
# weights file -> benchmark configuration, and how the configuration departs from the reference
SHIPPED = {
    "probunet_toy": ("reference", {}),
    "unet_toy": ("unet", {}),
    "probunet_toy_coordinates": ("coordinates", dict(coordinates=True)),
    "probunet_toy_mixture_prior": ("mixture_prior", dict(prior_components=4)),
    "probunet_toy_coordinates_mixture": ("coordinates_mixture", dict(coordinates=True, prior_components=4)),
    "probunet_toy_geco": ("geco", dict(geco_target=0.004)),
    "probunet_toy_stored_raters": ("stored_raters", {}),
    "probunet_toy_beta0.3": ("beta0.3", {}),
    "probunet_toy_beta3": ("beta3", {}),
    "probunet_toy_beta10": ("beta10", {}),
    "probunet_toy_latent2": ("latent2", dict(latent_dim=2)),
}

RIVALS_BENCH = json.loads((WEIGHTS_DIR / "rivals_benchmark.json").read_text())
RIVALS_SEED0 = {(r["dataset"], r["method"]): r for r in RIVALS_BENCH["rows"] if r["seed"] == 0}
# the rivals chapter's weights (benchmarks/rivals.py --export) -> (data set, method, class)
RIVALS = {
    "rival_shapes_ensemble": ("shapes", "ensemble", UNetEnsemble),
    "rival_shapes_dropout": ("shapes", "dropout", DropoutUNet),
    "rival_shapes_image2image_vae": ("shapes", "image2image_vae", Image2ImageVAE),
    "rival_shapes_ssn": ("shapes", "ssn", StochasticSegmentationNetwork),
    "rival_exclusive_probunet": ("exclusive", "probunet", ProbabilisticUNet),
}


def test_exactly_the_weights_the_chapters_use_ship_and_they_fit_in_8_mb():
    assert available() == sorted(list(SHIPPED) + list(RIVALS))
    size = sum((WEIGHTS_DIR / f"{name}.pt").stat().st_size for name in available())
    assert size <= 8 * 2**20, f"{size / 2**20:.2f} MiB"


@pytest.mark.parametrize("name", sorted(RIVALS))
def test_every_rival_file_records_the_one_recipe_and_its_benchmark_row(name):
    dataset, method, cls = RIVALS[name]
    model = load_pretrained(name, device="cpu")
    assert type(model) is cls and not model.training
    assert TrainConfig(**model.info["recipe"]) == RECIPE  # seed 0, 10,000 steps
    assert model.info["dataset"] == dataset and model.info["annotation"] == "fresh"
    row = RIVALS_SEED0[(dataset, method)]
    assert row["steps"] == RIVALS_BENCH["steps"] == RECIPE.steps
    assert model.info["test_scores"] == {k: row[k] for k in model.info["test_scores"]}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_file_records_the_one_recipe_and_its_seed(name):
    config, options = SHIPPED[name]
    model = load_pretrained(name, device="cpu")
    assert not model.training and isinstance(model, UNet if config == "unet" else ProbabilisticUNet)
    assert {k: model.config[k] for k in options} == options
    recipe = TrainConfig(**model.info["recipe"])
    assert recipe == dataclasses.replace(RECIPE, beta=BENCH["betas"].get(config, RECIPE.beta))
    assert recipe.seed == 0 and recipe.steps == BENCH["steps"] == 10_000
    assert model.info["annotation"] == BENCH["annotations"].get(config, "fresh")
    assert model.info["torch"].startswith("2.") and model.info["train_seconds"] > 0
    assert model.info["test_scores"] == {k: SEED0[config][k] for k in model.info["test_scores"]}


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="no shipped weights named 'nope'; available: .*probunet_toy"):
        load_pretrained("nope")


# Scores recomputed from the shipped (float16) weights against the benchmark's float32 run, measured on the
# 2-core Intel Xeon that trained them, 1 and 2 threads: |difference| at most 0.0011 (GED), 0.0042 (TV per
# image), 0.0019 (other) over reference, U-Net, coordinates and beta 3. Another CPU samples other masks, so
# the tolerance is about 3x that; the configurations differ from each other by 0.01-0.3.
TOLERANCE = {"ged_exact": 0.004, "mode_tv_per_image": 0.015, "other_fraction": 0.006}


@pytest.mark.parametrize("name", ["probunet_toy", "unet_toy", "probunet_toy_coordinates"])
def test_shipped_weights_still_score_what_the_benchmark_json_says(name):
    """Recomputed from the weights, not copied: 100 prior samples per test image, as the benchmark drew them."""
    config = SHIPPED[name][0]
    seed_everything(0)
    scores = evaluate(load_pretrained(name, device="cpu"), ToyAmbiguousDataset("test"), n=100)
    for key, tol in TOLERANCE.items():
        assert abs(scores[key] - SEED0[config][key]) <= tol, (key, scores[key], SEED0[config][key])


# The same, for rivals whose samples are cheap to draw, and the exclusive Prob U-Net: measured |difference|
# (float16 weights, 1 thread) at most 0.0008 (GED), 0.0013 (TV per image), 0.0010 (other); the same tolerances.
@pytest.mark.parametrize("name", ["rival_shapes_ensemble", "rival_shapes_ssn", "rival_exclusive_probunet"])
def test_rival_weights_still_score_what_the_rivals_json_says(name):
    dataset, method, _ = RIVALS[name]
    seed_everything(0)
    data = ToyAmbiguousDataset("test") if dataset == "shapes" else ExclusiveObjectsDataset("test")
    scores = evaluate(load_pretrained(name, device="cpu"), data, n=100)
    for key, tol in TOLERANCE.items():
        want = RIVALS_SEED0[(dataset, method)][key]
        assert abs(scores[key] - want) <= tol, (key, scores[key], want)


def test_retrain_trains_a_fresh_model_with_the_stored_recipe():
    shipped = load_pretrained("probunet_toy", device="cpu")
    a = retrain(shipped, seed=3, steps=4, device="cpu", progress=False)
    assert type(a) is type(shipped) and a.config == shipped.config and not a.training
    assert a.info["recipe"] == dict(shipped.info["recipe"], steps=4, seed=3)
    assert a.info["annotation"] == shipped.info["annotation"] == "fresh"
    weights = a.state_dict()
    assert any(not torch.equal(v, shipped.state_dict()[k]) for k, v in weights.items())  # its own, not the shipped
    b = retrain(shipped, seed=3, steps=4, device="cpu", progress=False)
    c = retrain(shipped, seed=4, steps=4, device="cpu", progress=False)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in weights.items())        # the seed fixes the run
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in weights.items())
    seed_everything(3)  # the start retrain builds: 4 steps of training moved it
    untrained = ProbabilisticUNet(**shipped.config).state_dict()
    assert any(not torch.equal(v, untrained[k]) for k, v in weights.items())


def test_retrain_needs_a_recipe(tmp_path):
    from probunet import load_model

    save_checkpoint(tmp_path / "bare.pt", UNet(channels=(4, 8)), info={"note": "no recipe"})
    with pytest.raises(ValueError, match="model.info holds no recipe"):
        retrain(load_model(tmp_path / "bare.pt", device="cpu"))
    with pytest.raises(ValueError, match="model.info holds no recipe"):
        retrain(UNet(channels=(4, 8)))


def test_retrain_uses_the_data_set_its_weights_name():
    from probunet.toy import toy_train_set

    assert isinstance(toy_train_set("fresh", "exclusive"), ExclusiveObjectsDataset)
    with pytest.raises(ValueError, match="dataset must be one of"):
        toy_train_set("fresh", "lesions")
    shipped = load_pretrained("rival_exclusive_probunet", device="cpu")
    fresh = retrain(shipped, steps=1, device="cpu", progress=False)
    assert fresh.info["dataset"] == "exclusive" and fresh.config == shipped.config


NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def described_models(nb: Path) -> tuple[set[str], dict[str, str]]:
    """The names a notebook's code loads literally, and the blocks its stored outputs print
    with ``describe`` (name -> text)."""
    cells = json.loads(nb.read_text())["cells"]
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    loaded = set(re.findall(r'load_pretrained\(\s*"([^"]+)"', code))
    texts = ["".join(o.get("text", "")) for c in cells if c["cell_type"] == "code"
             for o in c.get("outputs", [])]
    # describe's four lines: name and class, seed and recipe, its settings, the data
    pattern = r"^(shipped (\S+): .*\n  seed .*\n  \(.*\)\n  on .*)$"
    blocks = [b for t in texts for b in re.findall(pattern, t, re.M)]
    return loaded, {name: block for block, name in blocks}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_chapters_say_what_each_loaded_model_file_records(nb):
    """Every chapter prints ``describe`` for each model it loads by name, and what it
    stored is what the file says now: a retrained file makes this fail until the chapter
    is run again (and its prose read again)."""
    loaded, blocks = described_models(nb)
    if not loaded:
        pytest.skip(f"{nb.name} loads no shipped model")
    assert loaded <= set(blocks), f"{nb.name} loads {sorted(loaded - set(blocks))} without describing them"
    for name, block in blocks.items():
        assert block == describe(load_pretrained(name, device="cpu"), name), (nb.name, name)


def test_the_readme_table_of_rivals_is_the_one_the_json_gives():
    """The README's benchmark table is `benchmarks/rivals.py --readme`, and the
    JSON's stored summary is the mean and sd of its rows: neither can go stale."""
    spec = importlib.util.spec_from_file_location("rivals", ROOT / "benchmarks" / "rivals.py")
    rivals = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rivals)
    assert rivals.summary(RIVALS_BENCH["rows"]) == RIVALS_BENCH["summary"]
    assert rivals.readme_table(RIVALS_BENCH["summary"]) in (ROOT / "README.md").read_text()
