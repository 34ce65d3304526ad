"""Peak memory of loading LIDC's crops: does the whole set fit a Colab runtime?

    python benchmarks/lidc_memory.py                 # 10,000 crops
    python benchmarks/lidc_memory.py --crops 2000 --dir /tmp/lidc_like

Writes ``--crops`` LIDC-like lesions in the HPU-Net crops layout (180x180
PNG tiles, 4 graders, 4 crops per patient; kept in ``--dir`` and reused),
then reads them with ``MultiAnnotatorDataset.from_lidc_crops`` in a fresh
process, as training does (``augment=True``: the whole tiles) and as
evaluation does (the 128x128 centre crops). It prints the growth of that
process's peak resident memory over its state after ``import probunet``,
the bytes the dataset holds, and the seconds the reading took.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def measure(root: str, augment: bool) -> dict:
    """In this process: read the split, return peak growth and sizes."""
    import probunet

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    t0 = time.perf_counter()
    ds = probunet.MultiAnnotatorDataset.from_lidc_crops(
        root, "train", augment=augment, progress=False)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    held = (ds.images.numel() * ds.images.element_size()
            + ds.annotations.numel() * ds.annotations.element_size())
    return {"items": len(ds), "size": list(ds.images.shape[-2:]),
            "peak_growth_mib": (peak - base) / 1024,
            "dataset_mib": held / 2**20, "seconds": seconds}


def write(root: Path, n: int) -> None:
    from probunet.toy.lidc_like import lidc_like, write_lidc_crops

    done = root / "train" / "images"
    if done.is_dir() and len(list(done.glob("*/*.png"))) == n:
        return
    for start in range(0, n, 1000):  # in chunks: the generator's arrays
        arrays, patients = lidc_like(min(1000, n - start), seed=start)
        patients = [f"{p}-{start}" for p in patients]
        write_lidc_crops(root, "train", arrays, patients)
        print(f"wrote {start + len(patients)} of {n} crops", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--crops", type=int, default=10_000)
    p.add_argument("--dir", default="/tmp/lidc_like_crops")
    p.add_argument("--measure", choices=["train", "eval"],
                   help=argparse.SUPPRESS)  # the child process
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(args.dir, args.measure == "train")))
        return
    write(Path(args.dir), args.crops)
    for mode in ("train", "eval"):
        out = subprocess.run(
            [sys.executable, __file__, "--dir", args.dir, "--measure", mode],
            capture_output=True, text=True, check=True).stdout
        r = json.loads(out.splitlines()[-1])
        print(f"{mode:5} {r['items']:>6} crops of {r['size'][0]}x"
              f"{r['size'][1]}: peak +{r['peak_growth_mib']:,.0f} MiB, "
              f"dataset {r['dataset_mib']:,.0f} MiB, "
              f"read in {r['seconds']:.0f} s")


if __name__ == "__main__":
    main()
