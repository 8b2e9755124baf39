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


#: Lesson 06's paper-style teacher (Hinton et al. 2015, §3; Srivastava et al. 2014, §5.1 and appendix B.1):
#: dropout (the ``hinton_teacher`` preset), a max-norm constraint on each unit's incoming weights,
#: ±2-pixel jitter, linear warm-up then cosine decay. Chosen on the 55,000/5,000 validation split with
#: development seed 0 (``labkd.hinton.VALIDATION_RUNS``); lesson 06 trains it on all 60,000 images.
PAPER_TEACHER_RECIPE = {"epochs": 30, "batch_size": 128, "lr": 0.05, "warmup_epochs": 2, "max_norm": 3.5, "jitter": 2}


def paper_teacher_config(fast: bool, seed: int = 0) -> TrainConfig:
    """Training recipe of lesson 06's paper-style teacher (:data:`PAPER_TEACHER_RECIPE`); fast mode
    keeps everything but trains 2 epochs with 1 of warm-up. Not the standard teacher
    (:func:`teacher_config`), which other lessons share."""
    recipe = dict(PAPER_TEACHER_RECIPE, seed=seed)
    if fast:
        recipe.update(epochs=2, warmup_epochs=1)
    return TrainConfig(**recipe)


def mnist_paper_teacher(data: Data, fast: bool = False, seed: int = 0, progress: bool | None = None) -> Trained:
    """Lesson 06's teacher: ``hinton_teacher`` (784-1200-1200-10, dropout 0.5, input dropout 0.2)
    with :func:`paper_teacher_config` (max-norm, jitter, warm-up then cosine)."""
    return train_model("hinton_teacher", data, paper_teacher_config(fast, seed), progress=progress,
                       label=f"lesson 06 paper-style teacher (hinton_teacher, max-norm) seed={seed} on {data.name}"
                             f"{' (all training images)' if data.spec.get('all_training') else ''}{' fast' if fast else ''}")
