"""The Probabilistic U-Net among its rivals: every method trained with the
same recipe on the same toy data, and scored against the known truth.

    python benchmarks/rivals.py --datasets shapes exclusive --seeds 0 1 2

Every run trains with probunet.toy.RECIPE (10,000 steps of batch 8, Adam
1e-3 with a cosine schedule, beta 1 where a method has a KL term; a fresh
annotation drawn from the true law at every step on the two toys, one of the
4 stored raters on the lesions), then draws 100 samples per test image. The
scores against the truth are those of ``probunet.toy.summarize`` (shapes,
exclusive) or the exact GED and mode frequencies of ``lesion_modes``
(lesions); against the 4 stored raters, the biased GED and the
Hungarian-matched IoU with the first S = 1, 4, 16 and 100 samples (the
paper's figure). Training seconds, sampling samples/s and parameters are
reported beside them. "truth" is no model: 100 masks per image from the
true law, the floor of every score.

Every (dataset, method, seed) is one row of the JSON, written as soon as it
is done; a rerun skips the rows the file already has, so an interrupted grid
loses only the runs in progress. ``--export`` writes the seed-0 model of
the runs in SHIPPED to probunet/book/weights/ (the rivals chapter loads
them).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from probunet import (MultiAnnotatorDataset, ProbabilisticUNet,  # noqa: E402
                      save_checkpoint)
from probunet.baselines import (DropoutUNet, Image2ImageVAE,  # noqa: E402
                                MultiHeadUNet, StochasticSegmentationNetwork,
                                UNetEnsemble)
from probunet.book import WEIGHTS_DIR  # noqa: E402
from probunet.evaluate import sample_masks  # noqa: E402
from probunet.metrics import annotation_scores  # noqa: E402
from probunet.toy import (RECIPE, ExclusiveObjectsDataset,  # noqa: E402
                          ToyAmbiguousDataset, ged_exact, lesion_modes,
                          load_lesions, mode_frequencies, mode_tv,
                          sample_truth, summarize)
from probunet.train import fit, seed_everything  # noqa: E402

JSON = WEIGHTS_DIR / "rivals_benchmark.json"
SAMPLES = 100  # samples per test image
SAMPLE_COUNTS = (1, 4, 16, 100)  # S of the paper's GED-against-samples figure
METHODS: dict[str, tuple[type[torch.nn.Module], dict]] = {
    "probunet": (ProbabilisticUNet, {}),
    "probunet_coordinates": (ProbabilisticUNet, dict(coordinates=True)),
    "probunet_mixture": (ProbabilisticUNet, dict(prior_components=4)),
    "ensemble": (UNetEnsemble, dict(members=4)),
    "mheads": (MultiHeadUNet, dict(heads=4)),
    # Rupprecht et al.'s relaxation: heads that never win still learn
    "mheads_relaxed": (MultiHeadUNet, dict(heads=4, epsilon=0.05)),
    "dropout": (DropoutUNet, dict(p=0.5)),
    "image2image_vae": (Image2ImageVAE, dict(latent_dim=6)),
    "ssn": (StochasticSegmentationNetwork, dict(rank=10)),
}
DEFAULT_METHODS = [m for m in METHODS if m != "probunet_mixture"]
# the mixture prior only where a choice between objects calls for it
EXTRA_METHODS = {"exclusive": ["probunet_mixture"]}
DATASETS = ("shapes", "exclusive", "lesions")
# the seed-0 models --export writes: what the rivals chapter loads, within
# the shipped weights' budget of 8 MB (M-heads trains in the chapter)
SHIPPED = {("shapes", m) for m in ("ensemble", "dropout", "image2image_vae",
                                   "ssn")} | {("exclusive", "probunet")}
TRUTH_SCORES = ["ged_exact", "mode_tv_per_image", "other_fraction",
                "calibration_error", "mode_tv", "diversity"]
RATER_SCORES = [f"{k}_{s}" for s in SAMPLE_COUNTS
                for k in ("ged_biased", "hm_iou")]
OTHER = ["parameters", "train_seconds", "samples_per_second"]
TABLE = (TRUTH_SCORES[:4] + ["ged_biased_1", "ged_biased_100", "hm_iou_16"]
         + OTHER)


def weight_name(dataset: str, method: str) -> str:
    return f"rival_{dataset}_{method}"


def load_data(name: str) -> tuple:
    """(training set, test set) of a data set; the toys draw a fresh mask
    from their true law at every step, the lesions one of 4 raters."""
    if name == "shapes":
        return (ToyAmbiguousDataset("train", annotation="fresh"),
                ToyAmbiguousDataset("test"))
    if name == "exclusive":
        return (ExclusiveObjectsDataset("train", annotation="fresh"),
                ExclusiveObjectsDataset("test"))
    train, test = load_lesions("train"), load_lesions("test")
    test_set = MultiAnnotatorDataset(test["images"][:, None] / 255.0,
                                     test["annotations"])
    test_set.truth = lesion_modes(test["lesions"], test["p_present"])
    return (MultiAnnotatorDataset(train["images"][:, None] / 255.0,
                                  train["annotations"]), test_set)


def truth_scores(samples: torch.Tensor, test) -> dict:
    """Scores of samples (N, S, H, W) against the test set's true law."""
    if hasattr(test, "objects"):
        return summarize(samples, test.annotations, test.objects, test.probs,
                         exclusive=getattr(test, "exclusive", False))
    modes, probs = (torch.from_numpy(a) for a in test.truth)
    freqs = mode_frequencies(samples, modes)
    return {"ged_exact": ged_exact(samples, modes, probs).mean().item(),
            "mode_tv_per_image": mode_tv(freqs, probs,
                                         pooled=False).mean().item(),
            "other_fraction": freqs[:, -1].mean().item(),
            "mode_tv": mode_tv(freqs, probs)}


def rater_scores(samples: torch.Tensor, annotations: torch.Tensor) -> dict:
    """Biased GED and HM-IoU against the raters with the first S samples."""
    out = {}
    for s in SAMPLE_COUNTS:
        scores = annotation_scores(samples[:, :s], annotations)
        out[f"ged_biased_{s}"] = scores["ged_biased"]
        out[f"hm_iou_{s}"] = scores["hm_iou"]
    return out


def run(dataset: str, method: str, seed: int, steps: int, threads: int,
        export: bool) -> dict:
    """Train one method with one seed on one data set and score it."""
    torch.set_num_threads(threads)
    cls, kwargs = METHODS[method]
    train, test = load_data(dataset)
    seed_everything(seed)
    model = cls(**kwargs)
    recipe = dataclasses.replace(RECIPE, steps=steps, seed=seed)
    t = time.perf_counter()
    fit(model, train, recipe, device="cpu", progress=False, log_every=100)
    train_seconds = time.perf_counter() - t
    seed_everything(seed)
    t = time.perf_counter()
    samples = sample_masks(model, test.images, SAMPLES)
    sample_seconds = time.perf_counter() - t
    scores = truth_scores(samples, test) | rater_scores(samples,
                                                        test.annotations)
    row = {"dataset": dataset, "method": method, "seed": seed,
           "steps": steps,
           "parameters": sum(p.numel() for p in model.parameters()),
           "train_seconds": round(train_seconds, 1),
           "samples_per_second": round(samples.shape[0] * SAMPLES
                                       / sample_seconds, 1),
           **{k: round(v, 4) for k, v in scores.items()
              if isinstance(v, float)}}
    if "mode_freq_pred" in scores:
        row["mode_freq_pred"] = [round(f, 4) for f in scores["mode_freq_pred"]]
    if export and (dataset, method) in SHIPPED:
        info = {"recipe": recipe.to_dict(), "annotation": "fresh",
                "dataset": dataset, "device": "cpu",
                "torch": str(torch.__version__),
                "train_seconds": row["train_seconds"],
                "made_by": f"benchmarks/rivals.py --export ({dataset})",
                "test_scores": {k: row[k] for k in TRUTH_SCORES if k in row}}
        save_checkpoint(WEIGHTS_DIR / f"{weight_name(dataset, method)}.pt",
                        model, info, half=True)
    return row


def truth_row(dataset: str, seed: int) -> dict:
    """The floor: SAMPLES masks per test image from the true law."""
    _, test = load_data(dataset)
    if hasattr(test, "objects"):
        samples = sample_truth(test.objects, test.probs, SAMPLES, seed,
                               exclusive=getattr(test, "exclusive", False))
    else:
        modes, probs = (torch.from_numpy(a) for a in test.truth)
        pick = torch.multinomial(probs.float(), SAMPLES, replacement=True,
                                 generator=torch.Generator().manual_seed(
                                     seed))
        samples = modes[torch.arange(len(modes))[:, None], pick]
    scores = truth_scores(samples, test) | rater_scores(samples,
                                                        test.annotations)
    return {"dataset": dataset, "method": "truth", "seed": seed,
            **{k: round(v, 4) for k, v in scores.items()
               if isinstance(v, float)}}


def summary(rows: list[dict]) -> list[dict]:
    """Mean and sd over seeds per (data set, method)."""
    out = []
    for key in dict.fromkeys((r["dataset"], r["method"]) for r in rows):
        group = [r for r in rows if (r["dataset"], r["method"]) == key]
        row = {"dataset": key[0], "method": key[1],
               "seeds": [r["seed"] for r in group]}
        for k in TRUTH_SCORES + RATER_SCORES + OTHER:
            values = [r[k] for r in group if r.get(k) is not None]
            if values:
                row[k] = round(statistics.mean(values), 4)
                row[k + "_sd"] = (round(statistics.stdev(values), 4)
                                  if len(values) > 1 else 0.0)
        out.append(row)
    return out


def table(summaries: list[dict], columns: list[str]) -> str:
    """A Markdown table, mean ± sd over seeds."""
    lines = ["| data | method | seeds | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 3) + "|"]
    for s in summaries:
        cells = [f"{s[k]:,.0f}" if k == "parameters" and k in s
                 else f"{s[k]:.4g} ± {s[k + '_sd']:.2g}" if k in s else ""
                 for k in columns]
        lines.append(f"| {s['dataset']} | {s['method']} | "
                     f"{len(s['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


LABELS = {  # method -> the README's name for it
    "probunet": "Prob U-Net (the package's default)",
    "probunet_coordinates": "Prob U-Net, `coordinates=True`",
    "probunet_mixture": "Prob U-Net, `prior_components=4`",
    "ensemble": "U-Net ensemble (4 members)",
    "mheads": "M-heads (4 heads, winner takes all)",
    "mheads_relaxed": "M-heads, relaxed (`epsilon=0.05`)",
    "dropout": "dropout U-Net (p = 0.5)",
    "image2image_vae": "Image2Image VAE (fixed N(0, I) prior)",
    "ssn": "Stochastic Segmentation Network (rank 10)",
    "truth": "100 draws from the truth (the floor)"}
README_COLUMNS = [("shapes", "ged_exact"), ("shapes", "mode_tv_per_image"),
                  ("exclusive", "ged_exact"),
                  ("exclusive", "mode_tv_per_image"),
                  ("exclusive", "other_fraction"), ("lesions", "ged_exact"),
                  ("lesions", "mode_tv_per_image")]


def readme_table(summaries: list[dict]) -> str:
    """The README's table: one row per method, a few scores per data set."""
    by = {(s["dataset"], s["method"]): s for s in summaries}
    names = {"ged_exact": "GED exact", "mode_tv_per_image": "TV per image",
             "other_fraction": "no mode"}
    lines = ["| method | seeds (" + ", ".join(DATASETS) + ") | "
             + " | ".join(f"{d}: {names[k]}" for d, k in README_COLUMNS)
             + " |", "|---" * (len(README_COLUMNS) + 2) + "|"]

    def cell(s: dict | None, k: str) -> str:
        if s is None or k not in s:
            return "not run"
        v, sd = (0.0 if abs(x) < 5e-4 else x for x in (s[k], s[k + "_sd"]))
        return (f"{v:.3f} ± {sd:.3f}" if len(s["seeds"]) > 1
                else f"{v:.3f}")
    for m, label in LABELS.items():
        seeds = ", ".join(str(len(by[d, m]["seeds"]) if (d, m) in by else 0)
                          for d in DATASETS)
        lines.append(f"| {label} | {seeds} | " + " | ".join(
            cell(by.get((d, m)), k) for d, k in README_COLUMNS) + " |")
    return "\n".join(lines)


def write(path: Path, rows: list[dict], steps: int, machine: str) -> None:
    """Merge ``rows`` into the file's and write it atomically: two grids
    may run at once (other data sets or seeds) and write the same file."""
    key = lambda r: (r["dataset"], r["method"], r["seed"])  # noqa: E731
    merged = {key(r): r for r in (json.loads(path.read_text())["rows"]
                                  if path.exists() else [])}
    merged.update({key(r): r for r in rows})
    order = {m: i for i, m in enumerate(list(METHODS) + ["truth"])}
    rows = sorted(merged.values(), key=lambda r: (
        DATASETS.index(r["dataset"]), order[r["method"]], r["seed"]))
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(
        {"machine": machine, "steps": steps, "samples": SAMPLES,
         "recipe": RECIPE.to_dict(), "rows": rows,
         "summary": summary(rows)}, indent=1) + "\n")
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS),
                        choices=DATASETS)
    parser.add_argument("--methods", nargs="+", choices=list(METHODS),
                        help="default: every method but the mixture prior, "
                             "which runs on the exclusive set only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=RECIPE.steps)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--export", action="store_true",
                        help="write the seed-0 models of SHIPPED to the "
                             "weights folder")
    parser.add_argument("--json", type=Path, default=JSON)
    parser.add_argument("--table", action="store_true",
                        help="print the JSON's table and stop")
    parser.add_argument("--readme", action="store_true",
                        help="print the README's summary table and stop")
    args = parser.parse_args()
    if min(args.steps, args.parallel, args.threads) < 1:
        parser.error("--steps, --parallel and --threads must be >= 1")
    old = json.loads(args.json.read_text()) if args.json.exists() else None
    if old and old["steps"] != args.steps:
        parser.error(f"{args.json} holds runs of {old['steps']} steps; "
                     f"pass another --json for {args.steps}")
    rows = old["rows"] if old else []
    if args.table:
        print(table(summary(rows), TABLE))
        return
    if args.readme:
        print(readme_table(summary(rows)))
        return
    done = {(r["dataset"], r["method"], r["seed"]) for r in rows}
    jobs = [(d, m, s) for s in args.seeds for d in args.datasets
            for m in (args.methods or DEFAULT_METHODS
                      + EXTRA_METHODS.get(d, []))
            if (d, m, s) not in done]
    machine = (f"{platform.processor() or platform.machine()}, "
               f"{args.parallel} runs x {args.threads} threads, "
               f"torch {torch.__version__}")
    for d in args.datasets:  # the floors, cheap
        for s in args.seeds:
            if (d, "truth", s) not in done:
                rows.append(truth_row(d, s))
    write(args.json, rows, args.steps, machine)
    print(f"{len(jobs)} runs to go", flush=True)
    with ProcessPoolExecutor(args.parallel) as pool:
        futures = [pool.submit(run, d, m, s, args.steps, args.threads,
                               args.export and s == 0) for d, m, s in jobs]
        # each row is written as soon as its run ends, whatever the order
        for future in as_completed(futures):
            rows.append(future.result())
            print(json.dumps(rows[-1]), flush=True)
            write(args.json, rows, args.steps, machine)
    print(table(summary(rows), TABLE))


if __name__ == "__main__":
    main()
