"""Tests of probunet.toy.shapes: the toy data's known law, the stored splits, validation and the Dataset."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from probunet.toy import shapes as data
from probunet.toy.shapes import (ToyAmbiguousDataset, contrast_to_prob, generate_split, generate_toy, load_split,
                           modes_of, save_split, split_path, validate_arrays)

torch.set_num_threads(1)  # tiny tensors: extra threads only add contention on a shared 2-core machine


@pytest.fixture(scope="module")
def stored() -> dict[str, dict[str, np.ndarray]]:
    """The splits as stored in data/*.npz (read directly, not through load_split)."""
    out = {}
    for split in data.SPLITS:
        with np.load(split_path(split)) as f:
            out[split] = {k: f[k] for k in f.files}
    return out


@pytest.fixture(scope="module")
def generated() -> dict[str, dict[str, np.ndarray]]:
    return {split: generate_split(split) for split in data.SPLITS}


@pytest.fixture(scope="module")
def train_ds(stored) -> ToyAmbiguousDataset:
    return ToyAmbiguousDataset(arrays=stored["train"])


def small_arrays(n: int = 3, seed: int = 5) -> dict[str, np.ndarray]:
    return generate_toy(n, size=16, num_objects=2, num_raters=3, seed=seed)


# -----------------------------------------------------------------------------
# the modes and the law


@pytest.mark.parametrize("split", ["train", "test"])
def test_modes_sum_to_one_and_are_distinct_masks(stored, split):
    ds = ToyAmbiguousDataset(arrays=stored[split])
    masks, probs = ds.all_modes()
    n, k = ds.probs.shape
    assert masks.shape == (n, 2**k, 32, 32) and masks.dtype == np.uint8 and probs.shape == (n, 2**k)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-12)
    assert set(np.unique(masks)) <= {0, 1}
    for a in range(2**k):
        for b in range(a + 1, 2**k):
            assert (masks[:, a] != masks[:, b]).any(axis=(-1, -2)).all(), f"modes {a} and {b} coincide"
    # the full mode is the union of all objects; mode m marks object j iff bit j of m is set
    np.testing.assert_array_equal(masks[:, -1], stored[split]["objects"].any(1))
    np.testing.assert_array_equal(masks[:, 1], stored[split]["objects"][:, 0])
    # per-image modes() agrees with all_modes()
    m3, p3 = ds.modes(3)
    np.testing.assert_array_equal(m3, masks[3])
    np.testing.assert_allclose(p3, probs[3])


def test_mode_zero_is_the_empty_mask_with_positive_probability(train_ds):
    masks, probs = train_ds.all_modes()
    assert masks[:, 0].max() == 0
    assert (probs[:, 0] > 0).all()
    p = train_ds.probs.double().numpy()
    np.testing.assert_allclose(probs[:, 0], (1 - p).prod(-1), rtol=1e-12)


def test_modes_of_hand_case():
    objects = np.zeros((2, 1, 3), bool)
    objects[0, 0, 0] = objects[1, 0, 2] = True
    masks, probs = modes_of(objects, np.array([0.2, 0.7]))
    assert masks[:, 0].tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 1], [1, 0, 1]]
    np.testing.assert_allclose(probs, [0.8 * 0.3, 0.2 * 0.3, 0.8 * 0.7, 0.2 * 0.7])


def test_probabilities_in_range_with_spread(stored):
    for split in data.SPLITS:
        p = stored[split]["probs"]
        assert p.dtype == np.float32
        assert p.min() >= np.float32(0.1) and p.max() <= np.float32(0.9)
    p = stored["train"]["probs"]
    assert p.min() < 0.15 and p.max() > 0.85


def test_contrast_to_prob_is_the_documented_law():
    assert contrast_to_prob(0.25) == pytest.approx(0.1)
    assert contrast_to_prob(0.8) == pytest.approx(0.9)
    assert contrast_to_prob(0.525) == pytest.approx(0.5)
    c = np.linspace(0.25, 0.8, 15)
    np.testing.assert_allclose(contrast_to_prob(c), 0.1 + 0.8 * (c - 0.25) / 0.55)
    slope, _ = np.polyfit(c, contrast_to_prob(c), 1)
    assert slope == pytest.approx(0.8 / 0.55)


def _object_means(arrays):
    im = arrays["images"].astype(np.float64) / 255.0
    ob = arrays["objects"]
    return np.array([[im[i][ob[i, k]].mean() for k in range(ob.shape[1])] for i in range(len(im))])


def test_images_show_the_law(stored):
    arrays = stored["train"]
    means, probs = _object_means(arrays), arrays["probs"]
    assert spearmanr(means.ravel(), probs.ravel()).statistic > 0.9
    # quantitatively: object intensity = background + contrast, contrast = the law's inverse of p
    contrast = 0.25 + 0.55 * (probs.astype(np.float64) - 0.1) / 0.8
    unsaturated = contrast < 0.72  # background + contrast + 3 noise std < 1: no clipping at 255
    err = means[unsaturated] - (data.BACKGROUND + contrast[unsaturated])
    assert unsaturated.sum() > 1000
    assert abs(err.mean()) < 0.005 and np.quantile(np.abs(err), 0.99) < 0.05
    background = arrays["images"][~arrays["objects"].any(1)].mean() / 255.0
    assert background == pytest.approx(data.BACKGROUND, abs=0.01)


def test_stored_annotations_follow_the_law(stored):
    """Raters mark object k with frequency p_k: binned calibration of the stored annotations."""
    arrays = stored["train"]
    ob, an = arrays["objects"], arrays["annotations"].astype(bool)
    # marked[i, r, k]: rater r marked all of object k (objects never overlap, so a mode is all-or-nothing)
    inside = np.einsum("nrhw,nkhw->nrk", an.astype(np.int64), ob.astype(np.int64))
    size = ob.sum((2, 3))[:, None, :]
    assert ((inside == 0) | (inside == size)).all(), "an annotation marks part of an object"
    marked = inside == size
    assert (an.sum((2, 3)) == (marked * size).sum(-1)).all(), "an annotation marks pixels outside all objects"
    p = np.broadcast_to(arrays["probs"][:, None, :], marked.shape)
    for lo in np.arange(0.1, 0.9, 0.2):
        sel = (p >= lo) & (p < lo + 0.2)
        assert abs(marked[sel].mean() - p[sel].mean()) < 0.03


# -----------------------------------------------------------------------------
# stored splits, loading, saving, validation


def test_stored_splits_equal_generated_bit_for_bit(stored, generated):
    for split, n in (("train", 2000), ("test", 500)):
        assert set(stored[split]) == set(data.ARRAYS) == set(generated[split])
        for key in data.ARRAYS:
            assert stored[split][key].dtype == generated[split][key].dtype, (split, key)
            assert np.array_equal(stored[split][key], generated[split][key]), (split, key)
        assert len(stored[split]["images"]) == n
        assert stored[split]["images"].shape == (n, 32, 32)
        assert stored[split]["annotations"].shape == (n, 4, 32, 32)
    assert not np.array_equal(stored["train"]["images"][:500], stored["test"]["images"])


def test_load_split_regenerates_when_absent(tmp_path, stored):
    assert not split_path("test", tmp_path).exists()
    arrays = load_split("test", root=tmp_path)
    for key in data.ARRAYS:
        assert np.array_equal(arrays[key], stored["test"][key]), key
    # and the default root reads the stored file
    loaded = load_split("test")
    assert all(np.array_equal(loaded[k], stored["test"][k]) for k in data.ARRAYS)


def test_save_then_load_round_trip_and_corrupt_file(tmp_path):
    arrays = small_arrays()
    save_split(arrays, split_path("train", tmp_path))
    back = load_split("train", root=tmp_path)
    assert all(np.array_equal(back[k], arrays[k]) and back[k].dtype == arrays[k].dtype for k in data.ARRAYS)
    bad = dict(arrays, probs=arrays["probs"] * 0 + 1.5)
    np.savez(split_path("train", tmp_path), **bad)
    with pytest.raises(ValueError, match="probs"):
        load_split("train", root=tmp_path)


def test_generate_toy_is_deterministic_and_seed_dependent():
    a, b, c = small_arrays(seed=1), small_arrays(seed=1), small_arrays(seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in data.ARRAYS)
    assert not np.array_equal(a["images"], c["images"])


@pytest.mark.parametrize("change, match", [
    (lambda a: a.pop("annotations"), "missing"),
    (lambda a: a.pop("probs"), "missing"),
    (lambda a: a.update(images=a["images"].astype(np.float32)), "images"),
    (lambda a: a.update(images=a["images"][0]), "images"),
    (lambda a: a.update(objects=a["objects"].astype(np.uint8)), "objects"),
    (lambda a: a.update(annotations=a["annotations"].astype(np.int64)), "annotations"),
    (lambda a: a.update(annotations=a["annotations"] * 2), "annotations"),
    (lambda a: a.update(probs=np.zeros_like(a["probs"])), "probs"),
    (lambda a: a.update(probs=np.ones_like(a["probs"])), "probs"),
    (lambda a: a.update(probs=-a["probs"]), "probs"),
    (lambda a: a.update(probs=a["probs"] + 1), "probs"),
    (lambda a: a.update(probs=np.full_like(a["probs"], np.nan)), "probs"),
    (lambda a: a.update(probs=a["probs"][:, :1]), "probs"),
])
def test_validate_arrays_rejects(change, match):
    arrays = small_arrays()
    validate_arrays(arrays)  # valid as generated
    change(arrays)
    with pytest.raises(ValueError, match=match):
        validate_arrays(arrays)
    with pytest.raises(ValueError, match=match):
        ToyAmbiguousDataset(arrays=arrays)


def test_data_files_are_small():
    total = sum(split_path(s).stat().st_size for s in data.SPLITS)
    assert 0 < total < 10 * 2**20


# -----------------------------------------------------------------------------
# the Dataset


def test_dataset_items(train_ds, stored):
    assert len(train_ds) == 2000 and train_ds.num_classes == 2
    for annotation in ("stored", "fresh"):
        ds = ToyAmbiguousDataset(arrays=stored["train"], annotation=annotation)
        for i in (0, 7, 1999):
            x, y = ds[i]
            assert x.shape == (1, 32, 32) and x.dtype == torch.float32
            assert y.shape == (32, 32) and y.dtype == torch.int64
            assert 0.0 <= x.min() and x.max() <= 1.0
            assert set(y.unique().tolist()) <= {0, 1}
            np.testing.assert_allclose(x[0].numpy(), stored["train"]["images"][i] / 255.0, rtol=1e-6)


def test_default_dataset_reads_the_stored_split(stored):
    ds = ToyAmbiguousDataset("test")
    assert len(ds) == 500
    assert torch.equal(ds.annotations, torch.from_numpy(stored["test"]["annotations"]).long())


def test_stored_annotation_yields_only_stored_masks(train_ds):
    torch.manual_seed(0)
    for i in (0, 11, 42):
        seen = set()
        stored_masks = train_ds.annotations[i]
        for _ in range(60):
            _, y = train_ds[i]
            hits = [r for r in range(len(stored_masks)) if torch.equal(y, stored_masks[r])]
            assert hits, f"image {i}: a mask not among its stored annotations"
            seen.update(hits)
        assert seen == set(range(len(stored_masks))), "some raters are never drawn"


def test_fresh_draws_follow_the_true_law(stored):
    ds = ToyAmbiguousDataset(arrays=stored["train"], annotation="fresh")
    masks, probs = ds.all_modes()
    p = ds.probs.numpy()
    # an image with unequal object probabilities whose rarest mode is still likely enough to show up often
    i = int(np.argmax(np.where(np.abs(p[:, 0] - p[:, 1]) > 0.4, probs.min(1), -1)))
    assert abs(p[i, 0] - p[i, 1]) > 0.4 and probs[i].min() > 0.05
    modes = torch.from_numpy(masks[i]).long().flatten(1)  # (M, H*W)
    torch.manual_seed(1)
    counts = np.zeros(len(modes))
    for _ in range(4000):
        _, y = ds[i]
        match = (modes == y.flatten()).all(1)
        assert match.sum() == 1, "a fresh draw is not one of the image's modes"
        counts[int(match.nonzero())] += 1
    np.testing.assert_allclose(counts / 4000, probs[i], atol=0.03)


@pytest.mark.parametrize("annotation", ["stored", "fresh"])
def test_draws_are_reproducible_with_torch_manual_seed(stored, annotation):
    ds = ToyAmbiguousDataset(arrays=stored["train"], annotation=annotation)

    def draw(seed):
        torch.manual_seed(seed)
        return torch.stack([ds[i % 5][1] for i in range(40)])

    a, b, c = draw(3), draw(3), draw(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_bad_names_raise():
    with pytest.raises(ValueError, match="annotation"):
        ToyAmbiguousDataset("train", annotation="random")
    with pytest.raises(ValueError, match="unknown split"):
        ToyAmbiguousDataset("validation")
    with pytest.raises(ValueError, match="unknown split"):
        load_split("val")
    with pytest.raises(ValueError, match="unknown split"):
        generate_split("Train")


def test_generate_toy_rejects_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        generate_toy(2, size=8)
    with pytest.raises(ValueError, match=">= 1"):
        generate_toy(0)
