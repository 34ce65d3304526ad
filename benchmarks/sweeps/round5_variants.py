"""Round 5 of the recipe search: mixture priors with coordinates, one run per call.

    python benchmarks/sweeps/round5_variants.py --tag X --variant coordmixm --seed 0 [--steps 20000] [--save F.pt]

Builds on round4_variants.py (coordinate channels for all three nets, ``CoordAll``). Variants:
base (the package's ProbabilisticUNet), coordmix (round 4: K image-dependent component means and
sigmas, weights a 1x1 conv), coordmixm (same, weights from a two-layer head), coordmixg (K *global*
component means and sigmas, only the weights depend on the image), package (coordmixm written as one
class, as it was tried as options of ProbabilisticUNet; other init order), package_spread (the same
with the component means started apart), fcomb3 (the package's model with 3x3 hidden convolutions in fcomb). Appends one JSON line per run to --out. Results: round5_cpu.md.
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from torch import nn
from round4_variants import CoordAll, MixturePrior, Variant, run_arguments, train_and_record, with_coords
from probunet import ProbabilisticUNet, ToyAmbiguousDataset
from probunet.latent import LOG_SIGMA_RANGE, DiagonalGaussian, GaussianEncoder, posterior_input
from probunet.model import Fcomb
from probunet.unet import Encoder, UNetBackbone, init_weights
from probunet.train import seed_everything
torch.set_num_threads(1)


def head(c, k, hidden=32):
    return nn.Sequential(nn.Conv2d(c, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, k, 1))


class MixtureMLP(MixturePrior):
    def __init__(self, components=4, **kw):
        super().__init__(components=components, **kw)
        self.weights = head(self.config["channels"][-1], components)
        init_weights(self.weights)


class GlobalMixture(Variant):
    """p(z|x) = sum_k w_k(x) N(z; m_k, s_k): global components, image-dependent weights."""
    def __init__(self, components=4, spread=2.0, **kw):
        super().__init__(**kw)
        c = self.config
        self.k = components
        self.prior = Encoder(c["in_channels"], c["channels"], c["convs_per_block"])
        self.weights = head(c["channels"][-1], components)
        init_weights(self.prior)
        init_weights(self.weights)
        self.means = nn.Parameter(spread * torch.randn(components, self.latent_dim))
        self.log_sigmas = nn.Parameter(torch.zeros(components, self.latent_dim))

    def mixture(self, x):
        h = self.prior(x)[-1].mean(dim=(2, 3), keepdim=True)
        b = x.shape[0]
        mu = self.means[None].expand(b, -1, -1)
        ls = self.log_sigmas.clamp(*LOG_SIGMA_RANGE)[None].expand(b, -1, -1)
        return mu, ls, torch.log_softmax(self.weights(h).flatten(1), 1)

    kl = MixturePrior.kl
    sample = MixturePrior.sample


class GaussianMixture:
    """Mixtures of K diagonal Gaussians: mu, log_sigma (B, K, D), log_weights (B, K)."""
    def __init__(self, mu, log_sigma, log_weights):
        self.mu, self.log_sigma, self.log_weights = mu, log_sigma, log_weights

    def rsample(self, n=None):
        b, k, d = self.mu.shape
        comp = torch.multinomial(self.log_weights.exp(), 1 if n is None else n, replacement=True)  # (B, n)
        idx = comp[..., None].expand(-1, -1, d)
        mu, sigma = self.mu.gather(1, idx), self.log_sigma.exp().gather(1, idx)
        z = mu + sigma * torch.randn_like(mu)
        return z[:, 0] if n is None else z

    def log_prob(self, z):
        per_component = DiagonalGaussian(self.mu, self.log_sigma).log_prob(z[:, None])  # (B, K)
        return torch.logsumexp(self.log_weights + per_component, dim=1)


class MixtureEncoder(nn.Module):
    """Encoder -> spatial mean -> K means and log-sigmas (one 1x1 conv), K log-weights (two 1x1 convs, hidden 32)."""
    def __init__(self, in_channels, channels, convs_per_block, latent_dim, components):
        super().__init__()
        self.encoder = Encoder(in_channels, channels, convs_per_block)
        self.to_params = nn.Conv2d(channels[-1], 2 * latent_dim * components, 1)
        self.to_weights = head(channels[-1], components)
        self.latent_dim, self.components = latent_dim, components

    def forward(self, x):
        h = self.encoder(x)[-1].mean(dim=(2, 3), keepdim=True)
        mu, log_sigma = self.to_params(h).flatten(1).chunk(2, dim=1)
        shape = (x.shape[0], self.components, self.latent_dim)
        return GaussianMixture(mu.view(shape), log_sigma.clamp(*LOG_SIGMA_RANGE).view(shape),
                               torch.log_softmax(self.to_weights(h).flatten(1), dim=1))


class CoordMixture(Variant):
    """Coordinates into all three nets and a MixtureEncoder prior, built in one place
    (what was tried as options of ProbabilisticUNet, `--variant package`, and not kept)."""
    def __init__(self, latent_dim=6, components=4, channels=(16, 32, 64), convs_per_block=2, fcomb_layers=3, fcomb_channels=32):
        nn.Module.__init__(self)
        self.in_channels, self.num_classes, self.levels, self.latent_dim = 1, 2, len(channels), latent_dim
        self.config = dict(latent_dim=latent_dim, components=components)
        self.unet = UNetBackbone(3, channels, convs_per_block)
        self.prior = MixtureEncoder(3, channels, convs_per_block, latent_dim, components)
        self.posterior = GaussianEncoder(3 + 2, channels, convs_per_block, latent_dim)
        self.fcomb = Fcomb(channels[0], latent_dim, 2, fcomb_channels, fcomb_layers)
        init_weights(self)

    def posterior_dist(self, x, y):
        return self.posterior(posterior_input(with_coords(x), y.long(), 2))

    def decode(self, x, z):
        return self.fcomb(self.unet(with_coords(x)), z)

    def kl(self, q, x, z):  # one-sample estimate log q(z) - log p(z)
        return q.log_prob(z) - self.prior(with_coords(x)).log_prob(z)

    @torch.no_grad()
    def sample(self, x, n=1):
        return self.decode(x, self.prior(with_coords(x)).rsample(n))


VARIANTS = {"coordmix": MixturePrior, "coordmixm": MixtureMLP, "coordmixg": GlobalMixture}


def main():
    ap = run_arguments(["base", "fcomb3", "package", "package_spread", *VARIANTS], "round5_results.jsonl")
    ap.add_argument("--components", type=int, default=4)
    a = ap.parse_args()
    train = ToyAmbiguousDataset("train", annotation=a.annotation)
    test = ToyAmbiguousDataset("test")
    seed_everything(a.seed)
    if a.variant == "base":
        model = ProbabilisticUNet(latent_dim=a.latent)
    elif a.variant == "fcomb3":  # fcomb's hidden convolutions 3x3 instead of 1x1: neighbouring pixels decide together
        model = ProbabilisticUNet(latent_dim=a.latent)
        for i, m in enumerate(model.fcomb.body):
            if isinstance(m, nn.Conv2d):
                model.fcomb.body[i] = nn.Conv2d(m.in_channels, m.out_channels, 3, padding=1)
        init_weights(model.fcomb)
    elif a.variant == "package":  # coordmixm rebuilt in one class, as tried in the package
        model = CoordMixture(latent_dim=a.latent, components=a.components)
    elif a.variant == "package_spread":  # the same, component means started apart: bias ~ N(0, 1)
        model = CoordMixture(latent_dim=a.latent, components=a.components)
        k_d = a.components * a.latent
        nn.init.normal_(model.prior.to_params.bias.data[:k_d], std=1.0)
    else:
        model = CoordAll(inner=VARIANTS[a.variant], latent_dim=a.latent, components=a.components)
    train_and_record(model, train, test, a)


if __name__ == "__main__":
    main()
