"""The book's helpers: plots, the latent explorer and the shipped weights.

Needs the extra ``pip install probunet[book]`` (matplotlib, ipywidgets).
The core and ``probunet.toy`` never import this floor.
"""

from .pretrained import WEIGHTS_DIR, available, describe, load_pretrained

__all__ = ["WEIGHTS_DIR", "available", "describe", "load_pretrained"]
