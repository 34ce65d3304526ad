"""Tests of probunet.data: MultiAnnotatorDataset, its two readers, pad_to_multiple, and every bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from probunet import ProbabilisticUNet, UNet
from probunet.data import MultiAnnotatorDataset, pad_to_multiple
from probunet.train import fit

torch.set_num_threads(1)


def arrays(n=5, r=3, c=1, h=8, w=12, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, c, h, w), dtype=np.float32), rng.integers(0, k, (n, r, h, w)).astype(np.uint8)


def test_items_are_an_image_and_one_rater():
    images, ann = arrays()
    ds = MultiAnnotatorDataset(images, ann)
    assert len(ds) == 5 and ds.num_raters == 3 and ds.num_classes == 3
    assert ds.images.dtype == torch.float32 and ds.annotations.dtype == torch.uint8
    torch.manual_seed(0)
    seen = set()
    for _ in range(60):
        x, y = ds[2]
        assert x.shape == (1, 8, 12) and y.shape == (8, 12) and y.dtype == torch.long
        matches = [r for r in range(3) if np.array_equal(y.numpy(), ann[2, r])]
        assert matches  # always one of the stored raters
        seen.update(matches)
    assert seen == {0, 1, 2}  # random: every rater comes up (P(miss one) < 3 * (2/3)**60)


def test_random_rater_is_reproducible_and_a_fixed_rater_is_fixed():
    images, ann = arrays()
    ds = MultiAnnotatorDataset(images, ann)
    torch.manual_seed(4)
    a = [ds[0][1] for _ in range(10)]
    torch.manual_seed(4)
    b = [ds[0][1] for _ in range(10)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    fixed = MultiAnnotatorDataset(images, ann, annotation=1)
    assert all(np.array_equal(fixed[0][1].numpy(), ann[0, 1]) for _ in range(5))


def test_transform_is_applied_to_image_and_mask():
    images, ann = arrays()
    flip = lambda x, y: (x.flip(-1), y.flip(-1))  # noqa: E731
    x, y = MultiAnnotatorDataset(images, ann, annotation=0, transform=flip)[1]
    assert np.array_equal(x.numpy(), images[1][..., ::-1]) and np.array_equal(y.numpy(), ann[1, 0][..., ::-1])


def test_wide_labels_and_bool_masks_are_kept():
    images, _ = arrays(n=2, r=1)
    wide = np.zeros((2, 1, 8, 12), np.int64)
    wide[0, 0, 0, 0] = 300
    assert MultiAnnotatorDataset(images, wide, num_classes=301).annotations.dtype == torch.int64
    ds = MultiAnnotatorDataset(images, np.ones((2, 1, 8, 12), bool))
    assert ds.num_classes == 2 and ds[0][1].sum() == 96


IMAGES, ANN = arrays()
BAD = [
    (lambda: MultiAnnotatorDataset(IMAGES[:, 0], ANN), r"images must have 4 dims \(N, C, H, W\)"),
    (lambda: MultiAnnotatorDataset((IMAGES * 255).astype(np.uint8), ANN), "images must be float.*uint8.*/ 255"),
    (lambda: MultiAnnotatorDataset(np.where(IMAGES > 0.99, np.nan, IMAGES), ANN), "NaN or inf"),
    (lambda: MultiAnnotatorDataset(np.where(IMAGES > 0.99, np.inf, IMAGES), ANN), "NaN or inf"),
    (lambda: MultiAnnotatorDataset(IMAGES, ANN[:, 0]), r"annotations must have 4 dims \(N, R, H, W\)"),
    (lambda: MultiAnnotatorDataset(IMAGES, ANN[:, :0]), r"at least one rater per image \(R >= 1\)"),
    (lambda: MultiAnnotatorDataset(IMAGES, ANN.astype(np.float32)), "integer class indices.*float32"),
    (lambda: MultiAnnotatorDataset(IMAGES, ANN.astype(np.int64) - 1), "labels must be >= 0"),
    (lambda: MultiAnnotatorDataset(IMAGES, ANN, num_classes=2), r"labels must be in \[0, 1\] for num_classes=2, got max 2"),
    (lambda: MultiAnnotatorDataset(IMAGES[:4], ANN), "same N, H and W"),
    (lambda: MultiAnnotatorDataset(IMAGES[..., :8], ANN), "same N, H and W"),
    (lambda: MultiAnnotatorDataset(IMAGES, ANN, annotation=3), r"rater index in \[0, 2\]"),
    (lambda: MultiAnnotatorDataset(IMAGES, ANN, annotation="fresh"), "'random' or a rater index"),
    (lambda: MultiAnnotatorDataset(IMAGES, ANN, transform=3), "transform must be callable"),
    (lambda: MultiAnnotatorDataset(IMAGES.tolist(), ANN), "torch tensor or numpy array"),
]


@pytest.mark.parametrize("call, message", BAD)
def test_bad_input_says_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_from_npz_scales_integer_images(tmp_path):
    images, ann = arrays(n=4, r=2)
    grey = (images[:, 0] * 255).round().astype(np.uint8)  # (N, H, W)
    np.savez_compressed(tmp_path / "d.npz", images=grey, annotations=ann)
    ds = MultiAnnotatorDataset.from_npz(tmp_path / "d.npz", annotation=1)
    assert ds.images.shape == (4, 1, 8, 12) and torch.allclose(ds.images[:, 0], torch.from_numpy(grey / 255).float())
    assert ds.annotation == 1 and torch.equal(ds.annotations, torch.from_numpy(ann))


def test_from_npz_bad_files(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        MultiAnnotatorDataset.from_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="cannot read .*junk.npz"):
        MultiAnnotatorDataset.from_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "wrong.npz", images=np.zeros((1, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"has no arrays \['annotations'\]; it holds \['images'\]"):
        MultiAnnotatorDataset.from_npz(tmp_path / "wrong.npz")


def write_pngs(root, n=6, raters=("a", "b", "c"), size=16, seed=0, rgb=False):
    """n images with a bright square; each rater marks the square grown or shrunk by a pixel."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    truth = []
    for i in range(n):
        top, left = rng.integers(2, size - 8, 2)
        square = np.zeros((size, size), bool)
        square[top:top + 5, left:left + 5] = True
        image = np.clip(40 + 160 * square + rng.normal(0, 10, (size, size)), 0, 255).astype(np.uint8)
        Image.fromarray(np.stack([image] * 3, -1) if rgb else image).save(root / "images" / f"case{i:02d}.png")
        masks = []
        for j, r in enumerate(raters):
            m = np.zeros((size, size), np.uint8)
            grow = j - 1
            m[top - grow:top + 5 + grow, left - grow:left + 5 + grow] = 1
            Image.fromarray(m).save(root / "masks" / f"case{i:02d}_{r}.png")
            masks.append(m)
        truth.append((image, np.stack(masks)))
    return truth


def test_from_folders_reads_images_and_every_rater(tmp_path):
    truth = write_pngs(tmp_path)
    ds = MultiAnnotatorDataset.from_folders(tmp_path / "images", tmp_path / "masks")
    assert ds.ids == [f"case{i:02d}" for i in range(6)]
    assert ds.images.shape == (6, 1, 16, 16) and ds.annotations.shape == (6, 3, 16, 16)
    for i, (image, masks) in enumerate(truth):
        assert np.allclose(ds.images[i, 0].numpy(), image / 255)
        assert np.array_equal(ds.annotations[i].numpy(), masks)  # raters sorted by name: a, b, c


def test_from_folders_reads_rgb(tmp_path):
    write_pngs(tmp_path, n=2, rgb=True)
    assert MultiAnnotatorDataset.from_folders(tmp_path / "images", tmp_path / "masks").images.shape == (2, 3, 16, 16)


def test_from_folders_bad_files(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        MultiAnnotatorDataset.from_folders(tmp_path / "images", tmp_path / "masks")
    write_pngs(tmp_path, n=3)
    imgs, masks = tmp_path / "images", tmp_path / "masks"
    (masks / "case01_c.png").unlink()
    with pytest.raises(ValueError, match=r"image case01 has raters \['a', 'b'\].*same raters"):
        MultiAnnotatorDataset.from_folders(imgs, masks)
    for r in "ab":
        (masks / f"case01_{r}.png").unlink()
    with pytest.raises(ValueError, match="image case01.png has no masks"):
        MultiAnnotatorDataset.from_folders(imgs, masks)
    write_pngs(tmp_path, n=3)
    (masks / "stray_a.png").write_bytes((masks / "case00_a.png").read_bytes())
    with pytest.raises(ValueError, match="mask stray_a.png is not named <id>_<rater>.png"):
        MultiAnnotatorDataset.from_folders(imgs, masks)
    (masks / "stray_a.png").unlink()
    (masks / "case02_b.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match="cannot read .*case02_b.png as a PNG"):
        MultiAnnotatorDataset.from_folders(imgs, masks)
    write_pngs(tmp_path, n=3)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "case02_b.png")
    with pytest.raises(ValueError, match="mask case02_b.png is 8x8, its image case02.png 16x16"):
        MultiAnnotatorDataset.from_folders(imgs, masks)
    write_pngs(tmp_path, n=3)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(imgs / "case02.png")
    for r in "abc":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / f"case02_{r}.png")
    with pytest.raises(ValueError, match="all images must have the same size"):
        MultiAnnotatorDataset.from_folders(imgs, masks)


def test_a_model_trains_on_pngs_read_from_folders(tmp_path):
    """From PNG files on disk to a trained model: the loss falls far below its start."""
    write_pngs(tmp_path, n=8)
    ds = MultiAnnotatorDataset.from_folders(tmp_path / "images", tmp_path / "masks")
    torch.manual_seed(0)
    model = ProbabilisticUNet(channels=(8, 16), convs_per_block=1, latent_dim=2, fcomb_channels=8)
    history = fit(model, ds, steps=150, batch_size=4, lr=3e-3, device="cpu", progress=False)
    start, end = np.mean(history["recon"][:10]), np.mean(history["recon"][-10:])
    assert end < 0.25 * start, (start, end)
    # the trained model finds the square: its samples overlap the middle rater's mask
    masks = model.sample(ds.images, n=4).argmax(2)
    iou = ((masks == 1) & (ds.annotations[:, None, 1] == 1)).sum() / ((masks == 1) | (ds.annotations[:, None, 1] == 1)).sum()
    assert iou > 0.5


def test_pad_to_multiple():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    p = pad_to_multiple(x, 4)
    assert p.shape == (2, 3, 8, 8) and torch.equal(p[..., :5, :6], x) and p[..., 5:, :].abs().sum() == 0
    m = torch.ones(2, 7, 9, dtype=torch.uint8)
    pm = pad_to_multiple(m, 4)
    assert pm.shape == (2, 8, 12) and pm.dtype == torch.uint8 and pm.sum() == 2 * 7 * 9
    assert pad_to_multiple(x, 1) is x
    assert pad_to_multiple(torch.zeros(5, 6), 4, value=-1).min() == -1
    # padded images pass the model's size check, which the originals do not
    model = UNet(channels=(4, 8, 16), convs_per_block=1)
    with pytest.raises(ValueError, match="multiples of 2\\*\\*\\(levels-1\\) = 4"):
        model(torch.zeros(1, 1, 5, 6))
    assert model(pad_to_multiple(torch.zeros(1, 1, 5, 6), 4)).shape == (1, 2, 8, 8)
    for bad in (0, 2.0, -4):
        with pytest.raises(ValueError, match="multiple must be a positive int"):
            pad_to_multiple(x, bad)
    with pytest.raises(ValueError, match="at least 2 dims"):
        pad_to_multiple(torch.zeros(4), 4)


@pytest.mark.parametrize("make", [lambda: ProbabilisticUNet(channels=(4, 8)), lambda: UNet(channels=(4, 8))])
def test_uint8_images_get_a_value_error(make):
    model = make()
    x = torch.randint(0, 255, (2, 1, 8, 8), dtype=torch.uint8)
    with pytest.raises(ValueError, match="images must be float, got dtype torch.uint8.*/ 255"):
        model.sample(x) if isinstance(model, ProbabilisticUNet) else model(x)
    if isinstance(model, ProbabilisticUNet):
        with pytest.raises(ValueError, match="images must be float"):
            model.elbo(x, torch.zeros(2, 8, 8, dtype=torch.long))
