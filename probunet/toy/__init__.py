"""Datasets with a known truth, and the measures that need that truth.

The core of the package works on any multi-annotator data; this floor adds
data generated with a known law of masks, so that samples can be scored
against the true distribution rather than a handful of raters:

- ``shapes``: 32x32 images of 1-3 objects, each marked with a probability
  that its brightness shows (:class:`ToyAmbiguousDataset`);
- ``exclusive``: 32x32 images of 3 such objects, of which every rater marks
  exactly one, chosen with the probability its brightness shows
  (:class:`ExclusiveObjectsDataset`);
- ``lesions``: 64x64 LIDC-like lesions, 4 raters who disagree on whether a
  faint lesion is there and on its boundary;
- ``lidc_like``: the lesions written in LIDC-IDRI's two public layouts, for
  ``probunet.lidc`` and the command line;
- ``cvae``: a conditional VAE in two dimensions (:class:`ToyCVAE`);
- ``truth``: exact GED, mode frequencies, calibration and
  :func:`summarize` of them all, against the known law;
- ``recipe``: :data:`RECIPE`, the one recipe that trains every shipped toy
  model, and :func:`retrain`, which trains such a model again.
"""

from . import lesions
from .cvae import ToyCVAE
from .exclusive import ExclusiveObjectsDataset, generate_exclusive
from .lesions import generate_lesions, lesion_modes, lesion_path, load_lesions
from .recipe import RECIPE, retrain, toy_train_set
from .shapes import (ToyAmbiguousDataset, contrast_to_prob, generate_toy,
                     load_split, modes_of)
from .truth import (assign_modes, calibration_curve, calibration_error,
                    evaluate, ged_exact, law_and_raters_tv, mode_frequencies,
                    mode_tv, object_frequencies, sample_truth, summarize,
                    true_diversity)

__all__ = [
    "ExclusiveObjectsDataset", "RECIPE", "ToyAmbiguousDataset", "ToyCVAE",
    "assign_modes", "calibration_curve", "calibration_error",
    "contrast_to_prob", "evaluate", "ged_exact", "generate_exclusive",
    "generate_lesions", "generate_toy", "law_and_raters_tv",
    "lesion_modes", "lesion_path", "lesions", "load_lesions", "load_split",
    "mode_frequencies", "mode_tv", "modes_of", "object_frequencies",
    "retrain", "sample_truth", "summarize", "toy_train_set",
    "true_diversity",
]
