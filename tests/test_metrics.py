"""Tests of probunet.metrics: hand-computed cases, statistical checks against a known truth, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probunet import metrics
from probunet.toy import truth
from probunet.toy import generate_toy, law_and_raters_tv, modes_of, summarize

# 1x2 images: E empty, A = left pixel, B = right pixel; every distance between them is 0 or 1
E, A, B = np.array([[0, 0]]), np.array([[1, 0]]), np.array([[0, 1]])


def stack(*masks) -> np.ndarray:
    """One image's masks (H, W) each -> (1, S, H, W)."""
    return np.stack(masks)[None].astype(np.uint8)


def square(top: int, left: int, size: int = 2, hw: int = 5) -> np.ndarray:
    m = np.zeros((hw, hw), bool)
    m[top:top + size, left:left + size] = True
    return m


def draw_from_law(objects: np.ndarray, probs: np.ndarray, num: int, seed: int) -> np.ndarray:
    """num masks per image from the true law (object k marked with prob p_k): uint8 (N, num, H, W)."""
    marks = np.random.default_rng(seed).random((len(probs), num, probs.shape[1])) < probs[:, None, :]
    return np.einsum("nsk,nkhw->nshw", marks.astype(np.uint8), objects.astype(np.uint8))


# -----------------------------------------------------------------------------
# IoU


def test_iou_of_two_squares_overlapping_by_one_pixel():
    a, b = square(0, 0), square(1, 1)  # 4 + 4 pixels, 1 shared: IoU = 1 / 7
    assert metrics.iou(a, b).item() == pytest.approx(1 / 7)
    out = metrics.pairwise_iou(torch.from_numpy(a)[None, None], b[None, None].astype(np.uint8))
    assert out.shape == (1, 1, 1) and out.dtype == torch.float64
    assert out.item() == pytest.approx(1 / 7)


def test_iou_empty_convention():
    assert metrics.iou(E, E).item() == 1.0  # both empty: IoU 1, d = 0
    assert metrics.iou(E, A).item() == 0.0 and metrics.iou(A, E).item() == 0.0
    assert metrics.pairwise_iou(stack(E, A), stack(E, A))[0].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert metrics.diversity(stack(E, E))[0].item() == 0.0
    assert metrics.ged(stack(E, E), stack(E, E)).item() == 0.0


def test_pairwise_iou_matches_elementwise_iou_across_chunks(monkeypatch):
    monkeypatch.setattr(metrics, "CHUNK_PIXELS", 4 * 5 * 6 * 8)  # 8 images per chunk
    g = torch.Generator().manual_seed(0)
    n = 8 * 3 + 5  # several chunks and a partial one
    a = torch.rand(n, 3, 5, 6, generator=g) < 0.3
    b = (torch.rand(n, 4, 5, 6, generator=g) < 0.3).int()
    a[0], b[1] = False, 0  # some empty masks
    expected = metrics.iou(a[:, :, None], b[:, None])  # broadcast to (n, 3, 4)
    assert torch.allclose(metrics.pairwise_iou(a, b), expected, atol=1e-12)
    assert not torch.all(expected == expected[0, 0, 0])


# -----------------------------------------------------------------------------
# GED, diversity, Hungarian-matched IoU


def test_ged_of_identical_sets():
    # biased: exactly 0. unbiased: 2T/S^2 - 2T/(S(S-1)) = -2T/(S^2 (S-1)), T = sum of d over ordered pairs
    two = stack(A, B)  # T = 2, S = 2 -> -1
    assert metrics.ged(two, two, unbiased=False).item() == 0.0
    assert metrics.ged(two, two).item() == pytest.approx(-1.0)
    three = stack(A, B, E)  # T = 6, S = 3 -> -2/3
    assert metrics.ged(three, three, unbiased=False).item() == 0.0
    assert metrics.ged(three, three).item() == pytest.approx(-2 / 3)


def test_ged_hand_case():
    samples, annotations = stack(A, B), stack(A, A, E)
    # E d(S,Y) = 4/6; within samples: 2/4 (biased), 2/2 (unbiased); within annotations: 4/9, 4/6
    assert metrics.ged(samples, annotations, unbiased=False).item() == pytest.approx(2 * 4 / 6 - 2 / 4 - 4 / 9)  # 7/18
    assert metrics.ged(samples, annotations).item() == pytest.approx(2 * 4 / 6 - 1 - 4 / 6)  # -1/3


def test_ged_exact_hand_case():
    samples, modes, probs = stack(A, B), stack(E, A), np.array([[0.25, 0.75]])
    # E d(S,Y) = mean(0.25, 1) = 0.625; E d(Y,Y') = 2 * 0.25 * 0.75 = 0.375; E d(S,S') = 1
    assert truth.ged_exact(samples, modes, probs).item() == pytest.approx(2 * 0.625 - 1 - 0.375)
    assert truth.true_diversity(modes, probs).item() == pytest.approx(0.375)
    assert metrics.diversity(stack(A, B, E)).item() == pytest.approx(1.0)


def test_ged_exact_is_the_expectation_of_unbiased_ged():
    data = generate_toy(1, size=16, seed=3)
    objects, probs = data["objects"], data["probs"].astype(np.float64)
    modes, mode_probs = modes_of(objects, probs)
    n = 5000  # the same image n times: fresh annotation sets, the same (wrong) samples
    samples = np.repeat(draw_from_law(objects, 1 - probs, 4, seed=1), n, axis=0)
    annotations = draw_from_law(np.repeat(objects, n, 0), np.repeat(probs, n, 0), 8, seed=2)
    exact = truth.ged_exact(samples[:1], modes, mode_probs).item()
    unbiased = metrics.ged(samples, annotations)
    standard_error = unbiased.std().item() / math.sqrt(n)
    biased = metrics.ged(samples, annotations, unbiased=False).mean().item()
    assert exact > 0.1  # the samples come from another law
    assert standard_error < 0.005
    assert abs(unbiased.mean().item() - exact) < 4 * standard_error
    assert biased - exact > 0.1  # the biased estimator is far off: E[d(S,S')]/S + E[d(Y,Y')]/R too high


def test_hungarian_iou():
    a, b, c = square(0, 0), square(2, 2), square(2, 3)  # b, c: IoU 2/6
    assert metrics.hungarian_iou(stack(a, b, c), stack(c, a, b)).item() == pytest.approx(1.0)
    # cost [[0, 1], [1, 2/3]]: match a-a and b-c -> mean(1, 1/3)
    assert metrics.hungarian_iou(stack(a, b), stack(a, c)).item() == pytest.approx((1 + 1 / 3) / 2)
    # S=2, R=1: tiled to L=2, the single annotation is matched twice
    assert metrics.hungarian_iou(stack(a, b), stack(a)).item() == pytest.approx(0.5)
    # S=2, R=3: L=6, each sample thrice, each annotation twice: a->a,a  b->b,b  and the two c's to a (0), b (1/3)
    assert metrics.hungarian_iou(stack(a, b), stack(a, b, c)).item() == pytest.approx((2 + 2 + 1 / 3) / 6)


# -----------------------------------------------------------------------------
# mode and object frequencies


def test_assign_modes():
    objects = np.stack([square(0, 0, 3, 8), square(4, 4, 4, 8)])[None]  # 9 and 16 pixels
    modes, _ = modes_of(objects, np.array([[0.5, 0.5]]))  # (1, 4, 8, 8): {}, {0}, {1}, {0, 1}
    rng = np.random.default_rng(0)
    noise = rng.random((8, 8)) < 0.5
    half = np.zeros((8, 8), bool)
    half[4:6, 4:8] = True  # 8 of object 1's 16 pixels: IoU exactly 0.5 with mode 2
    samples = np.stack([modes[0, 3], modes[0, 0], noise, half, modes[0, 1]])[None]
    assert truth.assign_modes(samples, modes).tolist() == [[3, 0, 4, 2, 1]]
    assert truth.assign_modes(samples, modes, min_iou=0.6).tolist() == [[3, 0, 4, 4, 1]]
    duplicated = np.concatenate([modes[:, 1:2], modes[:, 1:2]], axis=1)  # a tie goes to the lower index
    assert truth.assign_modes(modes[:, 1:2], duplicated).tolist() == [[0]]
    assert truth.assign_modes(samples, modes).dtype == torch.long


def test_empty_model_mode_frequencies():
    data = generate_toy(5, num_objects=2)
    modes, p = modes_of(data["objects"], data["probs"])
    freqs = truth.mode_frequencies(np.zeros((5, 7, 32, 32), np.uint8), modes)
    assert freqs.shape == (5, 5)
    assert freqs.tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0]] * 5
    # TV of [1, 0, ...] against p is 1 - p_0
    assert truth.mode_tv(freqs, p, pooled=False).numpy() == pytest.approx(1 - p[:, 0])
    assert truth.mode_tv(freqs, p) == pytest.approx(1 - p[:, 0].mean())


def test_mode_tv_hand_case_and_noise_floor():
    assert truth.mode_tv([[0.5, 0.5]], [[1.0, 0.0]]) == pytest.approx(0.5)
    assert truth.mode_tv([[0.5, 0.3, 0.2]], [[0.5, 0.5]]) == pytest.approx(0.2)  # "other" counts
    # a perfect model with 100 samples and 4 equiprobable modes: per-image TV ~ 0.07, pooled ~ 0
    rng = np.random.default_rng(0)
    freqs = np.pad(rng.multinomial(100, [0.25] * 4, size=2000) / 100, ((0, 0), (0, 1)))
    probs = np.full((2000, 4), 0.25)
    per_image = truth.mode_tv(freqs, probs, pooled=False)
    assert per_image.shape == (2000,) and per_image.dtype == torch.float64
    assert 0.06 < per_image.mean().item() < 0.08
    assert truth.mode_tv(freqs, probs) < 0.01


def test_mode_tv_is_at_least_the_other_frequency():
    # the benchmark's reading of its pooled target: specks (samples matching no mode) cost their full share
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=300)
    freqs = rng.dirichlet(np.ones(5) * 0.7, size=300)  # last column "other", often large
    per_image, other = truth.mode_tv(freqs, probs, pooled=False).numpy(), freqs[:, -1]
    assert (per_image >= other - 1e-12).all()
    assert truth.mode_tv(freqs, probs) >= other.mean() - 1e-12
    # equality when every mode is short by exactly its share of "other": the bound is tight
    tight = np.concatenate([probs * (1 - other[:, None]), other[:, None]], 1)
    assert truth.mode_tv(tight, probs, pooled=False).numpy() == pytest.approx(other)


def test_object_frequencies():
    objects = np.stack([square(0, 0, 2, 6), square(2, 2, 4, 6)])[None]  # 4 and 16 pixels
    partial = objects[0, 1].copy()
    partial[2:4] = False  # 8 of 16 pixels: exactly the 0.5 coverage
    samples = np.stack([objects[0, 0], partial, objects[0, 0] | objects[0, 1], np.zeros((6, 6), bool)])[None]
    assert truth.object_frequencies(samples, objects).tolist() == [[0.5, 0.5]]
    assert truth.object_frequencies(samples, objects, coverage=0.6).tolist() == [[0.5, 0.25]]


# -----------------------------------------------------------------------------
# calibration


def test_calibration():
    true = np.array([0.12, 0.18, 0.86])
    assert truth.calibration_error(true, true) == pytest.approx(0.0, abs=1e-12)
    # constant 0.5: bin 1 holds 0.12 and 0.18 (mean 0.15), bin 8 holds 0.86
    assert truth.calibration_error(np.full(3, 0.5), true) == pytest.approx(2 / 3 * 0.35 + 1 / 3 * 0.36)
    curve = truth.calibration_curve(np.full(3, 0.5), torch.tensor(true), bins=10)
    assert curve["counts"].tolist() == [0, 2, 0, 0, 0, 0, 0, 0, 1, 0]
    assert curve["bin_centers"] == pytest.approx(np.arange(0.05, 1, 0.1))
    assert curve["mean_true"][1] == pytest.approx(0.15) and curve["mean_predicted"][8] == 0.5
    assert np.isnan(curve["mean_true"][0]) and np.isnan(curve["mean_predicted"][9])
    assert truth.calibration_curve([1.0], [1.0], bins=4)["counts"].tolist() == [0, 0, 0, 1]


def test_the_two_binnings_of_a_noisy_but_reliable_predictor():
    """A predictor q that is reliable (E[true | q] = q) but noisy: binned by the
    true value it looks pulled to the middle, binned by its own value it is on
    the diagonal; a predictor equal to the truth is on the diagonal either way."""
    rng = np.random.default_rng(0)
    q = rng.uniform(0.05, 0.95, 200_000)
    true = q + rng.uniform(-0.05, 0.05, q.size)  # E[true | q] = q
    by_true = truth.calibration_curve(q, true, bins=10, by="true")
    by_pred = truth.calibration_curve(q, true, bins=10, by="predicted")
    gap = lambda c: c["mean_predicted"] - c["mean_true"]  # noqa: E731
    assert gap(by_true)[0] > 0.01 and gap(by_true)[-1] < -0.01  # to the middle
    assert np.abs(gap(by_pred)).max() < 0.002
    assert by_pred["counts"].sum() == q.size and by_pred["counts"].min() > 0
    exact = truth.calibration_curve(true, true, bins=10, by="predicted")
    assert np.abs(gap(exact)).max() < 1e-12
    with pytest.raises(ValueError, match="by must be"):
        truth.calibration_curve(q, true, by="both")


# -----------------------------------------------------------------------------
# bad input

X = np.zeros((2, 3, 4, 4), np.uint8)


@pytest.mark.parametrize("call, match", [
    (lambda: metrics.ged(X, X[:1]), "numbers of images N"),
    (lambda: metrics.ged(X, X[..., :3]), "image sizes H, W"),
    (lambda: metrics.pairwise_iou(X[0], X[0]), "4 dims"),
    (lambda: metrics.iou(X[0, 0, 0], X[0, 0, 0]), "at least 2 dims"),
    (lambda: metrics.iou(X[:, :2], X), "do not broadcast"),
    (lambda: metrics.hungarian_iou(X[:, :0], X), r"S >= 1"),
    (lambda: metrics.ged(X[:, :1], X), "at least 2 samples"),
    (lambda: metrics.ged(X, X[:, :1]), "at least 2 annotations"),
    (lambda: metrics.diversity(X[:, :1]), "at least 2 samples"),
    (lambda: metrics.ged(X.astype(float) * np.nan, X), "samples contains NaN"),
    (lambda: truth.ged_exact(X, X, np.full((2, 3), 0.3)), "sum to 1"),
    (lambda: truth.true_diversity(X, np.full((2, 2), 0.5)), r"shape \(N, M\)"),
    (lambda: truth.mode_tv([[0.5, 0.5]], [[0.6, 0.4], [0.5, 0.5]]), "numbers of images N"),
    (lambda: truth.mode_tv([[0.5, 0.5, 0.0, 0.0]], [[0.5, 0.5]]), "M or M \\+ 1 columns"),
    (lambda: truth.mode_tv([[0.5, 0.6]], [[0.5, 0.5]]), "freqs rows must sum to 1"),
    (lambda: truth.calibration_error([0.5, np.nan], [0.5, 0.5]), "predicted contains NaN"),
    (lambda: truth.calibration_error([0.5], [1.5]), r"true must lie in \[0, 1\]"),
    (lambda: truth.calibration_error([0.5], [0.5, 0.5]), "different shapes"),
    (lambda: truth.calibration_curve([0.5], [0.5], bins=0), "bins"),
    (lambda: truth.object_frequencies(X, X), "empty object"),
    (lambda: summarize(X, X, X.astype(bool), np.full((2, 2), 0.5)), r"probs must have shape \(N, J\)"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -----------------------------------------------------------------------------
# everything at once, at full size: 500 images x 100 samples of 32x32


def test_summarize_samples_from_the_true_law():
    data = generate_toy(500)
    objects, probs = data["objects"], data["probs"].astype(np.float64)
    out = summarize(draw_from_law(objects, probs, 100, seed=0), data["annotations"], objects, probs)
    assert set(out) == {"ged_unbiased", "ged_biased", "ged_exact", "hm_iou", "diversity", "annotator_diversity", "true_diversity", "mode_tv",
                        "mode_tv_per_image", "other_fraction", "calibration_error", "mode_freq_pred", "mode_freq_true"}
    assert all(isinstance(v, float) and math.isfinite(v) for k, v in out.items() if not k.startswith("mode_freq"))
    assert abs(out["ged_exact"]) < 0.005  # measured |.| <= 0.0004 over 4 seeds
    assert abs(out["ged_unbiased"]) < 0.02  # only 4 annotations per image: noisier, but unbiased
    assert out["ged_biased"] > 0.05  # biased upwards by E[d(Y,Y')] / R
    assert out["mode_tv"] < 0.01  # measured <= 0.0035 over 4 seeds; a wrong law gives 0.07
    assert out["calibration_error"] < 0.01  # measured <= 0.0034; a wrong law gives 0.38
    assert out["other_fraction"] == 0.0  # every sample is exactly one of the modes
    assert abs(out["diversity"] - out["true_diversity"]) < 0.01
    assert 0.03 < out["mode_tv_per_image"] < 0.15  # the sampling-noise floor
    assert 0.5 < out["hm_iou"] < 1.0
    assert len(out["mode_freq_pred"]) == len(out["mode_freq_true"]) == 5 and out["mode_freq_true"][-1] == 0.0
    assert sum(out["mode_freq_pred"]) == pytest.approx(1.0)


def test_summarize_sees_a_wrong_model():
    data = generate_toy(100, seed=1)
    objects, probs = data["objects"], data["probs"].astype(np.float64)
    wrong = summarize(draw_from_law(objects, 1 - probs, 50, seed=0), data["annotations"], objects, probs)
    right = summarize(draw_from_law(objects, probs, 50, seed=0), data["annotations"], objects, probs)
    assert wrong["calibration_error"] > 0.2 > right["calibration_error"]
    assert wrong["ged_exact"] > 0.05 > right["ged_exact"]
    assert wrong["mode_tv"] > 0.05 > right["mode_tv"]
    assert wrong["mode_tv_per_image"] > right["mode_tv_per_image"] + 0.1
    one_rater = summarize(draw_from_law(objects, probs, 50, seed=0), data["annotations"][:, :1], objects, probs)
    assert math.isnan(one_rater["ged_unbiased"]) and math.isfinite(one_rater["ged_biased"])


def test_law_and_raters_tv_tells_the_law_from_the_raters():
    data = generate_toy(200, seed=2)
    objects, probs = data["objects"], data["probs"].astype(np.float64)
    modes, mode_probs = modes_of(objects, probs)
    raters = data["annotations"]                                               # (200, 4, H, W): 4 draws of the law
    law = law_and_raters_tv(draw_from_law(objects, probs, 400, seed=0), raters, modes, mode_probs)
    parrot = law_and_raters_tv(np.repeat(raters, 100, axis=1), raters, modes, mode_probs)  # the raters, 100 times
    assert parrot["raters"].abs().max() < 1e-12 and law["law"].mean() < 0.05
    assert parrot["law"].mean() > 0.25 and law["raters"].mean() > 0.25      # four draws are far from their law
    assert parrot["law"].mean().item() == pytest.approx(law["raters"].mean().item(), abs=0.03)  # TV(raters, law), either way
    with pytest.raises(ValueError, match="every annotation must be one of the modes"):
        law_and_raters_tv(raters, 1 - raters, modes, mode_probs)


# -----------------------------------------------------------------------------
# several classes: d = 1 - mean IoU over the foreground classes present in either mask


def multi_class_example():
    """One image of 2x2 pixels, classes 0, 1, 2: two samples and two annotations."""
    s = torch.tensor([[[[1, 1], [0, 0]], [[2, 2], [0, 0]]]])
    y = torch.tensor([[[[1, 0], [0, 0]], [[2, 2], [2, 0]]]])
    return s, y


def test_multi_class_ged_matches_a_hand_computation():
    s, y = multi_class_example()
    # d(s1,y1): class 1 IoU 1/2 (class 2 in neither) -> 1/2;  d(s1,y2), d(s2,y1): each class in one mask only -> 1;
    # d(s2,y2): class 2 IoU 2/3 -> 1/3;  d(s1,s2) = d(y1,y2) = 1.  Cross mean = (1/2 + 1 + 1 + 1/3) / 4 = 17/24.
    assert metrics.pairwise_iou(s, y)[0].flatten().tolist() == pytest.approx([0.5, 0.0, 0.0, 2 / 3])
    assert metrics.ged(s, y, unbiased=False).item() == pytest.approx(2 * 17 / 24 - 2 / 4 - 2 / 4)  # 5/12
    assert metrics.ged(s, y).item() == pytest.approx(2 * 17 / 24 - 1 - 1)  # -7/12
    assert metrics.hungarian_iou(s, y).item() == pytest.approx((0.5 + 2 / 3) / 2)
    assert metrics.diversity(s).item() == pytest.approx(1.0)
    assert metrics.iou(s[0, 0], y[0, 0]).item() == pytest.approx(0.5)
    # merging the classes, as binary metrics did, gives another answer: d(s1, y2) = 1/3, d(s1, s2) = 0
    assert metrics.ged(s != 0, y != 0, unbiased=False).item() == pytest.approx(2 * (0.5 + 1 / 3) / 2 - 0 - (2 / 3) / 2)


def test_one_class_against_another_is_as_far_as_can_be():
    square = torch.zeros(3, 4, 8, 8, dtype=torch.long)
    square[..., 2:6, 2:6] = 1
    assert metrics.ged(square, 2 * square, unbiased=False).mean().item() == pytest.approx(2.0)  # binarised: 0.0
    assert metrics.ged(square, square, unbiased=False).mean().item() == pytest.approx(0.0)


def test_annotation_scores_in_total_and_per_class():
    s, y = multi_class_example()
    out = metrics.annotation_scores(s, y)
    assert out["ged_biased"] == pytest.approx(5 / 12) and out["ged_unbiased"] == pytest.approx(-7 / 12)
    assert out["hm_iou"] == pytest.approx(7 / 12) and out["annotator_diversity"] == pytest.approx(1.0)
    assert set(out["per_class"]) == {1, 2}
    # class 1 alone: s = ({0,1}, {}), y = ({0}, {}): d = 1/2, 1, 1, 0 (both empty); within-set d = 1
    assert out["per_class"][1]["ged_biased"] == pytest.approx(2 * 2.5 / 4 - 0.5 - 0.5)
    # class 2 alone: s = ({}, {0,1}), y = ({}, {0,1,2}): d = 0, 1, 1, 1/3
    assert out["per_class"][2]["ged_biased"] == pytest.approx(2 * (1 + 1 + 1 / 3) / 4 - 0.5 - 0.5)
    assert "per_class" not in metrics.annotation_scores(s != 0, y != 0)
    assert set(metrics.annotation_scores(s, y, num_classes=4)["per_class"]) == {1, 2, 3}
    with pytest.raises(ValueError, match="labels must be < num_classes = 2"):
        metrics.annotation_scores(s, y, num_classes=2)
    one = metrics.annotation_scores(s[:, :1], y)  # one sample: no unbiased GED, no diversity
    assert math.isnan(one["ged_unbiased"]) and math.isnan(one["diversity"]) and math.isfinite(one["ged_biased"])


def test_binary_only_metrics_refuse_several_classes():
    s, y = multi_class_example()
    objects = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="object_frequencies handles binary masks only.*labels up to 2.*masks == c"):
        truth.object_frequencies(s, objects)
    with pytest.raises(ValueError, match="summarize handles binary masks only"):
        summarize(s, y, objects, torch.full((1, 1), 0.5))
    with pytest.raises(ValueError, match="summarize handles binary masks only.*annotations"):
        summarize(s != 0, y, objects, torch.full((1, 1), 0.5))


@pytest.mark.parametrize("bad, message", [
    (torch.full((1, 2, 2, 2), 0.5), "class indices \\(whole numbers\\), got fractional values such as 0.5"),
    (-torch.ones(1, 2, 2, 2, dtype=torch.long), "class indices >= 0, got -1"),
])
def test_masks_must_hold_class_indices(bad, message):
    with pytest.raises(ValueError, match=message):
        metrics.ged(bad, torch.ones(1, 2, 2, 2))
    assert metrics.ged(torch.ones(1, 2, 2, 2, dtype=torch.float32), torch.ones(1, 2, 2, 2)).item() == 0.0
