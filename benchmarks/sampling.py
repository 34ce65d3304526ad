"""Peak memory and speed of drawing prior samples at LIDC size.

    python benchmarks/sampling.py                  # B=16 images of 128x128, n=100 samples each
    python benchmarks/sampling.py --device cuda --batch 16 --samples 100 --size 128

Times ``ProbabilisticUNet().sample(x, n)`` (the default model) and prints samples/s and
the peak memory of the call: on CUDA ``torch.cuda.max_memory_allocated``, on the CPU the
growth of the process's peak resident set (each measurement runs in a fresh process,
so one run's peak does not hide the next). To compare with another version of the
package, put it first on the path: ``PYTHONPATH=/path/to/old/checkout python benchmarks/sampling.py``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(batch: int, samples: int, size: int, device: str, repeats: int) -> dict:
    """One measurement, in this process: returns seconds per call and peak memory in MiB."""
    import torch

    import probunet
    from probunet import ProbabilisticUNet

    torch.manual_seed(0)
    model = ProbabilisticUNet().to(device).eval()
    x = torch.rand(batch, 1, size, size, device=device)
    with torch.no_grad():
        model.sample(x[:1], 1)  # warm-up: kernels, allocator
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = model.sample(x, samples)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        del out
    if device == "cuda":
        peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"package": probunet.__file__, "device": device, "batch": batch, "samples": samples, "size": size,
            "seconds": min(times), "samples_per_s": batch * samples / min(times), "peak_mib": peak_mib,
            "output_mib": batch * samples * 2 * size * size * 4 / 2**20, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (CUDA when present)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "auto":
        import torch
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        print(json.dumps(measure(args.batch, args.samples, args.size, args.device, args.repeats)))
        return
    cmd = [sys.executable, __file__, "--worker", "--batch", str(args.batch), "--samples", str(args.samples),
           "--size", str(args.size), "--device", args.device, "--repeats", str(args.repeats)]
    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    print(f"package: {r['package']}")
    print(f"{r['device']} ({r['threads']} threads): B={r['batch']} images of {r['size']}x{r['size']}, "
          f"n={r['samples']} samples each")
    print(f"  {r['seconds']:.2f} s per call (best of {args.repeats}), {r['samples_per_s']:.0f} samples/s")
    print(f"  peak memory of the call: {r['peak_mib']:.0f} MiB (of which the logits returned: {r['output_mib']:.0f} MiB)")


if __name__ == "__main__":
    main()
