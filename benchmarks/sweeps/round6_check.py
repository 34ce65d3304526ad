"""Round 6 diagnostic: the scale of the latent space after training.

    python benchmarks/sweeps/round6_check.py [F.pt ...]    # the shipped probunet_toy model, then round6_variants.py models saved with --save

Prints, over the first 200 test images and their first stored annotation: the mean analytic
KL(q || p), the median prior and posterior sigma per latent dimension, and how much the
prior depends on the image: the standard deviation over images of the prior mean, divided by the
median prior sigma, per dimension. The log-sigmas are
clamped to LOG_SIGMA_RANGE, so a sigma of exp(4) = 54.6 is the clamp.
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from round6_variants import NearestTargets  # noqa: E402
from probunet import ToyAmbiguousDataset  # noqa: E402
from probunet.latent import kl_divergence  # noqa: E402
from probunet.pretrained import load_pretrained  # noqa: E402

torch.set_num_threads(1)
test = ToyAmbiguousDataset("test")
x, y = test.images[:200], test.annotations[:200, 0]


@torch.no_grad()
def report(name: str, model: torch.nn.Module) -> None:
    model.eval()
    q, p = model.posterior_dist(x, y), model.prior_dist(x)
    print(f"{name}: KL {kl_divergence(q, p).mean():.2f}, median sigma_p {np.round(p.sigma.median(0).values.numpy(), 2)}, "
          f"sigma_q {np.round(q.sigma.median(0).values.numpy(), 2)}, "
          f"image dependence of the prior {np.round((p.mu.std(0) / p.sigma.median(0).values).numpy(), 2)}")


report("shipped probunet_toy", load_pretrained("probunet_toy", device="cpu"))
for path in sys.argv[1:]:
    model = NearestTargets()
    model.load_state_dict(torch.load(path))
    report(Path(path).stem, model)
