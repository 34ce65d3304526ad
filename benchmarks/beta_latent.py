"""Train Prob U-Nets that differ only in beta or the latent size, for the experiments chapter.

    python benchmarks/beta_latent.py --steps 1200 [--jobs 2]

Each variant: the benchmark's earlier recipe (fresh annotations, Adam 1e-3 cosine, batch 32, seed 0) for a
fixed number of steps, one CPU thread per job. Weights go to probunet/weights/variant_*.pt, so the
book can compare them without training; prints each variant's test scores (100 samples per image).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = [(0.3, 6), (1.0, 6), (3.0, 6), (10.0, 6), (1.0, 2)]  # (beta, latent_dim)


def variant_name(beta: float, latent_dim: int) -> str:
    return f"variant_beta{beta:g}_d{latent_dim}"


def train(beta: float, latent_dim: int, steps: int) -> dict:
    import torch

    from probunet import ProbabilisticUNet, ToyAmbiguousDataset
    from probunet.toy import evaluate
    from probunet.pretrained import WEIGHTS_DIR, save_weights
    from probunet.train import fit, seed_everything

    torch.set_num_threads(1)
    recipe = dict(batch_size=32, lr=1e-3, lr_schedule="cosine", beta=beta, seed=0)
    seed_everything(0)
    model = ProbabilisticUNet(latent_dim=latent_dim)
    t = time.perf_counter()
    history = fit(model, ToyAmbiguousDataset("train", annotation="fresh"), steps=steps, device="cpu",
                  progress=False, **recipe)
    seconds = time.perf_counter() - t
    scores = {k: round(v, 4) for k, v in evaluate(model, ToyAmbiguousDataset("test"), n=100).items()
              if isinstance(v, float)}
    info = {"recipe": dict(recipe, annotation="fresh", steps=steps), "device": "cpu", "torch": torch.__version__,
            "train_seconds": round(seconds, 1), "made_by": "benchmarks/beta_latent.py",
            "final_kl": round(sum(history["kl"][-100:]) / 100, 3), "test_scores": scores}
    save_weights(model, WEIGHTS_DIR / f"{variant_name(beta, latent_dim)}.pt", info)
    return {"name": variant_name(beta, latent_dim), **info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(train, b, d, args.steps) for b, d in VARIANTS]
        for f in futures:
            print(json.dumps(f.result()), flush=True)


if __name__ == "__main__":
    main()
