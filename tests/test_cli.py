"""``python -m probunet train`` and ``evaluate``, end to end, on LIDC-like
lesions written in the layouts of the real data."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from probunet import cli, train
from probunet.checkpoint import load_checkpoint
from probunet.toy.lidc_like import (lidc_like, write_lidc_crops,
                                    write_lidc_pickle)

SMALL = ["--channels", "8", "16", "--crop", "64", "--batch-size", "4",
         "--device", "cpu"]


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops")
    for split, n, seed in (("train", 16, 1), ("val", 8, 2), ("test", 8, 3)):
        write_lidc_crops(root, split, *lidc_like(n, seed, per_patient=2))
    return root


def run(*args):
    return subprocess.run([sys.executable, "-m", "probunet", *args],
                          capture_output=True, text=True, timeout=300)


def test_help_lists_both_commands():
    out = run("--help")
    assert out.returncode == 0 and "train" in out.stdout
    assert "evaluate" in out.stdout and "--resume" in out.stdout
    out = run("train", "--help")
    assert out.returncode == 0 and "lidc-pickle" in out.stdout


def test_train_and_evaluate_end_to_end(crops, tmp_path):
    out = run("train", "--data", str(crops), "--format", "lidc-crops",
              "--out", str(tmp_path / "run"), "--steps", "6",
              "--checkpoint-every", "3", "--val-every", "3", *SMALL)
    assert out.returncode == 0, out.stderr
    assert "16 training items, 8 validation items" in out.stdout
    for name in ("last.pt", "best.pt", "history.csv"):
        assert (tmp_path / "run" / name).is_file(), name
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["training"]["step"] == 6
    assert state["model_config"]["channels"] == (8, 16)
    assert state["info"]["recipe"]["lr_schedule"] == "cosine"
    lines = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert lines[0].startswith("step,lr,seconds,total") and len(lines) == 3

    scores = tmp_path / "scores.json"
    out = run("evaluate", "--model", str(tmp_path / "run" / "best.pt"),
              "--data", str(crops), "--format", "lidc-crops",
              "--device", "cpu", "--crop", "64", "--json", str(scores))
    assert out.returncode == 0, out.stderr
    assert "on 8 images" in out.stdout and "HM-IoU" in out.stdout
    table = json.loads(scores.read_text())
    assert table["images"] == 8 and table["split"] == "test"
    assert sorted(table["scores"], key=int) == ["1", "4", "16"]
    assert table["scores"]["1"]["ged_unbiased"] is None  # needs S >= 2
    for s in ("4", "16"):
        assert 0 <= table["scores"][s]["hm_iou"] <= 1
        assert np.isfinite(table["scores"][s]["ged_unbiased"])
    rows = [line.split() for line in out.stdout.splitlines()[2:5]]
    assert [r[0] for r in rows] == ["1", "4", "16"]
    assert float(rows[2][3]) == pytest.approx(
        table["scores"]["16"]["hm_iou"], abs=1e-4)


def test_resume_after_an_interruption_is_exact(crops, tmp_path,
                                               monkeypatch, capsys):
    args = ["train", "--data", str(crops), "--format", "lidc-crops",
            "--steps", "8", "--checkpoint-every", "2", "--val-every", "4",
            *SMALL]
    assert cli.main(args + ["--out", str(tmp_path / "ref")]) == 0

    real_save = train.save_checkpoint

    def save_then_stop(path, model, info, training, **kwargs):
        real_save(path, model, info, training, **kwargs)
        if path.name == "last.pt" and training["step"] == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", save_then_stop)
    out = tmp_path / "run"
    assert cli.main(args + ["--out", str(out)]) == 130
    assert "--resume" in capsys.readouterr().err
    assert load_checkpoint(out / "last.pt")["training"]["step"] == 4
    monkeypatch.setattr(train, "save_checkpoint", real_save)

    steps = []
    real_lr_at = train.lr_at
    monkeypatch.setattr(train, "lr_at", lambda step, *a, **k: (
        steps.append(step), real_lr_at(step, *a, **k))[1])
    torch.manual_seed(123)  # another process: another RNG state
    assert cli.main(args + ["--out", str(out), "--resume"]) == 0
    assert steps == [4, 5, 6, 7]  # it went on, it did not start again
    ref = load_checkpoint(tmp_path / "ref" / "last.pt")
    got = load_checkpoint(out / "last.pt")
    for key, value in ref["model"].items():
        assert torch.equal(value, got["model"][key]), key
    got, ref = got["training"]["history"], ref["training"]["history"]
    assert got.pop("seconds") != ref.pop("seconds")  # only the clock differs
    assert got == ref and got["val_step"] == [4, 8]

    def columns(path):  # the csv without its seconds
        rows = [line.split(",") for line in path.read_text().splitlines()]
        return [r[:2] + r[3:] for r in rows]

    assert (columns(out / "history.csv")
            == columns(tmp_path / "ref" / "history.csv"))


def test_the_pickle_is_split_by_series(tmp_path, capsys):
    arrays, series = lidc_like(20, seed=4, size=64, per_patient=2)
    write_lidc_pickle(tmp_path / "lidc.pickle", arrays, series)
    args = ["--data", str(tmp_path / "lidc.pickle"), "--format",
            "lidc-pickle", "--device", "cpu", "--crop", "64"]
    assert cli.main(["train", *args, "--out", str(tmp_path / "run"),
                     "--steps", "2", "--batch-size", "4", "--channels",
                     "8", "16"]) == 0
    # 10 series: 6, 2 and 2 of them, 2 slices each
    assert "12 training items, 4 validation items" in capsys.readouterr().out
    assert cli.main(["evaluate", *args, "--model",
                     str(tmp_path / "run" / "best.pt")]) == 0
    assert "on 4 images" in capsys.readouterr().out


def test_npz_and_folders(tmp_path, capsys):
    from PIL import Image

    arrays, _ = lidc_like(8, seed=6, size=64)
    np.savez(tmp_path / "d.npz", images=arrays["images"],
             annotations=arrays["annotations"])
    (tmp_path / "f/images").mkdir(parents=True)
    (tmp_path / "f/masks").mkdir()
    for i, (x, ms) in enumerate(zip(arrays["images"],
                                    arrays["annotations"])):
        Image.fromarray(x).save(tmp_path / f"f/images/c{i}.png")
        for r, m in enumerate(ms):
            Image.fromarray(m).save(tmp_path / f"f/masks/c{i}_{r}.png")
    for fmt, data in (("npz", "d.npz"), ("folders", "f")):
        out = tmp_path / fmt
        assert cli.main(["train", "--data", str(tmp_path / data), "--format",
                         fmt, "--out", str(out), "--steps", "2",
                         "--batch-size", "4", "--channels", "8", "16",
                         "--val", str(tmp_path / data),
                         "--device", "cpu"]) == 0
        assert (out / "best.pt").is_file()
        assert cli.main(["evaluate", "--data", str(tmp_path / data),
                         "--format", fmt, "--model", str(out / "last.pt"),
                         "--device", "cpu"]) == 0
        assert "on 8 images" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--data", "nowhere", "--format", "lidc-crops"], "no such folder"),
    (["--data", "nowhere.npz", "--format", "npz"], "no such file"),
    (["--data", "x.pickle", "--format", "lidc-pickle"], "no such file"),
    (["--steps", "0"], "steps must be"),
    (["--device", "cuda:7"], "device"),
])
def test_bad_paths_and_values_are_clear_errors(crops, tmp_path, capsys,
                                               extra, message):
    if torch.cuda.is_available() and "cuda:7" in extra:
        pytest.skip("this machine has CUDA")
    base = ["--data", str(crops), "--format", "lidc-crops"]
    args = ["train", *base, "--out", str(tmp_path / "r"), *extra]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err


def test_an_existing_run_needs_resume(crops, tmp_path, capsys):
    (tmp_path / "last.pt").write_bytes(b"x")
    assert cli.main(["train", "--data", str(crops), "--format", "lidc-crops",
                     "--out", str(tmp_path)]) == 2
    assert "add --resume" in capsys.readouterr().err


def test_bad_flags_exit_with_usage():
    out = run("train", "--data", "x", "--format", "tiff", "--out", "y")
    assert out.returncode == 2 and "invalid choice: 'tiff'" in out.stderr
    out = run("evaluate", "--data", "x", "--format", "npz")
    assert out.returncode == 2 and "--model" in out.stderr
