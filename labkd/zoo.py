"""The course's standard teachers, trained once and shared by every notebook through the cache.

>>> teacher = zoo.mnist_teacher(data, fast=fast)      # Hinton's 784-1200-1200-10, dropout, jitter

Because the cache key covers the data and the config, every notebook that calls this with the
same data and mode gets the same trained teacher back in about a second.
"""

from __future__ import annotations

from labkd.data import Data
from labkd.experiments import Trained, train_model
from labkd.train import TrainConfig


def teacher_config(fast: bool, seed: int = 0) -> TrainConfig:
    """Training recipe of the standard MLP teacher: SGD + Nesterov, cosine schedule, ±2-pixel jitter.

    Dropout nets learn slowly: 30 epochs gave 123 test errors, so the full recipe trains for 100
    (about 9 minutes on two quiet CPU cores; lesson 06 compares it with the paper's 67 errors).
    lr 0.1 diverges with this model.
    """
    if fast:
        return TrainConfig(epochs=2, batch_size=128, lr=0.05, jitter=2, seed=seed)
    return TrainConfig(epochs=100, batch_size=128, lr=0.05, jitter=2, seed=seed)


def mnist_teacher(data: Data, fast: bool = False, seed: int = 0, progress: bool | None = None) -> Trained:
    """Hinton et al.'s teacher (784-1200-1200-10, dropout 0.5, input dropout 0.2) trained with jitter."""
    return train_model("hinton_teacher", data, teacher_config(fast, seed), progress=progress,
                       label=f"standard teacher (hinton_teacher) seed={seed} on {data.name}{' fast' if fast else ''}")


def student_config(fast: bool, seed: int = 0, **changes) -> TrainConfig:
    """Training recipe for students: no augmentation, fewer epochs than the teacher."""
    base = TrainConfig(epochs=2 if fast else 15, batch_size=128, lr=0.05, seed=seed)
    return base.replace(**changes) if changes else base
