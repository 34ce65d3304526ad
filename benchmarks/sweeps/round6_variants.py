"""Round 6 of the recipe search: teach the decoder what prior samples should decode to, one run per call.

    python benchmarks/sweeps/round6_variants.py --tag X --variant nearest --seed 0 [--weight 1] [--raters stored]

The reference model, unchanged; only training adds a term. Each step sees every annotation of
each image (the 4 stored raters, or 4 fresh draws with --raters fresh). The ELBO is the usual
one on one of them, picked at random. Then z_p ~ p(z|x) (detached) is decoded and scored by
cross-entropy against the annotation whose posterior q(z|x, y_r) gives z_p the highest density:
the decoder learns to map the whole prior, not only the posterior's clusters, to whole masks
(round 5: specks are prior samples far from every cluster). Variants: stored (the ELBO term
alone, same data path; the control), nearest (ELBO + weight * that term, switched on linearly
over 1,000 steps from --start; with --anchor, from then on also anchor * KL(p || N(0, I)), with
--scale-anchor scale_anchor * (the batch's mean prior log-sigma)^2).
--raters picks the data; the shared command line's --annotation is not used (the JSON lines
record its default, "fresh"). Appends one JSON line per run to --out. Results: round6_cpu.md.
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from round4_variants import run_arguments, train_and_record
from probunet import ProbabilisticUNet, ToyAmbiguousDataset
from probunet.latent import DiagonalGaussian, kl_divergence, posterior_input
from probunet.train import seed_everything
torch.set_num_threads(1)


class AllRaters(Dataset):
    """(image (1, H, W), R annotations (R, H, W)): the stored raters, or R fresh draws (the dataset's own draw, R times)."""
    def __init__(self, fresh: bool, raters: int = 4):
        self.stored = ToyAmbiguousDataset("train")
        self.fresh = ToyAmbiguousDataset("train", annotation="fresh") if fresh else None
        self.raters = raters

    def __len__(self):
        return len(self.stored)

    def __getitem__(self, i):
        if self.fresh is None:
            return self.stored.images[i], self.stored.annotations[i]
        return self.stored.images[i], torch.stack([self.fresh[i][1] for _ in range(self.raters)])


class NearestTargets(ProbabilisticUNet):
    """The package's model; elbo takes y (B, R, H, W) and adds weight * CE(decode(z_p), y_nearest)."""
    def __init__(self, weight=1.0, start=0, ramp=1000, anchor=0.0, scale_anchor=0.0, **kw):
        super().__init__(**kw)
        self.weight, self.start, self.ramp, self.anchor, self.calls = weight, start, ramp, anchor, 0
        self.scale_anchor = scale_anchor

    def current_weight(self):
        """weight, reached linearly over `ramp` steps after `start` (training steps counted by elbo calls)."""
        return self.weight * min(max((self.calls - self.start) / self.ramp, 0.0), 1.0)

    def elbo(self, x, ys, beta=1.0, analytic_kl=True):
        b, r = ys.shape[:2]
        self.calls += 1
        weight = self.current_weight()
        pick = torch.randint(r, (b,))
        y = ys[torch.arange(b), pick].long()
        if weight == 0:
            return super().elbo(x, y, beta=beta)
        q, p = self.posterior(posterior_input(x, y, self.num_classes)), self.prior(x)
        z = q.rsample()
        feats = self.unet(x)
        with torch.no_grad():
            qs = self.posterior(posterior_input(x.repeat_interleave(r, 0), ys.flatten(0, 1).long(), self.num_classes))
            zp = p.rsample().detach()  # (B, D)
            dens = qs.log_prob(zp.repeat_interleave(r, 0)).view(b, r)
            target = ys[torch.arange(b), dens.argmax(1)].long()
        logits = self.fcomb(feats, torch.stack([z, zp], 1))  # (B, 2, K, H, W)
        recon = F.cross_entropy(logits[:, 0], y, reduction="sum") / b
        prior_ce = F.cross_entropy(logits[:, 1], target, reduction="sum") / b
        kl = kl_divergence(q, p).mean()
        total = recon + beta * kl + weight * prior_ce
        if self.anchor:  # hold the latent scale: KL(p || N(0, I)), which is not invariant to scaling z
            standard = DiagonalGaussian(torch.zeros_like(p.mu), torch.zeros_like(p.log_sigma))
            total = total + self.anchor * kl_divergence(p, standard).mean()
        if self.scale_anchor:  # hold only the overall scale: the batch's mean prior log-sigma towards 0
            total = total + self.scale_anchor * p.log_sigma.mean() ** 2
        return {"total": total, "recon": recon, "kl": kl, "prior_ce": prior_ce}

    loss = elbo


def main():
    ap = run_arguments(["stored", "nearest"], "round6_results.jsonl")
    ap.add_argument("--weight", type=float, default=1.0)
    ap.add_argument("--start", type=int, default=0, help="steps of plain ELBO before the term is switched on")
    ap.add_argument("--anchor", type=float, default=0.0, help="weight of KL(p || N(0, I))")
    ap.add_argument("--scale-anchor", type=float, default=0.0, help="weight of (mean prior log-sigma)^2")
    ap.add_argument("--raters", default="stored", choices=["stored", "fresh"])
    a = ap.parse_args()
    train = AllRaters(fresh=a.raters == "fresh")
    test = ToyAmbiguousDataset("test")
    seed_everything(a.seed)
    model = NearestTargets(weight=0.0 if a.variant == "stored" else a.weight, start=a.start, anchor=a.anchor, scale_anchor=a.scale_anchor, latent_dim=a.latent)
    train_and_record(model, train, test, a)


if __name__ == "__main__":
    main()
