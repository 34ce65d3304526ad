"""LIDC-IDRI's two public forms: the HPU-Net crops and the port's pickle,
read from LIDC-like lesions written in exactly those layouts."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from probunet import MultiAnnotatorDataset
from probunet.lidc import (RandomCropFlip, center_crop, load_pickle_safely,
                           read_lidc_crops, split_by_group)
from probunet.toy.lidc_like import (lidc_like, write_lidc_crops,
                                    write_lidc_pickle)


@pytest.fixture(scope="module")
def lesions():
    return lidc_like(12, seed=5, per_patient=3)


@pytest.fixture
def crops(tmp_path, lesions):
    arrays, patients = lesions
    write_lidc_crops(tmp_path, "train", arrays, patients)
    return tmp_path


@pytest.mark.parametrize("first_grader", [0, 1])
def test_crops_read_back_exactly(tmp_path, lesions, first_grader):
    arrays, patients = lesions
    write_lidc_crops(tmp_path, "val", arrays, patients, first_grader)
    ds = MultiAnnotatorDataset.from_lidc_crops(tmp_path, "val", crop=None,
                                               progress=False)
    assert ds.images.shape == (12, 1, 180, 180)
    assert ds.images.dtype == torch.float32
    assert ds.annotations.dtype == torch.uint8  # 4x smaller than int64
    expected = torch.from_numpy(arrays["images"][:, None] / np.float32(255))
    assert torch.equal(ds.images, expected)
    assert torch.equal(ds.annotations,
                       torch.from_numpy(arrays["annotations"]))
    assert ds.groups == patients and ds.num_raters == 4
    assert ds.ids[4] == f"{patients[4]}/z-00004.0_c0"
    assert ds.num_classes == 2


def test_evaluation_takes_the_centre_crop(crops, lesions):
    ds = MultiAnnotatorDataset.from_lidc_crops(crops, "train", crop=128,
                                               progress=False)
    assert ds.images.shape == (12, 1, 128, 128) and ds.transform is None
    full = torch.from_numpy(lesions[0]["annotations"])
    assert torch.equal(ds.annotations, full[..., 26:154, 26:154])
    image, mask = ds[0]
    assert image.shape == (1, 128, 128) and mask.dtype == torch.int64


def test_training_draws_random_windows_and_flips(crops):
    ds = MultiAnnotatorDataset.from_lidc_crops(crops, "train", augment=True,
                                               progress=False)
    assert ds.images.shape[-1] == 180  # the whole tiles are kept
    torch.manual_seed(0)
    first = [ds[0][0] for _ in range(20)]
    assert all(x.shape == (1, 128, 128) for x in first)
    assert len({x.sum().item() for x in first}) > 10
    torch.manual_seed(0)
    assert all(torch.equal(a, ds[0][0]) for a in first)  # seeded


def test_one_window_and_flip_for_the_image_and_its_four_masks():
    torch.manual_seed(1)
    image = torch.rand(1, 180, 150)
    masks = torch.stack([(image[0] > t).long() for t in (.2, .4, .6, .8)])
    crop = RandomCropFlip(128)
    flips = set()
    for _ in range(40):
        x, y = crop(image, masks)
        assert x.shape == (1, 128, 128) and y.shape == (4, 128, 128)
        for k, t in enumerate((.2, .4, .6, .8)):
            assert torch.equal(y[k], (x[0] > t).long())
        # where did the window come from, and which way round is it?
        for fy in (False, True):
            for fx in (False, True):
                z = x.flip(-1) if fx else x
                z = z.flip(-2) if fy else z
                found = (image.unfold(1, 128, 1).unfold(2, 128, 1)
                         == z[:, None, None]).flatten(-2).all(-1)
                if found.any():
                    flips.add((fy, fx))
    assert flips == {(False, False), (False, True), (True, False),
                     (True, True)}
    x, y = RandomCropFlip(128, flips=False)(image, masks)
    assert (image.unfold(1, 128, 1).unfold(2, 128, 1)
            == x[:, None, None]).flatten(-2).all(-1).any()


def test_center_crop_and_crop_errors():
    x = torch.arange(36.).reshape(1, 6, 6)
    assert torch.equal(center_crop(x, 2), x[:, 2:4, 2:4])
    with pytest.raises(ValueError, match="crop size"):
        center_crop(x, 7)
    with pytest.raises(ValueError, match="cannot crop"):
        RandomCropFlip(8)(x, x[0])
    with pytest.raises(ValueError, match="positive int"):
        RandomCropFlip(0)


def test_a_missing_grader_file_is_named(crops):
    gone = crops / "train/gt" / "LIDC-LIKE-0005-0001" / "z-00004.0_c0_l2.png"
    gone.unlink()
    with pytest.raises(ValueError, match=f"missing grader file {gone}"):
        read_lidc_crops(crops, "train", progress=False)


def test_an_image_without_masks_is_named(crops):
    for p in (crops / "train/gt/LIDC-LIKE-0005-0000").glob("z-00001*"):
        p.unlink()
    with pytest.raises(ValueError, match="z-00001.0_c0.png has no masks"):
        read_lidc_crops(crops, "train", progress=False)


def test_masks_without_an_image_are_named(crops):
    os.remove(crops / "train/images/LIDC-LIKE-0005-0003/z-00011.0_c0.png")
    with pytest.raises(ValueError, match="z-00011.0_c0_l0.png have no image"):
        read_lidc_crops(crops, "train", progress=False)


def test_a_tile_of_another_size_is_named(crops):
    path = crops / "train/images/LIDC-LIKE-0005-0002/z-00007.0_c0.png"
    Image.fromarray(np.zeros((170, 180), np.uint8)).save(path)
    with pytest.raises(ValueError, match=f"{path} is 170x180"):
        read_lidc_crops(crops, "train", progress=False)
    mask = crops / "train/gt/LIDC-LIKE-0005-0002/z-00008.0_c0_l3.png"
    Image.fromarray(np.zeros((180, 181), np.uint8)).save(mask)
    os.remove(path)
    for p in path.parent.parent.parent.glob("gt/*/z-00007*"):
        p.unlink()
    with pytest.raises(ValueError, match=f"{mask} is 180x181"):
        read_lidc_crops(crops, "train", progress=False)


def test_a_mask_that_is_not_binary_is_named(crops):
    mask = crops / "train/gt/LIDC-LIKE-0005-0000/z-00000.0_c0_l1.png"
    Image.fromarray(np.full((180, 180), 7, np.uint8)).save(mask)
    with pytest.raises(ValueError, match=f"{mask} must be a binary mask"):
        read_lidc_crops(crops, "train", progress=False)


def test_missing_splits_and_empty_folders(crops):
    with pytest.raises(ValueError, match="no such folder.*test"):
        read_lidc_crops(crops, "test", progress=False)
    with pytest.raises(ValueError, match="split must be one of"):
        read_lidc_crops(crops, "validation", progress=False)
    (crops / "val/images").mkdir(parents=True)
    (crops / "val/gt").mkdir()
    with pytest.raises(ValueError, match="no <patient>/<name>.png images"):
        read_lidc_crops(crops, "val", progress=False)


def test_grader_names_other_than_the_two_numberings(crops):
    p = crops / "train/gt/LIDC-LIKE-0005-0000/z-00000.0_c0_l3.png"
    p.rename(p.with_name("z-00000.0_c0_l7.png"))
    with pytest.raises(ValueError, match="numbered.*l7"):
        read_lidc_crops(crops, "train", progress=False)


# the pickle ------------------------------------------------------------------
def test_pickle_reads_back_and_merges_a_folder(tmp_path, lesions):
    arrays, patients = lesions
    half = {k: v[:6] for k, v in arrays.items()}
    rest = {k: v[6:] for k, v in arrays.items()}
    write_lidc_pickle(tmp_path / "a.pickle", half, patients[:6])
    write_lidc_pickle(tmp_path / "b.pickle", rest, patients[6:])
    ds = MultiAnnotatorDataset.from_lidc_pickle(tmp_path, progress=False)
    assert ds.images.shape == (12, 1, 180, 180)
    assert torch.equal(ds.annotations,
                       torch.from_numpy(arrays["annotations"]))
    assert torch.allclose(
        ds.images, torch.from_numpy(arrays["images"][:, None] / 255.0)
        .float())
    assert ds.groups == patients
    one = MultiAnnotatorDataset.from_lidc_pickle(tmp_path / "b.pickle",
                                                 crop=64, progress=False)
    assert one.images.shape == (6, 1, 64, 64) and one.groups == patients[6:]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_pickles_of_every_protocol_load(tmp_path, protocol):
    data = {"x": {"image": np.linspace(0, 1, 16).reshape(4, 4),
                  "masks": [np.eye(4, dtype=bool)] * 4,
                  "series_uid": "1.2.3"}}
    path = tmp_path / "p.pickle"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    got = load_pickle_safely(path)
    assert np.array_equal(got["x"]["image"], data["x"]["image"])
    ds = MultiAnnotatorDataset.from_lidc_pickle(path, progress=False)
    assert ds.annotations[0, 2].tolist() == np.eye(4).tolist()


class Planted:
    """What an attacker ships: unpickling it calls open(marker, 'w')."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "lidc.pickle"
    path.write_bytes(pickle.dumps({"x": {"image": Planted(marker)}}))
    pickle.loads(path.read_bytes()).get("x")["image"].close()
    assert marker.exists()  # the plain unpickler runs it
    marker.unlink()
    with pytest.raises(ValueError, match="io.open: refused"):
        MultiAnnotatorDataset.from_lidc_pickle(path, progress=False)
    assert not marker.exists()


@pytest.mark.parametrize("item, message", [
    ({"image": np.zeros((4, 4))}, "expected a dict with"),
    ({"image": np.zeros((4, 4)), "masks": [np.zeros((4, 4))] * 3,
      "series_uid": "s"}, "3 masks, expected 4"),
    ({"image": np.full((4, 4), 2.0), "masks": [np.zeros((4, 4))] * 4,
      "series_uid": "s"}, r"values must be in \[0, 1\]"),
    ({"image": np.zeros((4, 4)), "masks": [np.zeros((4, 5))] * 4,
      "series_uid": "s"}, r"mask 0 is \(4, 5\)"),
    ({"image": np.zeros((4, 4)), "masks": [np.full((4, 4), 3)] * 4,
      "series_uid": "s"}, "must be a binary mask"),
])
def test_malformed_pickle_items_are_named(tmp_path, item, message):
    path = tmp_path / "bad.pickle"
    path.write_bytes(pickle.dumps({"key7": item}))
    with pytest.raises(ValueError, match=message) as err:
        MultiAnnotatorDataset.from_lidc_pickle(path, progress=False)
    assert str(path) in str(err.value)


def test_broken_and_missing_pickles(tmp_path):
    path = tmp_path / "cut.pickle"
    path.write_bytes(pickle.dumps({"a": np.zeros(100)})[:50])
    with pytest.raises(ValueError, match="cannot read .*cut.pickle"):
        MultiAnnotatorDataset.from_lidc_pickle(path, progress=False)
    with pytest.raises(ValueError, match="no .pickle files"):
        MultiAnnotatorDataset.from_lidc_pickle(tmp_path / "..",
                                               progress=False)
    with pytest.raises(ValueError, match="no such file"):
        MultiAnnotatorDataset.from_lidc_pickle(tmp_path / "x.pickle",
                                               progress=False)


# splits by patient -----------------------------------------------------------
def test_split_by_group_keeps_every_patient_in_one_split():
    groups = [f"p{i % 23}" for i in range(200)]
    parts = split_by_group(groups, (0.6, 0.2, 0.2), seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(200))
    seen = [{groups[i] for i in part} for part in parts]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert [len(s) for s in seen] == [14, 4, 5]  # of 23 patients
    again = split_by_group(groups, (0.6, 0.2, 0.2), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = split_by_group(groups, (0.6, 0.2, 0.2), seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def test_split_by_group_rejects_bad_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_group(["a", "b"], (0.5, 0.6))
    with pytest.raises(ValueError, match="positive"):
        split_by_group(["a", "b"], (1.0, 0.0))
    with pytest.raises(ValueError, match="2 groups cannot fill 3"):
        split_by_group(["a", "b", "a"], (0.4, 0.3, 0.3))


def test_subset_keeps_items_ids_groups_and_options(crops, lesions):
    ds = MultiAnnotatorDataset.from_lidc_crops(crops, "train", augment=True,
                                               progress=False)
    part = ds.subset([3, 0, 7])
    assert torch.equal(part.images, ds.images[[3, 0, 7]])
    assert part.groups == [lesions[1][i] for i in (3, 0, 7)]
    assert part.ids == [ds.ids[i] for i in (3, 0, 7)]
    assert part.transform is ds.transform and len(ds) == 12
    with pytest.raises(ValueError, match="non-empty"):
        ds.subset([])
