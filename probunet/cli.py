"""The command line, for long runs on a GPU or a lab machine::

    python -m probunet train --data PATH --format lidc-crops --out runs/a
    python -m probunet train ... --resume      # the same command, continued
    python -m probunet evaluate --model runs/a/best.pt --data PATH \\
        --format lidc-crops

``train`` runs the one recipe (:data:`probunet.train.RECIPE`); flags
override its steps, batch size and precision and say where it runs. It
writes ``last.pt`` (the run's state, every ``--checkpoint-every`` steps),
``best.pt`` (the best validation GED) and ``history.csv`` (the losses).
``evaluate`` prints the GED and Hungarian-matched IoU with the first S of
16 samples per image, for S = 1, 4 and 16.

Data: ``npz`` (a file with ``images`` and ``annotations``), ``folders``
(``PATH/images/<id>.png`` and ``PATH/masks/<id>_<rater>.png``),
``lidc-crops`` (the HPU-Net paper's split folders: train on ``train``, with
random crops and flips, validate on ``val``, evaluate on ``--split``) and
``lidc-pickle`` (split by series with :func:`probunet.lidc.split_by_group`:
64/16/20 as PHiSeg, SSN and MoSE split it, with ``--split-seed``).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
import textwrap
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, load_model, resolve_device
from .data import MultiAnnotatorDataset
from .evaluate import sample_masks
from .lidc import PICKLE_SPLIT, SPLITS, RandomCropFlip, split_by_group
from .metrics import annotation_scores
from .model import ProbabilisticUNet
from .train import RECIPE, fit

FORMATS = ("npz", "folders", "lidc-crops", "lidc-pickle")
PRECISIONS = {"fp32": None, "bf16": "bf16", "fp16": "fp16"}
SAMPLES = (1, 4, 16)


def load_data(path: str, fmt: str, split: str, crop: int,
              split_seed: int = 0) -> MultiAnnotatorDataset:
    """One split of a data set as the command line reads it; ``train``
    is augmented with random crops and flips for the two LIDC forms."""
    train = split == "train"
    if fmt == "npz":
        return MultiAnnotatorDataset.from_npz(path)
    if fmt == "folders":
        root = Path(path)
        return MultiAnnotatorDataset.from_folders(root / "images",
                                                  root / "masks")
    if fmt == "lidc-crops":
        return MultiAnnotatorDataset.from_lidc_crops(
            path, split, crop=crop, augment=train)
    if fmt == "lidc-pickle":
        whole = MultiAnnotatorDataset.from_lidc_pickle(path)
        parts = split_by_group(whole.groups, PICKLE_SPLIT, split_seed)
        part = whole.subset(parts[SPLITS.index(split)])
        if train:  # on the pickle's 128x128 tiles: flips only
            part.transform = RandomCropFlip(min(crop, part.images.shape[-1]))
        return part
    raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")


def train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    last = out / "last.pt"
    if last.exists() and not args.resume:
        raise ValueError(f"{last} exists: add --resume to continue that run, "
                         f"or choose another --out")
    config = dataclasses.replace(
        RECIPE, seed=args.seed,
        steps=RECIPE.steps if args.steps is None else args.steps,
        batch_size=(RECIPE.batch_size if args.batch_size is None
                    else args.batch_size),
        amp=PRECISIONS[args.precision])
    resolve_device(args.device)  # bad settings fail before data loads
    data = load_data(args.data, args.format, "train", args.crop,
                     args.split_seed)
    if args.val is not None:
        val = load_data(args.val, args.format, "val", args.crop)
    elif args.format.startswith("lidc"):
        val = load_data(args.data, args.format, "val", args.crop,
                        args.split_seed)
    else:
        val = None
    if args.resume and last.exists():  # the architecture the run started
        saved = load_checkpoint(last)
        model = ProbabilisticUNet(**saved["model_config"])
    else:
        torch.manual_seed(config.seed)
        model = ProbabilisticUNet(
            in_channels=data.images.shape[1], num_classes=data.num_classes,
            channels=tuple(args.channels), latent_dim=args.latent_dim)
    print(f"{len(data)} training items, "
          f"{len(val) if val is not None else 'no'} validation items")
    recipe = ", ".join(f"{k}={v}" for k, v in config.to_dict().items())
    print(textwrap.fill(f"recipe: {recipe}", 79, subsequent_indent="  "))
    try:
        history = fit(model, data, config, device=args.device,
                      num_workers=args.workers, checkpoint=last,
                      checkpoint_every=args.checkpoint_every,
                      resume=args.resume, val_dataset=val,
                      val_every=args.val_every, best_checkpoint=(
                          out / "best.pt" if val is not None else None),
                      log_every=min(50, args.checkpoint_every))
    except KeyboardInterrupt:
        print(f"interrupted: {last} holds the last checkpoint; run the "
              f"same command with --resume to continue", file=sys.stderr)
        return 130
    with open(out / "history.csv", "w", newline="") as f:
        keys = [k for k in history if len(history[k]) == len(
            history["step"])]
        writer = csv.writer(f)
        writer.writerow(keys)
        writer.writerows(zip(*(history[k] for k in keys)))
    print(f"wrote {last}" + (f", {out / 'best.pt'}" if val is not None
                             else "") + f" and {out / 'history.csv'}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    model = load_model(args.model, device=args.device)
    data = load_data(args.data, args.format, args.split, args.crop,
                     args.split_seed)
    torch.manual_seed(args.seed)
    samples = sample_masks(model, data.images, max(SAMPLES))
    rows = {s: annotation_scores(samples[:, :s], data.annotations,
                                 model.num_classes) for s in SAMPLES}
    print(f"{args.model} on {len(data)} images of {args.data} "
          f"({args.format}, {args.split}):")
    print(f"{'S':>4} {'GED biased':>11} {'GED unbiased':>13} {'HM-IoU':>8}")
    for s, r in rows.items():
        unbiased = ("n/a" if math.isnan(r["ged_unbiased"])  # needs S >= 2
                    else f"{r['ged_unbiased']:.4f}")
        print(f"{s:>4} {r['ged_biased']:>11.4f} {unbiased:>13} "
              f"{r['hm_iou']:>8.4f}")
    if args.json:  # NaN is not JSON: null
        table = {str(s): {k: None if math.isnan(v) else v
                          for k, v in r.items() if k != "per_class"}
                 for s, r in rows.items()}
        Path(args.json).write_text(json.dumps(
            {"model": str(args.model), "data": str(args.data),
             "format": args.format, "split": args.split,
             "images": len(data), "scores": table}, indent=1))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m probunet", description=__doc__.replace("::", ":"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True)
    t = commands.add_parser("train", help="train a Probabilistic U-Net")
    e = commands.add_parser("evaluate", help="score a trained model")
    for c in (t, e):
        c.add_argument("--data", required=True, help="file or folder")
        c.add_argument("--format", required=True, choices=FORMATS)
        c.add_argument("--device", default="auto",
                       help="auto, cpu, cuda or cuda:N (default auto)")
        c.add_argument("--crop", type=int, default=128,
                       help="LIDC window size (default 128)")
        c.add_argument("--split-seed", type=int, default=0,
                       help="seed of the pickle's split by series")
    t.add_argument("--out", required=True, help="folder for the run")
    t.add_argument("--val", help="validation file or folder (npz, folders)")
    t.add_argument("--steps", type=int, help=f"default {RECIPE.steps}")
    t.add_argument("--batch-size", type=int,
                   help=f"default {RECIPE.batch_size}")
    t.add_argument("--precision", choices=PRECISIONS, default="fp32")
    t.add_argument("--workers", type=int, default=0,
                   help="data loader processes (default 0)")
    t.add_argument("--seed", type=int, default=RECIPE.seed)
    t.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64],
                   help="U-Net widths (the paper: 32 64 128 192)")
    t.add_argument("--latent-dim", type=int, default=6)
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--val-every", type=int, default=500)
    t.add_argument("--resume", action="store_true",
                   help="continue the run saved in --out")
    e.add_argument("--model", required=True, help="a checkpoint (.pt)")
    e.add_argument("--split", default="test", choices=SPLITS,
                   help="LIDC split to score (default test)")
    e.add_argument("--seed", type=int, default=0, help="sampling seed")
    e.add_argument("--json", help="also write the scores to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return train(args) if args.command == "train" else evaluate(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
