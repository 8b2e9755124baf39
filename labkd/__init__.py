"""labkd: an interactive, notebook-based teaching lab for knowledge distillation.

The library does the work, the notebooks tell the story:

- :mod:`labkd.data`: MNIST / Fashion-MNIST / digits as in-memory tensors, subsets, batches, jitter
- :mod:`labkd.models`: MLPs, CNNs, small ResNets, all exposing intermediate features
- :mod:`labkd.losses`: soft-target, distillation, logit-matching, hint and ensemble losses
- :mod:`labkd.objectives`: training objectives registered by name (``TrainConfig.loss``); each
  method is one class (:mod:`labkd.crd` adds contrastive distillation in one file)
- :mod:`labkd.train`: one ``fit`` for every method; :mod:`labkd.experiments`: cached training
- :mod:`labkd.metrics`, :mod:`labkd.plots`, :mod:`labkd.widgets`, :mod:`labkd.exercises`
"""

__version__ = "0.1.0"

from labkd.data import Data, Split, batches, load_data, random_shift  # noqa: E402
from labkd.experiments import Trained, train_model  # noqa: E402
from labkd.losses import (  # noqa: E402
    distillation_loss,
    ensemble_logits,
    ensemble_probs,
    hint_loss,
    logit_matching_loss,
    soft_target_loss,
)
from labkd.models import build_model, num_parameters, serialized_size  # noqa: E402
from labkd.train import TrainConfig, fit  # noqa: E402
from labkd import crd  # noqa: E402,F401  (registers loss="crd" wherever labkd is imported)

__all__ = [
    "Data", "Split", "TrainConfig", "Trained", "batches", "build_model", "distillation_loss",
    "ensemble_logits", "ensemble_probs", "fit", "hint_loss", "load_data", "logit_matching_loss",
    "num_parameters", "random_shift", "serialized_size", "soft_target_loss", "train_model",
]
