"""The Probabilistic U-Net's rivals, with its protocol: ``loss(x, y)`` (a
dict whose ``"total"`` is minimised), ``sample(x, n)`` -> logits
(B, n, K, H, W) and ``forward(x)`` -> one prediction (B, K, H, W).

The four baselines of Kohl et al. (2018) and the Stochastic Segmentation
Network (Monteiro et al. 2020). Each is built on the package's U-Net, trains
with :func:`probunet.fit`, is scored by :func:`probunet.evaluate_annotations`
and saves and loads through the one checkpoint format. This floor sits
beside the core: it imports the core and nothing above it.
"""

from .dropout import DropoutUNet
from .ensemble import UNetEnsemble
from .image2image import Image2ImageVAE
from .multihead import MultiHeadUNet
from .ssn import StochasticSegmentationNetwork

__all__ = ["DropoutUNet", "Image2ImageVAE", "MultiHeadUNet",
           "StochasticSegmentationNetwork", "UNetEnsemble"]
