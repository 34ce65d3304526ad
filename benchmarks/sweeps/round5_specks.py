"""Round 5 diagnostic: where in latent space do the shipped model's specks ("other" samples) come from?

    python benchmarks/sweeps/round5_specks.py

On the 500 test images, for 100 prior samples each: the density at z of the image's posterior
mixture sum_m P(m) q(z | x, mode m) in the latent dimensions in use (KL > 0.5 nats), the rank of
that density among the image's samples, and the largest posterior responsibility at z, for
"other" samples against the rest. Then how often 25 posterior samples per true mode decode to
"other". The distance figures of round5_cpu.md section 3 are computed in the experiments chapter.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from probunet import ToyAmbiguousDataset, metrics  # noqa: E402
from probunet.latent import DiagonalGaussian, kl_divergence  # noqa: E402
from probunet.pretrained import load_pretrained  # noqa: E402

torch.set_num_threads(2)
test = ToyAmbiguousDataset("test")
model = load_pretrained("probunet_toy", device="cpu")
modes, probs = test.all_modes()
mode_masks, log_p = torch.as_tensor(modes).long(), torch.as_tensor(probs, dtype=torch.float32).log()
with torch.no_grad():
    x, y = test.images.repeat_interleave(4, 0), test.annotations.flatten(0, 1)
    q, p = model.posterior_dist(x, y), model.prior_dist(x)
    per_dim = lambda g: DiagonalGaussian(g.mu[..., None], g.log_sigma[..., None])  # noqa: E731  (B, D, 1): one Gaussian per dim
    active = (kl_divergence(per_dim(q), per_dim(p)).mean(0) > 0.5).nonzero().flatten()
    torch.manual_seed(0)
    density, resp, masks, post_masks = [], [], [], []
    for i in range(0, 500, 50):
        xb = test.images[i:i + 50]
        z = model.prior_dist(xb).rsample(100)                                            # (50, 100, D)
        masks.append(model.decode(xb, z).argmax(2).to(torch.uint8))
        qm = model.posterior_dist(xb.repeat_interleave(4, 0), mode_masks[i:i + 50].flatten(0, 1))
        mu, ls = qm.mu.view(50, 4, -1)[..., active], qm.log_sigma.view(50, 4, -1)[..., active]
        joint = DiagonalGaussian(mu[:, None], ls[:, None]).log_prob(z[:, :, None][..., active]) + log_p[i:i + 50, None]
        density.append(torch.logsumexp(joint, -1))                                       # (50, 100)
        resp.append(joint.softmax(-1).max(-1).values)
        post_masks.append(model.decode(xb, qm.rsample(25).view(50, 100, -1)).argmax(2).to(torch.uint8))
density, resp = torch.cat(density), torch.cat(resp)
other = metrics.assign_modes(torch.cat(masks), modes) == 4
rank = density.argsort(1).argsort(1).float() / 99                                       # 0 = lowest density of the image
print(f"dimensions in use: {active.tolist()}; prior samples decoded as other: {other.float().mean():.3f}")
print(f"log density of the posterior mixture at z, median: other {density[other].median():.1f}, rest {density[~other].median():.1f}")
print(f"within-image density rank, mean: other {rank[other].mean():.2f}, rest {rank[~other].mean():.2f} (0.5 = no difference)")
print(f"largest posterior responsibility at z, median: other {resp[other].median():.2f}, rest {resp[~other].median():.2f}")
post_other = (metrics.assign_modes(torch.cat(post_masks), modes) == 4).view(500, 4, 25).float().mean(2)  # (500, 4)
print(f"posterior samples decoded as other, weighted by mode probability: {(post_other * log_p.exp()).sum(1).mean():.3f}")
