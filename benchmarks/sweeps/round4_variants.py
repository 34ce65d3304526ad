"""Round 4 of the recipe search: model variants not in the package, one run per call.

    python benchmarks/sweeps/round4_variants.py --tag coordall_s0 --variant coordall --seed 0 [--latent 2] [--save F.pt]

Trains for --steps steps on one CPU thread (fit, cosine, fresh annotations by default), scores
--samples prior samples per test image and appends one JSON line to --out. Variants:
base (the package's ProbabilisticUNet), deepz / deepz_all (z also concatenated at the decoder's
first level / every level), coordq (pixel coordinates into the posterior net), coordall
(coordinates appended to the image for all three nets), mixprior (the prior a mixture of 4 diagonal Gaussians),
coordmix (both). Results: round4_cpu.md.
"""
import argparse, json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import torch
import torch.nn.functional as F
from torch import nn
torch.set_num_threads(1)
from probunet import ProbabilisticUNet, ToyAmbiguousDataset
from probunet.toy import evaluate
from probunet.latent import GaussianEncoder, DiagonalGaussian, kl_divergence, posterior_input
from probunet.unet import conv_block, init_weights
from probunet.train import fit, seed_everything


class Variant(ProbabilisticUNet):
    """The package's model with its ELBO written once through posterior_dist, decode and a kl hook,
    so each variant below overrides only the part it changes."""

    def kl(self, q, x, z):
        return kl_divergence(q, self.prior(x))

    def elbo(self, x, y, beta=1.0, analytic_kl=True):
        y = y.long()
        q = self.posterior_dist(x, y)
        z = q.rsample()
        recon = F.cross_entropy(self.decode(x, z), y, reduction="sum") / x.shape[0]
        kl = self.kl(q, x, z).mean()
        return {"total": recon + beta * kl, "recon": recon, "kl": kl}


class ZBackbone(nn.Module):
    """U-Net backbone that also concatenates tiled z to the bottleneck (and optionally every decoder level)."""

    def __init__(self, backbone, latent_dim, every_level=False):
        super().__init__()
        self.encoder = backbone.encoder
        chans = [b[0].in_channels for b in backbone.decoder]
        self.every_level = every_level
        outs = [b[-2].out_channels for b in backbone.decoder]
        convs = sum(isinstance(m, nn.Conv2d) for m in backbone.decoder[0])
        dec = []
        for i, (c, o) in enumerate(zip(chans, outs)):
            extra = latent_dim if (i == 0 or every_level) else 0
            dec.append(conv_block(c + extra, o, convs))
        self.decoder = nn.ModuleList(dec)

    def forward(self, x, z):
        *skips, h = self.encoder(x)
        for i, (block, skip) in enumerate(zip(self.decoder, reversed(skips))):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            parts = [h, skip]
            if i == 0 or self.every_level:
                parts.append(z[:, :, None, None].expand(-1, -1, *skip.shape[-2:]))
            h = block(torch.cat(parts, 1))
        return h


class DeepZ(Variant):
    def __init__(self, every_level=False, **kw):
        super().__init__(**kw)
        self.unet = ZBackbone(self.unet, self.latent_dim, every_level)
        init_weights(self.unet.decoder)

    def decode(self, x, z):
        if z.dim() == 3:
            b, n, d = z.shape
            xx = x.repeat_interleave(n, 0)
            zz = z.flatten(0, 1)
            return self.fcomb(self.unet(xx, zz), zz).unflatten(0, (b, n))
        return self.fcomb(self.unet(x, z), z)



def coords(x):
    b, _, h, w = x.shape
    yy = torch.linspace(-1, 1, h, device=x.device)[:, None].expand(h, w)
    xx = torch.linspace(-1, 1, w, device=x.device)[None, :].expand(h, w)
    return torch.stack([yy, xx])[None].expand(b, -1, -1, -1)


def with_coords(x):
    """Images (B, C, H, W) -> (B, C + 2, H, W): the row and column channels appended."""
    return torch.cat([x, coords(x)], 1)



class CoordQ(Variant):
    """Coordinate channels into the posterior net only."""
    def __init__(self, **kw):
        super().__init__(**kw)
        c = self.config
        self.posterior = GaussianEncoder(c["in_channels"] + c["num_classes"] + 2, c["channels"], c["convs_per_block"], self.latent_dim)
        init_weights(self.posterior)

    def posterior_dist(self, x, y):
        inp = posterior_input(x, y.long(), self.num_classes)
        return self.posterior(torch.cat([inp, coords(x)], 1))



class CoordAll(nn.Module):
    """Coordinate channels appended to the image for all three nets."""
    def __init__(self, inner=ProbabilisticUNet, **kw):
        super().__init__()
        self.m = inner(in_channels=3, **kw)
        self.latent_dim = self.m.latent_dim

    def elbo(self, x, y, beta=1.0, analytic_kl=True):
        return self.m.elbo(with_coords(x), y, beta=beta)

    loss = elbo

    def sample(self, x, n=1):
        return self.m.sample(with_coords(x), n)


class MixturePrior(Variant):
    """The prior p(z|x) a mixture of K diagonal Gaussians; KL(q || p) by the one-sample estimate log q(z) - log p(z)."""
    def __init__(self, components=4, **kw):
        super().__init__(**kw)
        c = self.config
        self.k = components
        self.prior = GaussianEncoder(c["in_channels"], c["channels"], c["convs_per_block"], self.latent_dim * components)
        self.weights = nn.Conv2d(c["channels"][-1], components, 1)
        init_weights(self.prior)
        init_weights(self.weights)

    def mixture(self, x):
        h = self.prior.encoder(x)[-1].mean(dim=(2, 3), keepdim=True)
        mu, log_sigma = self.prior.to_params(h).flatten(1).chunk(2, dim=1)
        b = x.shape[0]
        return (mu.view(b, self.k, -1), log_sigma.clamp(-10, 10).view(b, self.k, -1),
                torch.log_softmax(self.weights(h).flatten(1), 1))

    def kl(self, q, x, z):  # one-sample estimate log q(z) - log p(z): (B,)
        mu, ls, lw = self.mixture(x)
        return q.log_prob(z) - torch.logsumexp(lw + DiagonalGaussian(mu, ls).log_prob(z[:, None]), 1)


    @torch.no_grad()
    def sample(self, x, n=1):
        mu, ls, lw = self.mixture(x)
        k = torch.distributions.Categorical(logits=lw).sample((n,)).T  # (B, n)
        idx = k[..., None].expand(-1, -1, self.latent_dim)
        z = mu.gather(1, idx) + ls.exp().gather(1, idx) * torch.randn_like(mu.gather(1, idx))
        return self.decode(x, z)


def train_and_record(model, train, test, a):
    """Train with the run's arguments a, score a.samples prior samples per test image, append a JSON line to a.out."""
    t = time.perf_counter()
    fit(model, train, steps=a.steps, batch_size=a.batch, lr=a.lr, lr_schedule="cosine", beta=a.beta,
        seed=a.seed, device="cpu", progress=False)
    secs = time.perf_counter() - t
    s = evaluate(model, test, n=a.samples)
    if a.save:
        torch.save(model.state_dict(), a.save)
    row = {"tag": a.tag, **vars(a), "train_seconds": round(secs, 1),
           **{k: round(v, 4) for k, v in s.items() if isinstance(v, float)},
           "freq_pred": [round(f, 4) for f in s["mode_freq_pred"]], "freq_true": [round(f, 4) for f in s["mode_freq_true"]]}
    print(json.dumps(row))
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")


def run_arguments(variants, out):
    """The command line shared by the rounds' variant scripts: one run, its recipe, where to record it."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", required=True)
    ap.add_argument("--variant", default="base", choices=variants)
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latent", type=int, default=6)
    ap.add_argument("--annotation", default="fresh")
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--save", default=None)
    ap.add_argument("--out", default=out)
    return ap


def main():
    a = run_arguments(["base", "deepz", "deepz_all", "coordq", "coordall", "mixprior", "coordmix"], "round4_results.jsonl").parse_args()
    train = ToyAmbiguousDataset("train", annotation=a.annotation)
    test = ToyAmbiguousDataset("test")
    seed_everything(a.seed)
    kw = dict(latent_dim=a.latent)
    model = {"base": lambda: ProbabilisticUNet(**kw), "deepz": lambda: DeepZ(**kw),
             "deepz_all": lambda: DeepZ(every_level=True, **kw),
             "coordq": lambda: CoordQ(**kw), "coordall": lambda: CoordAll(**kw), "mixprior": lambda: MixturePrior(**kw),
             "coordmix": lambda: CoordAll(inner=MixturePrior, **kw)}[a.variant]()
    train_and_record(model, train, test, a)


if __name__ == "__main__":
    main()
