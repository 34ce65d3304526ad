"""Try training recipes side by side: each config trains a Prob U-Net for a fixed number of steps and is scored on the test split.

    python benchmarks/sweep.py configs.json --parallel 8 --device cuda > results.jsonl

configs.json is a list of dicts: fit() keyword arguments plus optional "model" (ProbabilisticUNet
keyword arguments), "annotation" ("stored" or "fresh") and "name". One JSON line per config is printed.
Runs configs in separate processes (2 CPU threads each) so a GPU or a many-core CPU is used fully.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def run(cfg: dict, device: str) -> dict:
    import torch
    from probunet import ProbabilisticUNet, ToyAmbiguousDataset
    from probunet.toy import evaluate
    from probunet.train import fit, seed_everything

    torch.set_num_threads(2)
    cfg = dict(cfg)
    name, model_kw, annotation = cfg.pop("name", ""), cfg.pop("model", {}), cfg.pop("annotation", "stored")
    seed_everything(cfg.get("seed", 0))
    model = ProbabilisticUNet(**model_kw)
    t = time.perf_counter()
    history = fit(model, ToyAmbiguousDataset("train", annotation=annotation), device=device, progress=False, **cfg)
    seconds = time.perf_counter() - t
    scores = evaluate(model, ToyAmbiguousDataset("test"), n=100)
    return {"name": name, "seconds": round(seconds, 1), "steps": len(history["step"]),
            "final_kl": round(sum(history["kl"][-100:]) / 100, 3),
            **{k: round(v, 4) for k, v in scores.items() if isinstance(v, float)},
            "mode_freq_pred": [round(f, 3) for f in scores["mode_freq_pred"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("configs")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    configs = json.loads(Path(args.configs).read_text())
    with ProcessPoolExecutor(args.parallel) as pool:
        for result in pool.map(run, configs, [args.device] * len(configs)):
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
