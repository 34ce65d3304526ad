"""probunet: a small, tested PyTorch Probabilistic U-Net (Kohl et al., 2018).

Three floors, each using only the ones below it: the core (this package,
which ``import probunet`` loads alone: model, data, training, checkpoints,
metrics, evaluation), ``probunet.toy`` (datasets with a known truth and the
measures that need it) and ``probunet.book`` (plots, widgets, weights).
"""

from .checkpoint import load_model, register_model, save_checkpoint
from .data import MultiAnnotatorDataset, pad_to_multiple
from .evaluate import evaluate_annotations, sample_masks
from .latent import DiagonalGaussian, kl_divergence
from .model import ProbabilisticUNet
from .train import TrainConfig, fit, seed_everything
from .unet import UNet

__version__ = "0.2.0"
__all__ = ["DiagonalGaussian", "MultiAnnotatorDataset", "ProbabilisticUNet",
           "TrainConfig", "UNet", "evaluate_annotations", "fit",
           "kl_divergence", "load_model", "pad_to_multiple", "register_model",
           "sample_masks", "save_checkpoint", "seed_everything"]
