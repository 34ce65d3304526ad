import pytest
import torch

from probunet import ProbabilisticUNet
from probunet.evaluate import reconstruct_masks

torch.set_num_threads(1)


def test_reconstruct_masks_decodes_each_annotation_through_the_posterior_mean():
    torch.manual_seed(0)
    model = ProbabilisticUNet(channels=(4, 8), convs_per_block=1, latent_dim=2).eval()
    images = torch.rand(3, 1, 16, 16)
    annotations = torch.randint(0, 2, (3, 4, 16, 16), dtype=torch.uint8)
    masks = reconstruct_masks(model, images, annotations, batch_size=5)
    assert masks.shape == (3, 4, 16, 16) and masks.dtype == torch.uint8
    for i in range(3):
        for r in range(4):
            expected = model.reconstruct(images[i:i + 1], annotations[i:i + 1, r].long(), use_posterior_mean=True)
            assert torch.equal(masks[i, r], expected[0, 0].argmax(0).to(torch.uint8))


def test_evaluate_annotations_on_any_multi_annotator_dataset():
    from probunet.data import MultiAnnotatorDataset
    from probunet.evaluate import evaluate_annotations, sample_masks
    from probunet.metrics import annotation_scores

    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 1, 16, 16, generator=g)
    annotations = torch.randint(0, 3, (6, 4, 16, 16), generator=g)
    ds = MultiAnnotatorDataset(images, annotations)
    torch.manual_seed(0)
    model = ProbabilisticUNet(num_classes=3, channels=(4, 8), convs_per_block=1, latent_dim=2, fcomb_channels=8)
    torch.manual_seed(1)
    out = evaluate_annotations(model, ds, n=5, batch_size=4)
    torch.manual_seed(1)
    samples = sample_masks(model, images, n=5, batch_size=4)
    assert out == annotation_scores(samples, annotations)
    assert set(out["per_class"]) == {1, 2} and 0 <= out["hm_iou"] <= 1
    assert evaluate_annotations(model, ds, samples=samples[:, :2]) == annotation_scores(samples[:, :2], annotations)
    with pytest.raises(ValueError, match=r"needs .images .* and .annotations .*; TensorDataset has no .images"):
        evaluate_annotations(model, torch.utils.data.TensorDataset(images))


def test_the_toy_evaluate_adds_the_truth_to_the_generic_scores():
    from probunet.evaluate import evaluate_annotations
    from probunet.toy import ToyAmbiguousDataset, evaluate, load_split

    ds = ToyAmbiguousDataset(arrays={k: v[:8] for k, v in load_split("test").items()})
    torch.manual_seed(0)
    model = ProbabilisticUNet(channels=(4, 8), convs_per_block=1, latent_dim=2, fcomb_channels=8)
    torch.manual_seed(3)
    toy = evaluate(model, ds, n=6)
    torch.manual_seed(3)
    generic = evaluate_annotations(model, ds, n=6)
    assert {k: toy[k] for k in generic} == generic
    assert {"ged_exact", "mode_tv", "other_fraction", "calibration_error"} <= set(toy)
