"""Tests of probunet.toy.exclusive (raters mark exactly one object) and of
the exclusive law in probunet.toy.truth."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from probunet.toy import (ExclusiveObjectsDataset, ToyAmbiguousDataset,
                          generate_exclusive, generate_toy, sample_truth,
                          summarize, truth)
from probunet.toy import exclusive as ex
from probunet.toy import shapes
from probunet.toy.shapes import contrast_to_prob

# tiny tensors: extra threads only add contention on a shared 2-core machine
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def stored() -> dict[str, dict[str, np.ndarray]]:
    """The splits as stored in data/*.npz (read directly, not through
    load_exclusive)."""
    out = {}
    for split in ex.EXCLUSIVE_SPLITS:
        with np.load(ex.exclusive_path(split)) as f:
            out[split] = {k: f[k] for k in f.files}
    return out


@pytest.fixture(scope="module")
def train_ds(stored) -> ExclusiveObjectsDataset:
    return ExclusiveObjectsDataset(arrays=stored["train"])


def small_arrays(n: int = 4, seed: int = 5) -> dict[str, np.ndarray]:
    return generate_exclusive(n, size=16, num_objects=2, num_raters=3,
                              seed=seed)


def marked(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """bool (N, R, J): annotation r of image i equals object j."""
    an, ob = arrays["annotations"], arrays["objects"]
    return np.stack([(an == ob[:, j, None]).all((-1, -2))
                     for j in range(ob.shape[1])], -1)


def object_means(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Mean intensity in [0, 1] of each object: (N, J)."""
    im = arrays["images"].astype(np.float64) / 255.0
    ob = arrays["objects"]
    return np.array([[im[i][ob[i, k]].mean() for k in range(ob.shape[1])]
                     for i in range(len(im))])


def brightness_law(contrast: np.ndarray) -> np.ndarray:
    """The documented law, written out: (N, J) contrasts -> (N, J) probs."""
    w = 0.1 + 0.8 * (contrast - 0.25) / 0.55
    return w / w.sum(-1, keepdims=True)


# -----------------------------------------------------------------------------
# generation, stored splits


def test_stored_splits_equal_generated_bit_for_bit(stored):
    for split, n in (("train", 2000), ("test", 500)):
        generated = ex.generate_exclusive_split(split)
        assert set(stored[split]) == set(ex.ARRAYS) == set(generated)
        for key in ex.ARRAYS:
            assert stored[split][key].dtype == generated[key].dtype
            assert np.array_equal(stored[split][key], generated[key]), key
        assert stored[split]["images"].shape == (n, 32, 32)
        assert stored[split]["objects"].shape == (n, 3, 32, 32)
        assert stored[split]["probs"].shape == (n, 3)
        assert stored[split]["annotations"].shape == (n, 4, 32, 32)
    assert not np.array_equal(stored["train"]["images"][:500],
                              stored["test"]["images"])


def test_generate_exclusive_is_deterministic_and_seed_dependent():
    a, b, c = small_arrays(seed=1), small_arrays(seed=1), small_arrays(seed=2)
    for key in ex.ARRAYS:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key])
    assert not np.array_equal(a["images"], c["images"])
    assert a["images"].dtype == np.uint8 and a["objects"].dtype == bool
    assert a["probs"].dtype == np.float32
    assert a["annotations"].dtype == np.uint8
    assert a["annotations"].shape == (4, 3, 16, 16)
    ex.validate_exclusive(a)


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_stored_annotation_is_exactly_one_object(stored, split):
    arrays = stored[split]
    ob = arrays["objects"]
    assert ob.any((-1, -2)).all(), "an empty object"
    assert ob.sum(1).max() <= 1, "objects overlap"
    assert (marked(arrays).sum(-1) == 1).all()
    assert set(np.unique(arrays["annotations"])) == {0, 1}


def test_load_exclusive_regenerates_when_absent(tmp_path, stored):
    assert not ex.exclusive_path("test", tmp_path).exists()
    arrays = ex.load_exclusive("test", root=tmp_path)
    for key in ex.ARRAYS:
        assert np.array_equal(arrays[key], stored["test"][key]), key
    ds = ExclusiveObjectsDataset("test")  # the default root: data/
    assert torch.equal(ds.annotations,
                       torch.from_numpy(stored["test"]["annotations"]).long())


def test_save_then_load_round_trip_and_corrupt_file(tmp_path):
    arrays = small_arrays()
    path = ex.exclusive_path("train", tmp_path)
    ex.save_exclusive(arrays, path)
    back = ex.load_exclusive("train", root=tmp_path)
    for key in ex.ARRAYS:
        assert back[key].dtype == arrays[key].dtype
        assert np.array_equal(back[key], arrays[key])
    np.savez(path, **dict(arrays, probs=arrays["probs"] * 0.5))
    with pytest.raises(ValueError, match="sum to 1"):
        ex.load_exclusive("train", root=tmp_path)
    with pytest.raises(ValueError, match="sum to 1"):
        ex.save_exclusive(dict(arrays, probs=arrays["probs"] * 0.5), path)


# -----------------------------------------------------------------------------
# the law


def test_probs_rows_sum_to_one_and_lie_in_the_law_range(stored):
    lo, hi = 0.1 / (0.1 + 0.9 + 0.9), 0.9 / (0.9 + 0.1 + 0.1)
    for arrays in stored.values():
        p = arrays["probs"].astype(np.float64)
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
        assert p.min() >= lo - 1e-6 and p.max() <= hi + 1e-6
    p = stored["train"]["probs"]
    assert p.min() < 0.08 and p.max() > 0.75  # the range is used


def test_probs_are_the_formula_of_the_brightness(monkeypatch):
    """Without pixel noise an object's intensity is 0.1 + c_k (to 1/510), so
    the probs must be w_k / sum w_j with w = contrast_to_prob(c)."""
    noisy = generate_exclusive(200, seed=4)
    monkeypatch.setattr(shapes, "NOISE_STD", 0.0)  # drawn there
    clean = generate_exclusive(200, seed=4)
    # the noise only changes the pixels: same objects, probs, raters
    for key in ("objects", "probs", "annotations"):
        assert np.array_equal(clean[key], noisy[key]), key
    contrast = object_means(clean) - 0.1
    p = clean["probs"]
    np.testing.assert_allclose(brightness_law(contrast), p, atol=0.005)
    w = contrast_to_prob(contrast)
    np.testing.assert_allclose(w / w.sum(-1, keepdims=True), p, atol=0.005)
    # the tolerance tells the law from plausible wrong ones
    for wrong in (contrast / contrast.sum(-1, keepdims=True),  # p ~ c
                  np.full_like(p, 1 / 3), w):  # uniform, unnormalised
        assert np.abs(wrong - p).max() > 0.1


def test_brighter_objects_are_likelier(stored):
    arrays = stored["train"]
    means, p = object_means(arrays), arrays["probs"]
    for j, k in ((0, 1), (0, 2), (1, 2)):
        clear = np.abs(means[:, j] - means[:, k]) > 0.05  # beyond the noise
        assert clear.sum() > 1000
        assert np.array_equal(means[clear, j] > means[clear, k],
                              p[clear, j] > p[clear, k])
    # with noise the law still holds closely
    err = np.abs(brightness_law(means - 0.1) - p)
    assert err.mean() < 0.01 and np.quantile(err, 0.99) < 0.04


def test_stored_annotations_follow_the_law(stored):
    """Raters pick object k with frequency p_k (binned calibration)."""
    arrays = stored["train"]
    hits = marked(arrays)
    p = np.broadcast_to(arrays["probs"][:, None], hits.shape)
    tested = 0
    for lo in np.arange(0.05, 0.85, 0.1):
        sel = (p >= lo) & (p < lo + 0.1)
        if sel.sum() >= 1000:  # sd of the frequency <= 0.016
            tested += 1
            assert abs(hits[sel].mean() - p[sel].mean()) < 0.02, lo
    assert tested >= 5


# -----------------------------------------------------------------------------
# the Dataset


def test_dataset_items_and_attributes(train_ds, stored):
    assert len(train_ds) == 2000 and train_ds.num_classes == 2
    assert train_ds.exclusive is True
    assert ExclusiveObjectsDataset.exclusive is True
    assert ToyAmbiguousDataset.exclusive is False
    assert train_ds.images.shape == (2000, 1, 32, 32)
    assert train_ds.annotations.dtype == torch.int64
    for annotation in ("stored", "fresh"):
        ds = ExclusiveObjectsDataset(arrays=stored["train"],
                                     annotation=annotation)
        for i in (0, 7, 1999):
            x, y = ds[i]
            assert x.shape == (1, 32, 32) and x.dtype == torch.float32
            assert y.shape == (32, 32) and y.dtype == torch.int64
            np.testing.assert_allclose(
                x[0].numpy(), stored["train"]["images"][i] / 255.0, rtol=1e-6)
            assert sum(torch.equal(y, o.long())
                       for o in ds.objects[i]) == 1


def test_modes_are_the_objects(train_ds, stored):
    masks, probs = train_ds.all_modes()
    assert masks.shape == (2000, 3, 32, 32) and masks.dtype == np.uint8
    assert probs.shape == (2000, 3) and probs.dtype == np.float64
    np.testing.assert_array_equal(masks, stored["train"]["objects"])
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    m3, p3 = train_ds.modes(3)
    np.testing.assert_array_equal(m3, masks[3])
    np.testing.assert_array_equal(p3, probs[3])


def test_stored_annotation_yields_only_stored_masks(train_ds):
    torch.manual_seed(0)
    for i in (0, 11, 42):
        seen = set()
        for _ in range(60):
            _, y = train_ds[i]
            hits = [r for r, a in enumerate(train_ds.annotations[i])
                    if torch.equal(y, a)]
            assert hits, f"image {i}: a mask not among its annotations"
            seen.update(hits)
        assert seen == set(range(4)), "some raters are never drawn"


def test_fresh_draws_follow_probs(stored):
    ds = ExclusiveObjectsDataset(arrays=stored["train"], annotation="fresh")
    p = ds.probs.double().numpy()
    # an image with very unequal probabilities, none of them rare
    i = int(np.argmax(np.where(p.min(1) > 0.1, np.ptp(p, 1), -1)))
    assert p[i].min() > 0.1 and np.ptp(p[i]) > 0.4
    assert np.abs(p[i] - 1 / 3).max() > 0.2  # far from uniform
    objects = ds.objects[i].long().flatten(1)  # (J, H*W)
    torch.manual_seed(1)
    counts = np.zeros(3)
    for _ in range(6000):
        _, y = ds[i]
        match = (objects == y.flatten()).all(1)
        assert match.sum() == 1, "a fresh draw is not exactly one object"
        counts[int(match.nonzero())] += 1
    # sd of each frequency <= 0.0065
    np.testing.assert_allclose(counts / 6000, p[i], atol=0.025)


@pytest.mark.parametrize("annotation", ["stored", "fresh"])
def test_draws_are_reproducible_with_torch_manual_seed(stored, annotation):
    ds = ExclusiveObjectsDataset(arrays=stored["test"], annotation=annotation)

    def draw(seed):
        torch.manual_seed(seed)
        return torch.stack([ds[i % 5][1] for i in range(40)])

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


# -----------------------------------------------------------------------------
# validation


def _union_annotation(a):
    a["annotations"][1, 0] = a["objects"][1].any(0)


def _empty_annotation(a):
    a["annotations"][2, 1] = 0


def _other_images_object(a):
    a["annotations"][0, 2] = a["objects"][3, 0]


@pytest.mark.parametrize("change, match", [
    (lambda a: a.pop("annotations"), "missing"),
    (lambda a: a.pop("probs"), "missing"),
    (lambda a: a.update(images=a["images"].astype(np.float32)), "images"),
    (lambda a: a.update(images=a["images"][0]), "images"),
    (lambda a: a.update(objects=a["objects"].astype(np.uint8)), "objects"),
    (lambda a: a.update(objects=a["objects"][:, :0]), "objects"),
    (lambda a: a.update(probs=a["probs"][:, :1]), "probs"),
    (lambda a: a.update(probs=a["probs"].astype(np.int64)), "probs"),
    (lambda a: a.update(probs=a["probs"] * 0.9), "sum to 1"),
    (lambda a: a.update(probs=np.ones_like(a["probs"])), "sum to 1"),
    (lambda a: a.update(probs=np.full_like(a["probs"], np.nan)), r"\[0, 1\]"),
    (lambda a: a.update(probs=a["probs"][:, ::-1] * [2, -1]), r"\[0, 1\]"),
    (lambda a: a.update(annotations=a["annotations"].astype(np.int64)),
     "annotations"),
    (lambda a: a.update(annotations=a["annotations"] * 2), "annotations"),
    (lambda a: a.update(annotations=a["annotations"][..., :8]),
     "annotations"),
    (_union_annotation, "exactly one object.*image 1, rater 0"),
    (_empty_annotation, "exactly one object.*image 2, rater 1"),
    (_other_images_object, "exactly one object.*image 0, rater 2"),
    (lambda a: a["objects"][1, 0].fill(False), "empty object"),
])
def test_bad_arrays_raise(change, match):
    arrays = small_arrays()
    ex.validate_exclusive(arrays)  # valid as generated
    change(arrays)
    with pytest.raises(ValueError, match=match):
        ex.validate_exclusive(arrays)
    with pytest.raises(ValueError, match=match):
        ExclusiveObjectsDataset(arrays=arrays)


def test_bad_names_and_arguments_raise():
    with pytest.raises(ValueError, match="annotation"):
        ExclusiveObjectsDataset("train", annotation="random")
    with pytest.raises(ValueError, match="unknown split"):
        ExclusiveObjectsDataset("val")
    with pytest.raises(ValueError, match="unknown split"):
        ex.generate_exclusive_split("Train")
    with pytest.raises(ValueError, match="size"):
        generate_exclusive(2, size=8)
    with pytest.raises(ValueError, match=">= 1"):
        generate_exclusive(0)


# -----------------------------------------------------------------------------
# truth: sample_truth and summarize under the exclusive law


@pytest.fixture(scope="module")
def hundred(stored) -> dict[str, np.ndarray]:
    return {k: v[:100] for k, v in stored["test"].items()}


def test_sample_truth_exclusive_draws_one_object_from_probs(hundred):
    o, p = hundred["objects"], hundred["probs"]
    s = sample_truth(o, p, 300, seed=2, exclusive=True)
    assert s.shape == (100, 300, 32, 32) and s.dtype == torch.uint8
    assert torch.equal(s, sample_truth(o, p, 300, seed=2, exclusive=True))
    assert not torch.equal(s, sample_truth(o, p, 300, seed=3,
                                           exclusive=True))
    hits = np.stack([(s.numpy() == o[:, j, None]).all((-1, -2))
                     for j in range(3)], -1)  # (N, S, J)
    assert (hits.sum(-1) == 1).all()
    # pooled over images, object k is drawn p_k of the time: 30000 draws
    assert abs(hits.mean(1) - p).mean() < 0.025
    assert abs(hits.mean((0, 1)) - p.mean(0)).max() < 0.01
    with pytest.raises(ValueError, match="sum to 1"):
        sample_truth(o, p * 0.5, 2, exclusive=True)


def test_summarize_exclusive_on_samples_of_the_law(hundred):
    o, p, y = hundred["objects"], hundred["probs"], hundred["annotations"]
    out = summarize(sample_truth(o, p, 200, seed=0, exclusive=True), y, o, p,
                    exclusive=True)
    assert out["other_fraction"] == 0.0
    assert abs(out["ged_exact"]) < 0.005  # measured 0.0001
    assert out["mode_tv"] < 0.02  # measured 0.005
    assert out["mode_tv_per_image"] < 0.06  # the noise floor, measured 0.037
    assert out["calibration_error"] < 0.015
    assert abs(out["diversity"] - out["true_diversity"]) < 0.01
    assert len(out["mode_freq_true"]) == 4 and out["mode_freq_true"][-1] == 0
    np.testing.assert_allclose(out["mode_freq_true"][:3],
                               p.astype(np.float64).mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="sum to 1"):
        summarize(y, y, o, p * 0.5, exclusive=True)


def test_summarize_exclusive_sees_independent_objects(hundred):
    """Objects marked independently with the right p_k: calibrated per
    object, but the masks are often none or several objects."""
    o, p, y = hundred["objects"], hundred["probs"], hundred["annotations"]
    out = summarize(sample_truth(o, p, 200, seed=0), y, o, p, exclusive=True)
    assert out["calibration_error"] < 0.015  # the marginals are right
    # P(not exactly one object) = 1 - sum_k p_k prod_{j != k} (1 - p_j)
    p64 = p.astype(np.float64)
    one = (p64 / (1 - p64) * (1 - p64).prod(-1, keepdims=True)).sum(-1)
    assert out["other_fraction"] > 0.2
    assert out["mode_tv"] > 0.2 and out["ged_exact"] > 0.05
    # the exact share of masks that are not exactly one object, less those
    # that still match a mode at IoU 0.5
    assert out["other_fraction"] <= (1 - one).mean() + 0.02


def test_summarize_exclusive_all_objects_is_other(hundred):
    o, p, y = hundred["objects"], hundred["probs"], hundred["annotations"]
    union = np.repeat(o.any(1, keepdims=True), 2, 1).astype(np.uint8)
    # the union matches object k's mode when |o_k| / |union| >= 0.5
    iou = o.sum((-1, -2)) / o.any(1).sum((-1, -2))[:, None]
    apart = iou.max(1) < 0.5
    assert 50 < apart.sum() < 100
    out = summarize(union[apart], y[apart], o[apart], p[apart],
                    exclusive=True)
    assert out["other_fraction"] == 1.0
    assert out["mode_freq_pred"][-1] == 1.0
    out = summarize(union, y, o, p, exclusive=True)
    assert out["other_fraction"] == pytest.approx(apart.mean())


def test_evaluate_follows_the_dataset_law(monkeypatch, hundred):
    ds = ExclusiveObjectsDataset(arrays=hundred)

    def oracle(model, images, n, batch_size):  # a perfect model's samples
        return sample_truth(ds.objects, ds.probs, n, seed=0, exclusive=True)

    monkeypatch.setattr(truth, "sample_masks", oracle)
    out = truth.evaluate(None, ds, n=50)
    assert out["other_fraction"] == 0.0 and len(out["mode_freq_true"]) == 4
    assert abs(out["ged_exact"]) < 0.01


# -----------------------------------------------------------------------------
# the independent law is unchanged


# summarize of the shapes toy, computed with probunet/toy/truth.py before the
# exclusive law was added (see independent_case)
INDEPENDENT = {
    "ged_unbiased": 0.016967598827226694,
    "ged_biased": 0.19362309099948674,
    "hm_iou": 0.6493302240842654,
    "diversity": 0.5981796355193123,
    "annotator_diversity": 0.5570770598092122,
    "ged_exact": 0.011976272479387897,
    "true_diversity": 0.5064750004516272,
    "mode_tv": 0.15416666666666665,
    "mode_tv_per_image": 0.2382878872702334,
    "other_fraction": 0.15416666666666667,
    "calibration_error": 0.03743729293346404,
    "mode_freq_pred": [0.24583333333333332, 0.175, 0.23958333333333334,
                       0.18541666666666667, 0.15416666666666667],
    "mode_freq_true": [0.2519270533053722, 0.21373135758155126,
                       0.2862430057199154, 0.2480985833931611, 0.0],
}


def independent_case():
    data = generate_toy(30, seed=7)
    o, p = data["objects"], data["probs"]
    s = sample_truth(o, p, 16, seed=3).numpy()
    s[:, 12:] = np.roll(s[:, 12:], 3, axis=-1)  # some samples match no mode
    return s, data["annotations"], o, p


def test_independent_summarize_is_unchanged():
    s, y, o, p = independent_case()
    for out in (summarize(s, y, o, p), summarize(s, y, o, p,
                                                 exclusive=False)):
        assert set(out) == set(INDEPENDENT)
        for key, value in INDEPENDENT.items():
            np.testing.assert_allclose(out[key], value, rtol=1e-9,
                                       atol=1e-12, err_msg=key)
