"""probunet: a small, tested PyTorch Probabilistic U-Net (Kohl et al., 2018)."""
from .data import ToyAmbiguousDataset, generate_toy, load_split, modes_of
from .latent import DiagonalGaussian, kl_divergence
from .model import ProbabilisticUNet
from .unet import UNet

__version__ = "0.1.0"
__all__ = ["ProbabilisticUNet", "UNet", "ToyAmbiguousDataset", "generate_toy", "load_split", "modes_of",
           "DiagonalGaussian", "kl_divergence"]
