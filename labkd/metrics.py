"""Evaluation on in-memory splits: accuracy, errors, agreement, KL, calibration, entropy.

Functions take logits (N, C) — get them with :func:`predict_logits` — so one forward pass
serves every metric.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkd.losses import check_logits, check_pair, check_targets, check_temperature
from labkd.threads import fixed_threads


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """Logits (N, C) of ``model`` on images x (N, ...) in eval mode; the mode is restored.

    Runs where the model's parameters (or buffers) are; a model with neither as tensors, such as
    a dynamically quantized int8 MLP, runs on the CPU."""
    was_training = model.training
    model.eval()
    first = next(model.parameters(), None)
    if first is None:
        first = next(model.buffers(), None)
    device = first.device if first is not None else torch.device("cpu")
    with fixed_threads():  # the same logits whatever the caller's thread count
        out = [model(x[i:i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out).float() if out else torch.empty(0)


def accuracy(logits: Tensor, targets: Tensor) -> float:
    """Fraction of rows whose argmax is the target."""
    check_targets(targets, check_logits(logits, "logits"))
    return float((logits.argmax(1) == targets.to(logits.device)).float().mean())


def error_count(logits: Tensor, targets: Tensor) -> int:
    """Number of misclassified examples (Hinton et al. report MNIST results this way)."""
    check_targets(targets, check_logits(logits, "logits"))
    return int((logits.argmax(1) != targets.to(logits.device)).sum())


def errors_per_class(logits: Tensor, targets: Tensor) -> Tensor:
    """Misclassified examples of each true class, shape (C,)."""
    check_targets(targets, check_logits(logits, "logits"))
    wrong = logits.argmax(1) != targets.to(logits.device)
    return torch.bincount(targets[wrong.cpu()].cpu(), minlength=logits.shape[1])


def agreement(logits_a: Tensor, logits_b: Tensor) -> float:
    """Top-1 agreement: fraction of examples on which two models predict the same class."""
    check_pair(logits_a, logits_b, ("logits_a", "logits_b"))
    return float((logits_a.argmax(1) == logits_b.argmax(1)).float().mean())


def mean_kl(teacher_logits: Tensor, student_logits: Tensor, temperature: float = 1.0) -> float:
    """Mean KL(teacher_T || student_T) over examples (Stanton et al.'s fidelity measure)."""
    check_pair(student_logits, teacher_logits)
    t = check_temperature(temperature)
    return float(F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                          reduction="batchmean", log_target=True))


def predictive_entropy(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Entropy in nats of softmax(logits/T) for each row, shape (N,)."""
    check_logits(logits, "logits")
    log_p = F.log_softmax(logits / check_temperature(temperature), dim=1)
    return -(log_p.exp() * log_p).sum(1)


def expected_calibration_error(logits: Tensor, targets: Tensor, n_bins: int = 15) -> float:
    """ECE: the confidence-weighted gap between confidence and accuracy over ``n_bins`` equal bins."""
    check_targets(targets, check_logits(logits, "logits"))
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    confidence, predicted = F.softmax(logits, 1).max(1)
    correct = (predicted == targets.to(logits.device)).float()
    bins = torch.clamp((confidence * n_bins).long(), max=n_bins - 1)
    ece = torch.zeros((), dtype=torch.float64)
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.float().mean().double() * (confidence[mask].mean() - correct[mask].mean()).abs().double()
    return float(ece)


def first_layer_norm(model: object) -> float:
    """L2 norm of the first weight matrix. For a :class:`labkd.experiments.Trained` run, of its
    model rebuilt from its seed, i.e. *before* training: equal numbers prove that two runs started
    from identical weights. For an ``nn.Module``, of its weights as they are."""
    if not isinstance(model, nn.Module):
        spec = getattr(getattr(model, "model", None), "spec", None)
        if spec is None:
            raise TypeError(f"model must be an nn.Module or a trained run (labkd Trained), got {type(model).__name__}")
        from labkd.models import rebuild  # models sits above metrics: import on use

        model = rebuild(spec)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    if not weights:
        raise ValueError("model has no weight matrix")
    return float(weights[0].detach().norm())
