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
