"""The book's toy data, whose truth is known, and the measures that need that truth.

The core of the package (``data``, ``model``, ``train``, ``metrics``, ``evaluate``)
works on any multi-annotator data; this floor adds datasets generated with a known
rater law, so that samples can be scored against the true distribution:

- ``shapes``: 32x32 images of 1-3 objects, each marked with a probability its brightness shows;
- ``lesions``: 64x64 LIDC-like lesions on a textured background, 4 raters who disagree on
  whether a faint lesion is there and on its boundary;
- ``truth``: :func:`evaluate` and :func:`summarize`, the generic scores plus mode
  frequencies, exact GED and calibration against the truth, and :func:`law_and_raters_tv`;
- ``retrain``: :func:`retrain`, a shipped model trained again from its stored recipe.
"""
from .lesions import generate_lesions, lesion_modes, lesion_path, load_lesions
from .shapes import ToyAmbiguousDataset, contrast_to_prob, generate_toy, load_split, modes_of
from .retrain import retrain
from .truth import evaluate, law_and_raters_tv, sample_truth, summarize

__all__ = ["ToyAmbiguousDataset", "contrast_to_prob", "evaluate", "generate_lesions", "generate_toy",
           "law_and_raters_tv", "lesion_modes", "lesion_path", "load_lesions", "load_split", "modes_of", "retrain",
           "sample_truth", "summarize"]
