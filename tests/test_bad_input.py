"""Every bad input a new user tried: a ValueError or TypeError that names the argument and the value."""

import numpy as np
import pytest
import torch
from PIL import Image

from probunet import MultiAnnotatorDataset, ProbabilisticUNet, TrainConfig, UNet, fit
from probunet.checkpoint import resolve_device
from probunet.evaluate import evaluate_annotations, sample_masks

torch.set_num_threads(1)
TINY = dict(channels=(4, 8), convs_per_block=1, latent_dim=2, fcomb_channels=8)


def tiny_data(n=8):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, 16, 16, generator=g)
    return MultiAnnotatorDataset(images, (images[:, None].repeat(1, 2, 1, 1, 1)[:, :, 0] > 0.5).to(torch.uint8))


class Empty:
    images = torch.zeros(0, 1, 16, 16)
    annotations = torch.zeros(0, 2, 16, 16, dtype=torch.uint8)


def masks_with(*values):
    """Annotations (2, 1, 16, 16) holding these label values."""
    masks = np.zeros((2, 1, 16, 16), np.uint8)
    masks.flat[:len(values)] = values
    return masks


MODEL = ProbabilisticUNet(**TINY)
X = torch.rand(2, 1, 16, 16)
Y = torch.zeros(2, 16, 16, dtype=torch.long)

CASES = [
    # (what a user did, the error, a regex that names the argument and the value)
    ("latent_dim=2.5", lambda: ProbabilisticUNet(latent_dim=2.5), TypeError, r"latent_dim must be an int, got 2\.5"),
    ("latent_dim=0", lambda: ProbabilisticUNet(latent_dim=0), ValueError, r"latent_dim must be >= 1, got 0"),
    ("channels with a 0", lambda: UNet(channels=(4, 0)), ValueError, r"channels\[i\] must be >= 1, got 0"),
    ("num_classes=1", lambda: UNet(num_classes=1), ValueError, r"num_classes must be >= 2, got 1"),
    ("coordinates='yes'", lambda: ProbabilisticUNet(coordinates="yes"), TypeError, "coordinates must be a bool"),
    ("geco_target=-1", lambda: ProbabilisticUNet(geco_target=-1.0), ValueError, r"geco_target must be >= 0"),
    ("steps=2.5", lambda: TrainConfig(steps=2.5), TypeError, r"steps must be an int, got 2\.5"),
    ("steps=0", lambda: TrainConfig(steps=0), ValueError, r"steps must be >= 1, got 0"),
    ("beta=-1", lambda: TrainConfig(beta=-1), ValueError, r"beta must be >= 0, got -1"),
    ("beta=nan", lambda: TrainConfig(beta=float("nan")), ValueError, r"beta must be >= 0, got nan"),
    ("beta=inf", lambda: TrainConfig(beta=float("inf")), ValueError, r"beta=inf"),
    ("lr=0", lambda: TrainConfig(lr=0), ValueError, r"lr must be > 0.*lr=0"),
    ("beta_warmup=-5", lambda: TrainConfig(beta_warmup=-5), ValueError, r"beta_warmup must be >= 0, got -5"),
    ("warmup=1.5", lambda: TrainConfig(warmup=1.5), TypeError, r"warmup must be an int, got 1\.5"),
    ("lr_schedule='linear'", lambda: TrainConfig(lr_schedule="linear"), ValueError, "lr_schedule must be one of"),
    ("amp='fp8'", lambda: TrainConfig(amp="fp8"), ValueError, r"amp must be None.*'fp8'"),
    ("an unknown setting", lambda: fit(MODEL, tiny_data(), steps=1, bata=2), TypeError, r"unknown settings \['bata'\]"),
    ("a dict as config", lambda: fit(MODEL, tiny_data(), {"steps": 1}), TypeError, "config must be a TrainConfig"),
    ("batch larger than the data", lambda: fit(MODEL, tiny_data(), steps=1, batch_size=9), ValueError,
     r"batch_size=9 is larger than the dataset \(8 items\)"),
    ("num_workers=-1", lambda: fit(MODEL, tiny_data(), steps=1, batch_size=2, num_workers=-1), ValueError,
     r"num_workers must be >= 0, got -1"),
    ("device='gpu'", lambda: resolve_device("gpu"), ValueError, r"device must be .*got 'gpu'"),
    ("float64 images", lambda: MODEL.sample(X.double()), ValueError, r"images are torch\.float64.*x\.float\(\)"),
    ("uint8 images", lambda: MODEL.sample((X * 255).to(torch.uint8)), ValueError, r"images must be float.*uint8"),
    ("an empty batch to elbo", lambda: MODEL.elbo(X[:0], Y[:0]), ValueError, r"empty image batch \(B = 0\)"),
    ("an empty batch to sample", lambda: MODEL.sample(X[:0]), ValueError, r"empty image batch \(B = 0\)"),
    ("n=2.5 samples", lambda: MODEL.sample(X, 2.5), TypeError, r"n must be an int, got 2\.5"),
    ("n=0 samples", lambda: MODEL.sample(X, 0), ValueError, r"n must be >= 1, got 0"),
    ("a list of images to sample_masks", lambda: sample_masks(MODEL, [[0.0]]), TypeError,
     "images must be a tensor or numpy array"),
    ("sample_masks(batch_size=0)", lambda: sample_masks(MODEL, X, batch_size=0), ValueError,
     r"batch_size must be >= 1, got 0"),
    ("evaluate_annotations(batch_size=0)", lambda: evaluate_annotations(MODEL, tiny_data(), batch_size=0),
     ValueError, r"batch_size must be >= 1, got 0"),
    ("evaluate_annotations on an empty dataset", lambda: evaluate_annotations(MODEL, Empty()), ValueError,
     "the dataset is empty"),
    ("masks with labels 0 and 255", lambda: MultiAnnotatorDataset(X, masks_with(0, 255)), ValueError,
     r"found values \[0, 255\] \(0/255 masks: divide by 255\)"),
    ("masks with labels 0, 1 and 7", lambda: MultiAnnotatorDataset(X, masks_with(0, 1, 7)), ValueError,
     r"found values \[0, 1, 7\]"),
]


@pytest.mark.parametrize("what, call, error, match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_message_that_names_it(what, call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_float64_data_is_cast_by_the_dataset_and_numpy_images_are_sampled():
    data = MultiAnnotatorDataset(np.random.rand(4, 1, 16, 16), np.zeros((4, 2, 16, 16), np.uint8))
    assert data.images.dtype == torch.float32
    assert sample_masks(MODEL, data.images.numpy(), n=2).shape == (4, 2, 16, 16)


def test_png_masks_drawn_as_0_and_255_are_read_as_classes_0_and_1(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "masks").mkdir()
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 255
    for i in range(2):
        Image.fromarray(np.full((16, 16), 100, np.uint8)).save(tmp_path / "img" / f"c{i}.png")
        for r in range(2):
            Image.fromarray(mask).save(tmp_path / "masks" / f"c{i}_{r}.png")
    data = MultiAnnotatorDataset.from_folders(tmp_path / "img", tmp_path / "masks")
    assert data.num_classes == 2 and set(data.annotations.unique().tolist()) == {0, 1}
    assert int(data.annotations[0, 0].sum()) == 16
    mask[0, 0] = 128  # three values: not a binary drawing, and not classes 0..K-1
    Image.fromarray(mask).save(tmp_path / "masks" / "c1_1.png")
    with pytest.raises(ValueError, match=r"found values \[0, 128, 255\]"):
        MultiAnnotatorDataset.from_folders(tmp_path / "img", tmp_path / "masks")


def test_a_geco_model_called_as_forward_x_y_trains_with_its_own_loss():
    geco = ProbabilisticUNet(geco_target=0.01, **TINY).train()
    x, y = X, (X[:, 0] > 0.5).long()
    terms = geco(x, y)
    assert "geco_lambda" in terms  # geco_loss, not the plain ELBO
    with pytest.raises(ValueError, match="GECO sets the KL weight itself"):
        geco(x, y, beta=2.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
def test_cuda_without_cuda_is_a_value_error():
    with pytest.raises(ValueError, match=r"device='cuda', but torch\.cuda\.is_available\(\) is False"):
        resolve_device("cuda")
