"""Tests of probunet.toy.lesions: the LIDC-like data's rater law, its stored splits and validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from probunet.data import MultiAnnotatorDataset
from probunet.toy import ged_exact
from probunet.toy import lesions as L


@pytest.fixture(scope="module")
def big() -> dict[str, np.ndarray]:
    return L.generate_lesions(1500, seed=7)


def test_shapes_dtypes_and_determinism():
    a = L.generate_lesions(5, seed=3)
    assert a["images"].shape == (5, 64, 64) and a["images"].dtype == np.uint8
    assert a["annotations"].shape == (5, 4, 64, 64) and a["annotations"].dtype == np.uint8
    assert a["marked"].shape == a["offsets"].shape == (5, 4)
    L.validate_lesions(a)
    b = L.generate_lesions(5, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in L.LESION_ARRAYS)
    assert not np.array_equal(a["images"], L.generate_lesions(5, seed=4)["images"])


def test_every_annotation_follows_its_raters_draw(big):
    for i in range(0, 1500, 37):
        for r in range(4):
            expected = L.offset_mask(big["lesions"][i], int(big["offsets"][i, r])) if big["marked"][i, r] else 0
            assert np.array_equal(big["annotations"][i, r], np.asarray(expected, np.uint8) * np.ones((64, 64), np.uint8))
    assert np.all(big["offsets"][~big["marked"]] == 0)


def test_rater_frequencies_match_the_known_law(big):
    p = big["p_present"].astype(np.float64)
    # presence: 6000 Bernoulli draws; the marked count has sd sqrt(sum p(1-p)) ~ 21
    expected, sd = 4 * p.sum(), np.sqrt(4 * (p * (1 - p)).sum())
    assert abs(big["marked"].sum() - expected) < 4 * sd
    # boundary: offsets of the marked masks follow BOUNDARY_PROBS (binomial, 4 sd)
    offsets = big["offsets"][big["marked"]]
    for k, q in zip(L.BOUNDARY_OFFSETS, L.BOUNDARY_PROBS):
        count = (offsets == k).sum()
        assert abs(count - q * len(offsets)) < 4 * np.sqrt(len(offsets) * q * (1 - q)), k
    # about half the lesions are faint, and only faint ones are ever missed
    faint = big["contrast"] < L.CLEAR_CONTRAST
    assert 0.4 < faint.mean() < 0.6
    assert big["marked"][~faint].all() and not big["marked"][faint].all()
    assert np.all((p[faint] >= L.FAINTEST_PRESENCE) & (p[faint] < 1)) and np.all(p[~faint] == 1)


def test_presence_rises_with_contrast():
    c = np.linspace(*L.CONTRAST_RANGE, 50)
    p = L.contrast_to_presence(c)
    assert p[0] == pytest.approx(L.FAINTEST_PRESENCE) and np.all(np.diff(p) >= 0)
    assert L.contrast_to_presence(L.CLEAR_CONTRAST) == pytest.approx(1.0)


def test_offsets_grow_and_shrink_and_stay_in_the_image(big):
    for lesion in big["lesions"][:200]:
        areas = [L.offset_mask(lesion, k).sum() for k in L.BOUNDARY_OFFSETS]
        assert all(a < b for a, b in zip(areas, areas[1:]))  # strictly nested, smallest to largest
        assert areas[0] > 0  # eroded by 3 px, the lesion is still there
        widest = L.offset_mask(lesion, max(L.BOUNDARY_OFFSETS))
        assert not (widest[0].any() or widest[-1].any() or widest[:, 0].any() or widest[:, -1].any())
        assert np.array_equal(L.offset_mask(lesion, 1) & lesion, lesion)  # dilation contains the lesion


def test_lesions_are_visible_by_their_contrast(big):
    images = big["images"].astype(np.float64) / 255
    inside = np.array([im[m].mean() for im, m in zip(images, big["lesions"])])
    ring = np.array([im[L.offset_mask(m, 6) & ~L.offset_mask(m, 3)].mean() for im, m in zip(images[:300], big["lesions"][:300])])
    corr = np.corrcoef(inside[:300] - ring, big["contrast"][:300])[0, 1]
    assert corr > 0.9  # the image shows how faint the lesion is: what the model must read to know p_present


def test_modes_are_the_exact_rater_law(big):
    masks, probs = L.lesion_modes(big["lesions"][:20], big["p_present"][:20])
    assert masks.shape == (20, 8, 64, 64) and probs.shape == (20, 8)
    assert np.allclose(probs.sum(1), 1) and not masks[:, 0].any()
    assert np.array_equal(masks[:, 4], big["lesions"][:20])  # offset 0
    # the raters' own masks, scored against the law they came from, have a GED near 0
    d = ged_exact(big["annotations"][:20], masks, probs)
    assert abs(d.mean().item()) < 0.05


def test_stored_splits_are_the_generated_ones_and_small():
    total = 0
    for split in L.LESION_SPLITS:
        path = L.lesion_path(split)
        total += path.stat().st_size
        stored, generated = L.load_lesions(split), L.generate_lesion_split(split)
        assert len(stored["images"]) == L.LESION_SPLITS[split]["n"]
        assert all(np.array_equal(stored[k], generated[k]) and stored[k].dtype == generated[k].dtype
                   for k in L.LESION_ARRAYS), split
    assert total < 5e6  # a few MB in the repository


def test_a_missing_file_is_regenerated(tmp_path):
    loaded = L.load_lesions("val", root=tmp_path)
    assert np.array_equal(loaded["annotations"], L.load_lesions("val")["annotations"])
    L.save_lesions(loaded, tmp_path / "lesions_val.npz")
    assert np.array_equal(L.load_lesions("val", root=tmp_path)["images"], loaded["images"])


def test_the_generic_dataset_reads_the_stored_file():
    ds = MultiAnnotatorDataset.from_npz(L.lesion_path("val"))
    x, y = ds[0]
    assert x.shape == (1, 64, 64) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (64, 64) and y.dtype == torch.long and ds.num_raters == 4 and ds.num_classes == 2


@pytest.mark.parametrize("call, message", [
    (lambda: L.generate_lesions(0), "n and num_raters must be >= 1"),
    (lambda: L.generate_lesions(3, num_raters=0), "n and num_raters must be >= 1"),
    (lambda: L.generate_lesions(3, size=32), "size must be at least"),
    (lambda: L.load_lesions("dev"), "unknown split 'dev'"),
    (lambda: L.validate_lesions({"images": np.zeros((2, 8, 8), np.uint8)}), "missing arrays"),
    (lambda: L.save_lesions({**L.generate_lesions(2), "annotations": np.full((2, 4, 64, 64), 2, np.uint8)}, "x.npz"),
     "annotations must be uint8 0/1"),
    (lambda: L.validate_lesions({**L.generate_lesions(2), "p_present": np.zeros(3)}), r"p_present must have shape \(2,\)"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
