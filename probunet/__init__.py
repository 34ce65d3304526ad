"""probunet: a small, tested PyTorch Probabilistic U-Net (Kohl et al., 2018).

The core works on any multi-annotator data (``data``, ``model``, ``train``,
``metrics``, ``evaluate``); ``probunet.toy`` holds the book's datasets with a
known truth and the measures that need it.
"""
from .data import MultiAnnotatorDataset, pad_to_multiple
from .latent import DiagonalGaussian, kl_divergence
from .model import ProbabilisticUNet
from .toy import ToyAmbiguousDataset, generate_toy, load_split, modes_of
from .unet import UNet

__version__ = "0.1.0"
__all__ = ["ProbabilisticUNet", "UNet", "MultiAnnotatorDataset", "pad_to_multiple", "ToyAmbiguousDataset",
           "generate_toy", "load_split", "modes_of", "DiagonalGaussian", "kl_divergence"]
