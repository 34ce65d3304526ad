"""Training and sampling speed of the default ProbabilisticUNet.

    python benchmarks/speed.py                      # the grid below, on the CPU
    python benchmarks/speed.py --device cuda        # the same on a GPU

For each image size (32x32, the toy's, and 128x128, LIDC's crops), thread
count (CPU) and mode (eager; channels_last memory format; torch.compile),
it prints training images/s (loss, backward and an Adam step on batches of
--batch) and sampling samples/s (--samples prior samples per image for a batch
of --batch images). Each figure is the median of --repeats timings of
--steps calls, after warm-up calls (torch.compile compiles during warm-up).
Run it alone on the machine: other jobs change the figures.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from probunet import ProbabilisticUNet  # noqa: E402


def timed(fn, steps: int, repeats: int, device: torch.device) -> float:
    """Median seconds of ``steps`` calls of fn, over ``repeats`` timings."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(size: int, mode: str, args, device: torch.device) -> dict:
    """Training images/s and sampling samples/s for one setting."""
    torch.manual_seed(0)
    model = ProbabilisticUNet().to(device)
    x = torch.rand(args.batch, 1, size, size, device=device)
    y = (torch.rand(args.batch, size, size, device=device) > 0.5).long()
    if mode == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    loss = torch.compile(model.loss) if mode == "compile" else model.loss
    sample = torch.compile(model.sample) if mode == "compile" else model.sample
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss(x, y)["total"].backward()
        optimizer.step()

    def sample_step():
        sample(x, args.samples)

    model.train()
    for _ in range(args.warmup):
        train_step()
    train_s = timed(train_step, args.steps, args.repeats, device)
    model.eval()
    for _ in range(args.warmup):
        sample_step()
    sample_s = timed(sample_step, args.steps, args.repeats, device)
    n = args.steps * args.batch
    return {"train_images_per_s": n / train_s,
            "sample_per_s": n * args.samples / sample_s}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+",
                        default=["eager", "channels_last", "compile"],
                        choices=["eager", "channels_last", "compile"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine())
    print(f"{name}, torch {torch.__version__}, batch {args.batch}, "
          f"{args.samples} samples per image")
    print(f"{'size':>5} {'threads':>7} {'mode':>14} {'train img/s':>12} "
          f"{'samples/s':>10}")
    threads = args.threads if device.type == "cpu" else [torch.get_num_threads()]
    for size in args.sizes:
        for t in threads:
            torch.set_num_threads(t)
            for mode in args.modes:
                r = measure(size, mode, args, device)
                print(f"{size:>5} {t:>7} {mode:>14} "
                      f"{r['train_images_per_s']:>12.1f} "
                      f"{r['sample_per_s']:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
