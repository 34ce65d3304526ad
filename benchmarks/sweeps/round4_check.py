"""Round 4 diagnostic: can the posterior say *which* object an annotation marks, and how does it code them?

    python benchmarks/sweeps/round4_check.py                       # the shipped probunet_toy model
    python benchmarks/sweeps/round4_check.py coordall|coordmix F.pt [D]   # a round4_variants.py model saved with --save

Prints, on the 500 test images: how often the mask decoded from the posterior mean of each true
mode is that mode (0 empty, 1 left object only, 2 right only, 3 both), the images where a single-object
mode fails and how far apart their two objects' probabilities are, the median cosine between
mu_q(left only) - mu_q(empty) and mu_q(right only) - mu_q(empty), and how far 100 prior samples
per image are from independent objects (P(both) - P(left) P(right); the truth is 0).
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from probunet import ToyAmbiguousDataset  # noqa: E402
from probunet.evaluate import reconstruct_masks, sample_masks  # noqa: E402
from probunet.metrics import assign_modes, mode_frequencies  # noqa: E402
from probunet.pretrained import load_pretrained  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(0)
if len(sys.argv) > 1:
    from round4_variants import CoordAll, MixturePrior, ProbabilisticUNet, with_coords
    inner = {"coordall": ProbabilisticUNet, "coordmix": MixturePrior}[sys.argv[1]]
    wrapper = CoordAll(inner=inner, latent_dim=int(sys.argv[3]) if len(sys.argv) > 3 else 6)
    wrapper.load_state_dict(torch.load(sys.argv[2]))
    model, add = wrapper.m.eval(), with_coords
else:
    model, add = load_pretrained("probunet_toy", device="cpu"), lambda x: x
test = ToyAmbiguousDataset("test")
modes, probs = (torch.as_tensor(a) for a in test.all_modes())
x, p = add(test.images), np.asarray(test.probs)
decoded_as = assign_modes(reconstruct_masks(model, x, modes), modes).numpy()  # (500, 4): the posterior mean of each mode, decoded
failed = (decoded_as[:, 1:3] != [1, 2]).any(1)
with torch.no_grad():
    posts = [model.posterior_dist(x, modes[:, k].long()) for k in range(4)]
    for k in range(4):
        got = decoded_as[:, k]
        print(f"mode {k}: posterior mean decodes to it in {(got == k).mean():.3f} of images; otherwise to {np.bincount(got[got != k], minlength=5).tolist()} (last: other)")
    gap = np.abs(p[:, 0] - p[:, 1])
    print(f"single-object failures: {failed.sum()} images; median |p_left - p_right| there {np.median(gap[failed]) if failed.any() else float('nan'):.3f}, elsewhere {np.median(gap[~failed]):.3f}")
    d_left, d_right = posts[1].mu - posts[0].mu, posts[2].mu - posts[0].mu
    print(f"cos median {torch.nn.functional.cosine_similarity(d_left, d_right, dim=1).median():.2f}; "
          f"posterior sigma median {torch.stack([q.sigma for q in posts]).median():.2f}")
    f = mode_frequencies(sample_masks(model, x, 100), modes).numpy()
left, right = f[:, 1] + f[:, 3], f[:, 2] + f[:, 3]
print(f"prior samples: mean P(both) - P(left) P(right) = {(f[:, 3] - left * right).mean():.3f}; other {f[:, 4].mean():.3f}")
print("pooled frequencies (empty, left, right, both, other):", f.mean(0).round(3).tolist(), "true:", probs.numpy().mean(0).round(3).tolist())
