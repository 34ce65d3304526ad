"""Checks for the chapters' build-it-yourself exercises.

Each ``check_*`` calls the reader's function on random inputs (from a fixed
generator, so every run checks the same cases), compares it with the
package's own code, prints one line, "pass" or "fail" with the first case
that differs, and returns whether it passed. A function that raises
``NotImplementedError`` (the exercise's stub) propagates it, so the chapter
can fall back to its solution.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..latent import DiagonalGaussian, kl_divergence
from ..metrics import ged
from ..model import Fcomb, ProbabilisticUNet
from ..unet import merge_skip

CASES = 20


def _report(name: str, bad: str | None) -> bool:
    print(f"fail: {name}: {bad}" if bad else
          f"pass: {name} agrees with probunet on {CASES} random cases")
    return bad is None


def _differs(mine, theirs, case: int, atol: float = 1e-5) -> str | None:
    if not isinstance(mine, torch.Tensor):
        return f"case {case}: returned {type(mine).__name__}, not a tensor"
    if mine.shape != theirs.shape:
        return (f"case {case}: shape {tuple(mine.shape)}, expected "
                f"{tuple(theirs.shape)}")
    if not torch.allclose(mine.double(), theirs.double(), atol=atol,
                          rtol=1e-4):
        gap = (mine.double() - theirs.double()).abs().max().item()
        return f"case {case}: values differ by up to {gap:.3g}"
    return None


def check_kl(fn: Callable) -> bool:
    """``fn(mu_q, log_sigma_q, mu_p, log_sigma_p)``, each (B, D) -> the KL
    of the two diagonal Gaussians, summed over D: (B,)."""
    g = torch.Generator().manual_seed(0)
    for case in range(CASES):
        b, d = 1 + case % 4, 1 + case % 6
        mq, lq, mp, lp = (torch.randn(b, d, generator=g) for _ in range(4))
        theirs = kl_divergence(DiagonalGaussian(mq, lq),
                               DiagonalGaussian(mp, lp))
        bad = _differs(fn(mq, lq, mp, lp), theirs, case)
        if bad:
            return _report("kl", bad)
    return _report("kl", None)


def check_rsample(fn: Callable) -> bool:
    """``fn(mu, log_sigma, eps)``, each (B, D) -> z (B, D), a sample of the
    Gaussian through which gradients reach mu and log_sigma."""
    g = torch.Generator().manual_seed(1)
    for case in range(CASES):
        mu, log_sigma = (torch.randn(3, 1 + case % 6, generator=g)
                         .requires_grad_() for _ in range(2))
        eps = torch.randn(mu.shape, generator=g)
        z = fn(mu, log_sigma, eps)
        theirs = mu + log_sigma.exp() * eps
        bad = _differs(z, theirs.detach(), case)
        if bad is None and not z.requires_grad:
            bad = f"case {case}: no gradient reaches mu and log_sigma"
        if bad is None:
            d_mu, d_ls = torch.autograd.grad(z.sum(), (mu, log_sigma))
            want = torch.autograd.grad(theirs.sum(), (mu, log_sigma))
            bad = (_differs(d_mu, want[0], case)
                   or _differs(d_ls, want[1], case))
            bad = bad and f"{bad} (the gradients)"
        if bad:
            return _report("rsample", bad)
    return _report("rsample", None)


def check_merge_skip(fn: Callable) -> bool:
    """``fn(x, skip)``: deeper features (B, C1, h, w) and the skip's
    (B, C2, H, W) -> (B, C1 + C2, H, W), as :func:`probunet.unet.merge_skip`.
    """
    g = torch.Generator().manual_seed(2)
    for case in range(CASES):
        h, w = 2 + case % 5, 3 + case % 4
        big = (2 * h + case % 2, 2 * w + (case + 1) % 2)  # odd sizes too
        x = torch.randn(2, 3 + case % 3, h, w, generator=g)
        skip = torch.randn(2, 2 + case % 2, *big, generator=g)
        bad = _differs(fn(x, skip), merge_skip(x, skip), case)
        if bad:
            return _report("merge_skip", bad)
    return _report("merge_skip", None)


def check_broadcast_z(fn: Callable) -> bool:
    """``fn(features, z)``: features (B, F, H, W) and z (B, D) -> (B, F + D,
    H, W), z repeated at every pixel after the features: fcomb's first 1x1
    convolution on it must give the package's :class:`Fcomb` logits."""
    g = torch.Generator().manual_seed(3)
    for case in range(CASES):
        f, d, k = 4 + case % 3, 1 + case % 6, 2 + case % 2
        torch.manual_seed(case)
        fcomb = Fcomb(f, d, k)
        feats = torch.randn(2, f, 5, 3 + case % 4, generator=g)
        z = torch.randn(2, d, generator=g)
        with torch.no_grad():
            cat = fn(feats, z)
            if not isinstance(cat, torch.Tensor) or cat.shape[1] != f + d:
                return _report("broadcast_z", f"case {case}: expected "
                               f"{f + d} channels, got "
                               f"{getattr(cat, 'shape', type(cat))}")
            mine = fcomb.logits(fcomb.body(cat))
            bad = _differs(mine, fcomb(feats, z), case, atol=1e-4)
        if bad:
            return _report("broadcast_z", bad)
    return _report("broadcast_z", None)


def check_negative_elbo(fn: Callable) -> bool:
    """``fn(model, x, y, beta)`` -> the training loss of a Prob U-Net for one
    batch: the cross-entropy of the mask decoded from one z ~ q(z | x, y),
    summed over pixels, plus beta times KL(q || p), each averaged over the
    batch. Compared with ``model.elbo(...)["total"]`` under the same seed."""
    g = torch.Generator().manual_seed(4)
    for case in range(CASES):
        torch.manual_seed(case)
        model = ProbabilisticUNet(channels=(4, 8), latent_dim=1 + case % 6)
        x = torch.rand(2 + case % 2, 1, 8, 8, generator=g)
        y = (torch.rand(x.shape[0], 8, 8, generator=g) > 0.5).long()
        beta = [1.0, 0.3, 3.0, 10.0][case % 4]
        torch.manual_seed(100 + case)
        mine = fn(model, x, y, beta)
        torch.manual_seed(100 + case)
        theirs = model.elbo(x, y, beta)["total"]
        bad = _differs(torch.as_tensor(mine).detach(), theirs.detach(),
                       case, atol=1e-3)
        if bad:
            return _report("negative_elbo", bad)
    return _report("negative_elbo", None)


def check_ged_unbiased(fn: Callable) -> bool:
    """``fn(samples, annotations)``: one image's 0/1 masks (S, H, W) and
    (R, H, W), S, R >= 2 -> its unbiased GED (a number), d = 1 - IoU and
    d = 0 between two empty masks."""
    g = torch.Generator().manual_seed(5)
    for case in range(CASES):
        s, r = 2 + case % 4, 2 + case % 3
        masks = (torch.rand(s + r, 6, 6, generator=g) > 0.6).to(torch.uint8)
        masks[torch.rand(s + r, generator=g) < 0.3] = 0  # empty masks too
        samples, annotations = masks[:s], masks[s:]
        theirs = ged(samples[None], annotations[None], unbiased=True)[0]
        mine = torch.as_tensor(fn(samples, annotations), dtype=torch.float64)
        bad = _differs(mine.reshape(()), theirs, case)
        if bad:
            return _report("ged_unbiased", bad)
    return _report("ged_unbiased", None)


__all__ = ["check_broadcast_z", "check_ged_unbiased", "check_kl",
           "check_merge_skip", "check_negative_elbo", "check_rsample"]
