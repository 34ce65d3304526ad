"""Round 5 diagnostic: are a model's per-image mode frequencies those of its image, or the population's?

    python benchmarks/sweeps/round5_check.py                     # the shipped probunet_toy model
    python benchmarks/sweeps/round5_check.py VARIANT F.pt         # a round5_variants.py model saved with --save (coordmix* or package*)

Prints, for 50 prior samples per test image: the calibration curve (mean sampled marking frequency
of objects per bin of true probability, 0.1-wide bins from 0.1 to 0.9), the correlation between
each image's sampled mode frequencies and its true mode probabilities, their spread over images
against the truth's, and, for mixture priors, the mean weights and the mean largest weight.
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from probunet import ToyAmbiguousDataset, metrics  # noqa: E402
from probunet.evaluate import sample_masks  # noqa: E402
from probunet.pretrained import load_pretrained  # noqa: E402

torch.set_num_threads(1)
test = ToyAmbiguousDataset("test")
if len(sys.argv) > 2:
    from round5_variants import VARIANTS, CoordAll, CoordMixture, with_coords
    model = CoordMixture() if sys.argv[1].startswith("package") else CoordAll(inner=VARIANTS[sys.argv[1]], latent_dim=6, components=4)
    model.load_state_dict(torch.load(sys.argv[2]))
    model.eval()
else:
    model = load_pretrained("probunet_toy", device="cpu")
torch.manual_seed(0)
samples = sample_masks(model, test.images, n=50)
curve = metrics.calibration_curve(metrics.object_frequencies(samples, test.objects), test.probs)
modes, p = test.all_modes()
assigned = metrics.assign_modes(samples, modes)
freq = torch.stack([(assigned == k).float().mean(1) for k in range(4)], 1).numpy()  # (500, 4)
print("calibration, true:     ", np.round(curve["mean_true"][1:9], 2))
print("calibration, sampled:  ", np.round(curve["mean_predicted"][1:9], 2))
print(f"per-image mode frequencies vs truth: correlation {np.corrcoef(freq.ravel(), p.ravel())[0, 1]:.3f}, "
      f"spread over images {freq.std(0).round(3)} (truth {p.std(0).round(3)})")
inner = getattr(model, "m", model)
if hasattr(inner, "mixture") or sys.argv[1:2] in (["package"], ["package_spread"]):
    x = with_coords(test.images)
    with torch.no_grad():
        w = (inner.mixture(x)[2] if hasattr(inner, "mixture") else inner.prior(x).log_weights).exp()
    print(f"mixture weights: mean {w.mean(0).numpy().round(3)}, mean largest {w.max(1).values.mean():.3f}")
