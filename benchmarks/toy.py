"""Train each model configuration for a fixed number of steps, over several seeds, and score it against the toy truth.

    python benchmarks/toy.py --steps 10000 --seeds 0 1 2 --json probunet/book/weights/toy_benchmark.json

A step budget, not a time budget: the same run takes 2.8x longer on some CPUs than on
others, and a time budget would make the scores depend on the CPU. Each run trains with
probunet.toy.RECIPE (batch 8, Adam 1e-3 with a cosine schedule, beta 1, a fresh annotation drawn from
the true law at every step; ``stored_raters`` instead picks one of the 4 stored rater masks,
like a real data set), then draws 100 prior samples per test image; the scores are those of
``probunet.toy.summarize``. Wall time and images/s are reported beside them. On the first
TRAIN_IMAGES training images the run also measures how far its samples' mode frequencies are
from the true law (``train_tv_truth``) and from the 4 stored raters' own frequencies
(``train_tv_raters``): a model that learned the raters rather than the law is closer to them.
"truth" is no model: 100 masks per image drawn from the true law, the floor of every score.

Runs go ``--parallel`` at a time in separate processes, ``--threads`` CPU threads each
(on 2 cores, two one-thread runs finish sooner than one two-thread run after another).
The JSON holds a row per (configuration, seed) and a summary row per configuration
(mean and sd over seeds). ``--export NAME...`` writes the first seed's model of those
configurations to probunet/weights/ (the book loads them). ``--merge`` keeps the rows of
the ``--json`` file that this call does not rerun, so one configuration can be added alone.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from probunet import ProbabilisticUNet, UNet, save_checkpoint  # noqa: E402
from probunet.book import WEIGHTS_DIR  # noqa: E402
from probunet.evaluate import sample_masks  # noqa: E402
from probunet.toy import RECIPE, ToyAmbiguousDataset, evaluate, law_and_raters_tv, sample_truth, summarize  # noqa: E402
from probunet.train import fit, seed_everything  # noqa: E402

ANNOTATION = "fresh"  # each step draws a new annotation from the true law
ANNOTATIONS = {"stored_raters": "stored"}  # configurations that train on the 4 stored raters instead
TRAIN_IMAGES = 500  # training images on which the samples are compared with the law and with the raters
GECO_TARGET = 0.004  # cross-entropy per pixel; the reference reaches about 0.0027 from the posterior on the toy
CONFIGS: dict[str, tuple[type[torch.nn.Module], dict]] = {
    "reference": (ProbabilisticUNet, {}),
    "coordinates": (ProbabilisticUNet, dict(coordinates=True)),
    "mixture_prior": (ProbabilisticUNet, dict(prior_components=4)),
    "coordinates_mixture": (ProbabilisticUNet, dict(coordinates=True, prior_components=4)),
    "geco": (ProbabilisticUNet, dict(geco_target=GECO_TARGET)),
    "stored_raters": (ProbabilisticUNet, {}),
    "unet": (UNet, {}),
    # the experiments chapter's KL-weight and latent-size sweep (seed 0 only)
    "beta0.3": (ProbabilisticUNet, {}),
    "beta3": (ProbabilisticUNet, {}),
    "beta10": (ProbabilisticUNet, {}),
    "latent2": (ProbabilisticUNet, dict(latent_dim=2)),
}
BETAS = {"beta0.3": 0.3, "beta3": 3.0, "beta10": 10.0}  # configurations that change the recipe's beta
WEIGHT_NAMES = {"reference": "probunet_toy", "unet": "unet_toy"}  # others: probunet_toy_<config>
SCORES = ["ged_exact", "mode_tv_per_image", "other_fraction", "calibration_error", "hm_iou", "mode_tv",
          "ged_unbiased", "diversity"]
TRAIN_SCORES = ["train_tv_truth", "train_tv_raters"]
TIMES = ["train_seconds", "images_per_second"]


def weight_name(config: str) -> str:
    return WEIGHT_NAMES.get(config, f"probunet_toy_{config}")


def train_scores(samples: torch.Tensor, train: ToyAmbiguousDataset) -> dict[str, float]:
    """Mean per-image TV of the mode frequencies of samples (TRAIN_IMAGES, S, H, W) of the first training
    images to their true law and to their 4 stored raters' frequencies."""
    modes, probs = train.all_modes()
    tv = law_and_raters_tv(samples, train.annotations[:TRAIN_IMAGES], modes[:TRAIN_IMAGES], probs[:TRAIN_IMAGES])
    return {"train_tv_truth": tv["law"].mean().item(), "train_tv_raters": tv["raters"].mean().item()}


def run(config: str, seed: int, steps: int, samples: int, threads: int, export: bool) -> dict:
    """Train one configuration with one seed and score it: a row of the results."""
    torch.set_num_threads(threads)
    cls, kwargs = CONFIGS[config]
    annotation = ANNOTATIONS.get(config, ANNOTATION)
    train, test = ToyAmbiguousDataset("train", annotation=annotation), ToyAmbiguousDataset("test")
    seed_everything(seed)
    model = cls(**kwargs)
    t = time.perf_counter()
    recipe = dataclasses.replace(RECIPE, steps=steps, seed=seed, beta=BETAS.get(config, RECIPE.beta))
    history = fit(model, train, recipe, device="cpu", progress=False, log_every=100)
    train_seconds = time.perf_counter() - t
    seed_everything(seed)
    scores = evaluate(model, test, n=samples) | train_scores(sample_masks(model, train.images[:TRAIN_IMAGES], samples), train)
    row = {"config": config, "seed": seed, "steps": steps, "train_seconds": round(train_seconds, 1),
           "images_per_second": round(steps * RECIPE.batch_size / train_seconds, 1),
           **{k: round(v, 4) for k, v in scores.items() if isinstance(v, float)},
           "mode_freq_pred": [round(f, 4) for f in scores["mode_freq_pred"]],
           "final_kl": round(history["kl"][-1], 3) if "kl" in history else None}
    if export:
        info = {"recipe": recipe.to_dict(), "annotation": annotation, "device": "cpu",
                "torch": str(torch.__version__), "train_seconds": row["train_seconds"],
                "made_by": f"benchmarks/toy.py --export {config}", "test_scores": {k: row[k] for k in SCORES}}
        save_checkpoint(WEIGHTS_DIR / f"{weight_name(config)}.pt", model, info, half=True)  # float16: half the size
    return row


def truth_row(samples: int, seed: int) -> dict:
    """The floor: `samples` masks per test image drawn from the true law, scored like a model's."""
    test, train = ToyAmbiguousDataset("test"), ToyAmbiguousDataset("train")
    scores = summarize(sample_truth(test.objects, test.probs, samples, seed), test.annotations, test.objects, test.probs)
    law = sample_truth(train.objects[:TRAIN_IMAGES], train.probs[:TRAIN_IMAGES], samples, seed)
    scores |= train_scores(law, train)
    return {"config": "truth", "seed": seed, **{k: round(v, 4) for k, v in scores.items() if isinstance(v, float)}}


def summary(rows: list[dict]) -> list[dict]:
    """Mean and sd over seeds of every score and time, per configuration (in the order of first appearance)."""
    out = []
    for config in dict.fromkeys(r["config"] for r in rows):
        group = [r for r in rows if r["config"] == config]
        row = {"config": config, "summary": True, "seeds": [r["seed"] for r in group]}
        for k in SCORES + TRAIN_SCORES + TIMES:
            values = [r[k] for r in group if r.get(k) is not None]
            if values:
                row[k] = round(statistics.mean(values), 4)
                row[k + "_sd"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
        out.append(row)
    return out


def table(summaries: list[dict]) -> str:
    """A Markdown table: mean ± sd over seeds."""
    cols = SCORES + TRAIN_SCORES + TIMES
    lines = ["| configuration | seeds | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for s in summaries:
        cells = [f"{s[k]:.4g} ± {s[k + '_sd']:.2g}" if k in s else "" for k in cols]
        lines.append(f"| {s['config']} | {len(s['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10_000, help="training steps of batch 8 per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--samples", type=int, default=100, help="prior samples per test image")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    parser.add_argument("--export", nargs="*", default=[], choices=list(CONFIGS),
                        help=f"write the first seed's model of these configurations to {WEIGHTS_DIR}")
    parser.add_argument("--json", type=Path, help="write every row and the summaries here")
    parser.add_argument("--merge", action="store_true",
                        help="keep the --json file's rows of the configurations and seeds not rerun here")
    args = parser.parse_args()
    if args.steps < 1 or args.parallel < 1 or args.threads < 1:
        parser.error("--steps, --parallel and --threads must be >= 1")
    if args.merge and not (args.json and args.json.exists()):
        parser.error("--merge needs an existing --json file")
    jobs = [(c, s) for c in args.configs for s in args.seeds]
    kept = []
    if args.merge:
        old = json.loads(args.json.read_text())
        if old["steps"] != args.steps or old["samples"] != args.samples:
            parser.error(f"--merge: {args.json} has {old['steps']} steps and {old['samples']} samples")
        kept = [r for r in old["rows"] if r["config"] != "truth" and (r["config"], r["seed"]) not in jobs]
        args.json = args.json.with_suffix(".partial.json")  # the merged file is written once, at the end
    rows = []
    with ProcessPoolExecutor(args.parallel) as pool:
        futures = [pool.submit(run, c, s, args.steps, args.samples, args.threads,
                               c in args.export and s == args.seeds[0]) for c, s in jobs]
        for future in futures:
            rows.append(future.result())
            print(json.dumps(rows[-1]), flush=True)
            if args.json:  # written as it goes: a long run that stops keeps what it finished
                args.json.write_text(json.dumps(rows, indent=1))
    rows = sorted(kept + rows, key=lambda r: (list(CONFIGS).index(r["config"]), r["seed"]))
    seeds = sorted({r["seed"] for r in rows})
    rows += [truth_row(args.samples, s) for s in seeds]
    summaries = summary(rows)
    machine = f"{platform.processor() or platform.machine()}, {args.parallel} runs x {args.threads} threads, torch {torch.__version__}"
    print(f"\n{args.steps} steps of batch {RECIPE.batch_size}, {args.samples} samples per test image; {machine}\n")
    print(table(summaries))
    if args.merge:
        args.json.unlink()
        args.json = args.json.with_suffix("").with_suffix(".json")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "steps": args.steps, "samples": args.samples,
                                         "recipe": dict(RECIPE.to_dict(), annotation=ANNOTATION),
                                         "annotations": ANNOTATIONS, "betas": BETAS, "rows": rows, "summary": summaries}, indent=1))


if __name__ == "__main__":
    main()
