"""Train the default Prob U-Net and the deterministic U-Net for M minutes each on the CPU and score them.

    python benchmarks/toy.py --minutes 5 --json results.json

Each model trains with the default recipe (RECIPE below) for at most M minutes of wall time,
then draws 100 prior samples per test image; the scores are those of probunet.toy.summarize
against the toy data's known truth. Prints a table and writes a JSON list, one object per model.
With --export-weights the trained models are written to probunet/weights/ (the book loads them).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from probunet import ProbabilisticUNet, ToyAmbiguousDataset, UNet  # noqa: E402
from probunet.toy import evaluate  # noqa: E402
from probunet.pretrained import WEIGHTS_DIR, save_weights  # noqa: E402
from probunet.train import fit, seed_everything  # noqa: E402

RECIPE = dict(batch_size=8, lr=1e-3, lr_schedule="cosine", beta=1.0)  # batch 8: 4x the updates of batch 32 at the same images/s on a CPU
ANNOTATION = "fresh"  # each step draws a new annotation from the true law
COLUMNS = ["train_seconds", "steps", "images_per_second", "ged_unbiased", "ged_biased", "ged_exact", "mode_tv",
           "mode_tv_per_image", "other_fraction", "calibration_error", "hm_iou", "diversity", "true_diversity"]


def steps_per_second(make_model, train: ToyAmbiguousDataset, probe_steps: int = 100) -> float:
    """Time some steps of a throwaway model, so the schedule can span the time budget."""
    model = make_model()
    fit(model, train, steps=30, progress=False, device="cpu", **RECIPE)  # warm-up: the first steps are slow
    t = time.perf_counter()
    fit(model, train, steps=probe_steps, progress=False, device="cpu", **RECIPE)
    return probe_steps / (time.perf_counter() - t)


def run(name: str, make_model, minutes: float, samples: int, seed: int, checkpoint: Path | None = None,
        export: Path | None = None) -> dict:
    train, test = ToyAmbiguousDataset("train", annotation=ANNOTATION), ToyAmbiguousDataset("test")
    steps = max(1, int(steps_per_second(make_model, train) * minutes * 60 * 0.93))  # margin: the cosine ends in time
    seed_everything(seed)
    model = make_model()
    t = time.perf_counter()
    history = fit(model, train, steps=steps, seed=seed, device="cpu", max_seconds=minutes * 60,
                  checkpoint=checkpoint, checkpoint_every=10**9, **RECIPE)
    train_seconds = time.perf_counter() - t
    done = len(history["step"])
    scores = evaluate(model, test, n=samples)
    if export is not None:
        save_weights(model, export, info=weights_info(done, train_seconds, scores))
    return {"model": name, "train_seconds": round(train_seconds, 1), "steps": done, "planned_steps": steps,
            "images_per_second": round(done * RECIPE["batch_size"] / train_seconds, 1),
            **{k: round(v, 4) for k, v in scores.items() if isinstance(v, float)},
            "mode_freq_pred": [round(f, 4) for f in scores["mode_freq_pred"]],
            "mode_freq_true": [round(f, 4) for f in scores["mode_freq_true"]],
            "recipe": dict(RECIPE, annotation=ANNOTATION, samples=samples, seed=seed),
            "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"}


def weights_info(steps: int, train_seconds: float, scores: dict) -> dict:
    """How a shipped model was made, stored beside its weights."""
    return {"recipe": dict(RECIPE, annotation=ANNOTATION, steps=steps), "device": "cpu", "torch": torch.__version__,
            "train_seconds": round(train_seconds, 1), "made_by": "benchmarks/toy.py --export-weights",
            "test_scores": {k: round(v, 4) for k, v in scores.items() if isinstance(v, float)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="training wall time per model")
    parser.add_argument("--samples", type=int, default=100, help="prior samples per test image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--checkpoints", type=Path, help="save each trained model in this folder")
    parser.add_argument("--export-weights", action="store_true", help=f"write the models to {WEIGHTS_DIR}")
    args = parser.parse_args()
    models = {"ProbabilisticUNet": ProbabilisticUNet, "UNet": UNet}
    weights = {"ProbabilisticUNet": "probunet_toy", "UNet": "unet_toy"}
    results = [run(name, make, args.minutes, args.samples, args.seed,
                   args.checkpoints / f"{name}.pt" if args.checkpoints else None,
                   WEIGHTS_DIR / f"{weights[name]}.pt" if args.export_weights else None)
               for name, make in models.items()]
    print(f"\n{'':>18}" + "".join(f"{name:>20}" for name in models))
    for column in COLUMNS:
        print(f"{column:>18}" + "".join(f"{r[column]:>20}" for r in results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
