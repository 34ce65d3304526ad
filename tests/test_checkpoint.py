"""One checkpoint format: loading is safe, and a file that is not a checkpoint says what it is."""

import pickle

import pytest
import torch

from probunet import MultiAnnotatorDataset, ProbabilisticUNet, UNet, fit, load_model, save_checkpoint
from probunet.checkpoint import MODELS, load_checkpoint, register_model

torch.set_num_threads(1)
TINY = dict(channels=(4, 8), convs_per_block=1)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "unet.pt"
    save_checkpoint(path, UNet(**TINY), info={"note": "made here"})
    return path


def test_round_trip_keeps_class_config_weights_and_info(saved):
    model = load_model(saved, device="cpu")
    assert isinstance(model, UNet) and model.config["channels"] == (4, 8) and model.info == {"note": "made here"}
    assert load_checkpoint(saved)["format"] == "probunet-checkpoint"


class RunsCode:
    """Unpickling this calls a function: what a malicious checkpoint does."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


def corrupt(saved, kind):
    """Write the kind of file a user might be handed instead of a checkpoint."""
    path = saved.with_name(kind + ".pt")
    if kind == "truncated":
        path.write_bytes(saved.read_bytes()[:200])
    elif kind == "garbage":
        path.write_bytes(b"\x00\x01 not a torch file at all" * 10)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "bare_state_dict":
        torch.save(UNet(**TINY).state_dict(), path)
    elif kind == "foreign":
        torch.save({"epoch": 3, "weights": [1.0, 2.0]}, path)
    elif kind == "runs_code":
        with open(path, "wb") as f:
            pickle.dump({"model": RunsCode()}, f)
    elif kind == "runs_code_protocol_2":
        with open(path, "wb") as f:
            pickle.dump({"model": RunsCode()}, f, protocol=2)
    elif kind == "runs_code_in_torch_zip":
        torch.save({"format": "probunet-checkpoint", "version": 1, "x": RunsCode()}, path)
    return path


@pytest.mark.parametrize("kind, match", [
    ("truncated", "not a readable torch file"),
    ("garbage", "not a readable torch file"),
    ("empty", "not a readable torch file"),
    ("bare_state_dict", r"a bare state_dict \(\d+ tensors\), not a probunet checkpoint"),
    ("foreign", r"not a probunet checkpoint: it holds a dict \['epoch', 'weights'\]"),
    ("runs_code", "a plain pickle, which is not unpickled since it could run code"),
    ("runs_code_protocol_2", r"refusing to unpickle.*Unsupported global: GLOBAL print"),
    ("runs_code_in_torch_zip", "refusing to unpickle"),
])
def test_a_file_that_is_not_a_checkpoint_raises_a_value_error_saying_what_it_is(saved, kind, match, capsys):
    path = corrupt(saved, kind)
    with pytest.raises(ValueError, match=match):
        load_model(path, device="cpu")
    assert "this ran while loading" not in capsys.readouterr().out  # nothing was executed


def test_missing_file_and_unknown_class(tmp_path, saved):
    with pytest.raises(ValueError, match="no such checkpoint file"):
        load_model(tmp_path / "nope.pt")
    ckpt = load_checkpoint(saved)
    torch.save(ckpt | {"model_class": "MyNet"}, tmp_path / "mine.pt")
    with pytest.raises(ValueError, match="unknown model class 'MyNet'.*pass model_class="):
        load_model(tmp_path / "mine.pt")


def test_a_class_of_your_own_loads_by_registering_it_or_by_passing_it(tmp_path):
    class MyNet(torch.nn.Module):
        def __init__(self, width: int = 3):
            super().__init__()
            self.config, self.layer = dict(width=width), torch.nn.Linear(width, 1)

    save_checkpoint(tmp_path / "my.pt", MyNet(5))
    assert load_model(tmp_path / "my.pt", device="cpu", model_class=MyNet).layer.in_features == 5
    register_model(MyNet)
    try:
        assert isinstance(load_model(tmp_path / "my.pt", device="cpu"), MyNet)
    finally:
        del MODELS["MyNet"]


def test_weights_that_do_not_fit_the_config_are_a_value_error(tmp_path, saved):
    ckpt = load_checkpoint(saved)
    torch.save(ckpt | {"model_config": dict(ckpt["model_config"], channels=(4, 16))}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="the weights do not fit"):
        load_model(tmp_path / "bad.pt")


def data(seed, n=16):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 16, 16, generator=g)
    return MultiAnnotatorDataset(images, (images > 0.5).to(torch.uint8).repeat(1, 2, 1, 1))


def test_resume_refuses_another_dataset(tmp_path):
    path = tmp_path / "run.pt"
    settings = dict(steps=4, batch_size=4, progress=False, device="cpu", checkpoint=path)
    fit(ProbabilisticUNet(**TINY), data(0), max_seconds=0, **settings)
    with pytest.raises(ValueError, match="cannot resume .* on another dataset.*'length': 16.*'length': 12"):
        fit(ProbabilisticUNet(**TINY), data(0, n=12), resume=True, **settings)
    with pytest.raises(ValueError, match="cannot resume .* on another dataset.*'hash'"):
        fit(ProbabilisticUNet(**TINY), data(1), resume=True, **settings)
    hist = fit(ProbabilisticUNet(**TINY), data(0), resume=True, **settings)  # the same data resumes
    assert hist["step"] == [1, 2, 3, 4]


def test_resume_refuses_a_file_without_training_state(tmp_path, saved):
    with pytest.raises(ValueError, match="it holds no training state"):
        fit(UNet(**TINY), data(0), steps=2, batch_size=4, progress=False, checkpoint=saved, resume=True)
