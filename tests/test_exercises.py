"""The checks of the build-it-yourself exercises pass a right answer and catch wrong ones."""

import pytest
import torch
import torch.nn.functional as F

from probunet.book import exercises
from probunet.latent import kl_divergence
from probunet.metrics import pairwise_iou


def kl_right(mq, lq, mp, lp):
    return (lp - lq + ((lq.exp() ** 2 + (mq - mp) ** 2) / (2 * (lp.exp() ** 2))) - 0.5).sum(-1)


def kl_no_half(mq, lq, mp, lp):
    return (lp - lq + (lq.exp() ** 2 + (mq - mp) ** 2) / lp.exp() ** 2 - 1).sum(-1)


def kl_swapped(mq, lq, mp, lp):
    return kl_right(mp, lp, mq, lq)


def kl_mean_over_d(mq, lq, mp, lp):
    return kl_right(mq, lq, mp, lp) / mq.shape[1]


def rsample_right(mu, log_sigma, eps):
    return mu + log_sigma.exp() * eps


def rsample_sigma_is_log(mu, log_sigma, eps):
    return mu + log_sigma * eps


def rsample_detached(mu, log_sigma, eps):
    return (mu + log_sigma.exp() * eps).detach()


def rsample_fresh_noise(mu, log_sigma, eps):
    return mu + log_sigma.exp() * torch.randn_like(eps)


def merge_right(x, skip):
    return torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1)


def merge_skip_first(x, skip):
    return torch.cat([skip, F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)], 1)


def merge_nearest(x, skip):
    return torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], 1)


def broadcast_right(features, z):
    return torch.cat([features, z[:, :, None, None].expand(-1, -1, *features.shape[-2:])], 1)


def broadcast_z_first(features, z):
    return torch.cat([z[:, :, None, None].expand(-1, -1, *features.shape[-2:]), features], 1)


def broadcast_one_pixel(features, z):
    tiled = torch.zeros(z.shape[0], z.shape[1], *features.shape[-2:])
    tiled[:, :, 0, 0] = z
    return torch.cat([features, tiled], 1)


def elbo_right(model, x, y, beta):
    q, p = model.posterior_dist(x, y), model.prior_dist(x)
    logits = model.decode(x, q.rsample())
    recon = F.cross_entropy(logits, y, reduction="sum") / x.shape[0]
    return recon + beta * kl_divergence(q, p).mean()


def elbo_mean_over_pixels(model, x, y, beta):
    q, p = model.posterior_dist(x, y), model.prior_dist(x)
    return F.cross_entropy(model.decode(x, q.rsample()), y) + beta * kl_divergence(q, p).mean()


def elbo_prior_sample(model, x, y, beta):
    q, p = model.posterior_dist(x, y), model.prior_dist(x)
    logits = model.decode(x, p.rsample())
    return F.cross_entropy(logits, y, reduction="sum") / x.shape[0] + beta * kl_divergence(q, p).mean()


def elbo_kl_reversed(model, x, y, beta):
    q, p = model.posterior_dist(x, y), model.prior_dist(x)
    logits = model.decode(x, q.rsample())
    return F.cross_entropy(logits, y, reduction="sum") / x.shape[0] + beta * kl_divergence(p, q).mean()


def _d(a, b):
    return 1 - pairwise_iou(a[None], b[None])[0]


def ged_right(samples, annotations):
    s, r = len(samples), len(annotations)
    d_ss, d_yy = _d(samples, samples), _d(annotations, annotations)
    return (2 * _d(samples, annotations).mean() - d_ss.sum() / (s * (s - 1))
            - d_yy.sum() / (r * (r - 1)))


def ged_biased(samples, annotations):
    return 2 * _d(samples, annotations).mean() - _d(samples, samples).mean() - _d(annotations, annotations).mean()


def ged_empty_is_far(samples, annotations):
    def d(a, b):
        inter = (a[:, None].bool() & b[None].bool()).flatten(2).sum(-1)
        union = (a[:, None].bool() | b[None].bool()).flatten(2).sum(-1)
        return 1 - inter / union.clamp(min=1)  # two empty masks: distance 1
    s, r = len(samples), len(annotations)
    return (2 * d(samples, annotations).mean() - d(samples, samples).sum() / (s * (s - 1))
            - d(annotations, annotations).sum() / (r * (r - 1)))


CASES = [
    (exercises.check_kl, kl_right, [kl_no_half, kl_swapped, kl_mean_over_d]),
    (exercises.check_rsample, rsample_right, [rsample_sigma_is_log, rsample_detached, rsample_fresh_noise]),
    (exercises.check_merge_skip, merge_right, [merge_skip_first, merge_nearest]),
    (exercises.check_broadcast_z, broadcast_right, [broadcast_z_first, broadcast_one_pixel]),
    (exercises.check_negative_elbo, elbo_right, [elbo_mean_over_pixels, elbo_prior_sample, elbo_kl_reversed]),
    (exercises.check_ged_unbiased, ged_right, [ged_biased, ged_empty_is_far]),
]


@pytest.mark.parametrize("check, right, wrongs", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_a_check_passes_the_right_answer_and_fails_each_wrong_one(check, right, wrongs, capsys):
    assert check(right) is True
    assert capsys.readouterr().out.startswith("pass: ")
    for wrong in wrongs:
        assert check(wrong) is False, wrong.__name__
        assert capsys.readouterr().out.startswith("fail: "), wrong.__name__


@pytest.mark.parametrize("check", [c for c, _, _ in CASES], ids=lambda c: c.__name__)
def test_an_unwritten_stub_is_not_a_failure_but_a_signal(check):
    def stub(*args):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        check(stub)
