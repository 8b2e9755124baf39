r"""Exercises of lesson 06 (Hinton et al.'s MNIST experiments).

- ``teacher_soft_targets(teacher, images, temperature)``: the soft targets a student learns from,
  taken from a teacher with dropout (eval mode, no gradients, softened by T).
- ``soft_target_gradient(student_logits, teacher_logits, temperature)``: the gradient of
  :math:`T^2\,\mathrm{KL}` with respect to the student's logits, the quantity that becomes logit
  matching at high temperature (§2.1).
"""

from __future__ import annotations


import torch
from torch import Tensor

from labkd.exercises import ExerciseFailed, close, exercise
from labkd.losses import soft_target_loss

# --------------------------------------------------------------------------------------------
# Exercise 1: the soft targets of a dropout teacher


def teacher_soft_targets(teacher: torch.nn.Module, images: Tensor, temperature: float) -> Tensor:
    r"""Reference: the frozen teacher's soft targets :math:`p = \mathrm{softmax}(v/T)` on ``images``:
    eval mode (dropout off — the whole "mean network" of §3 of the paper, not one random thinned
    net), no gradients, softened by ``temperature``. images (N, ...) -> (N, C) probabilities."""
    teacher.eval()
    with torch.no_grad():
        return torch.softmax(teacher(images) / temperature, dim=-1)


def _dropout_on(teacher: torch.nn.Module, images: Tensor, temperature: float) -> Tensor:
    teacher.train()
    with torch.no_grad():
        return torch.softmax(teacher(images) / temperature, dim=-1)


def _unsoftened(teacher: torch.nn.Module, images: Tensor, temperature: float) -> Tensor:
    teacher.eval()
    with torch.no_grad():
        return torch.softmax(teacher(images), dim=-1)


def _logits(teacher: torch.nn.Module, images: Tensor, temperature: float) -> Tensor:
    teacher.eval()
    with torch.no_grad():
        return teacher(images) / temperature


def _with_gradients(teacher: torch.nn.Module, images: Tensor, temperature: float) -> Tensor:
    teacher.eval()
    return torch.softmax(teacher(images) / temperature, dim=-1)


def _multiplied(teacher: torch.nn.Module, images: Tensor, temperature: float) -> Tensor:
    teacher.eval()
    with torch.no_grad():
        return torch.softmax(teacher(images) * temperature, dim=-1)


class _DropoutTeacher(torch.nn.Module):
    """A tiny teacher with heavy dropout, like the paper's (and the course's) 1200-1200 net."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.fc1, self.fc2 = torch.nn.Linear(6, 24), torch.nn.Linear(24, 4)
        self.drop = torch.nn.Dropout(0.5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


@exercise("teacher_soft_targets", "Exercise 1: the soft targets of a dropout teacher", teacher_soft_targets,
          wrong_answers=(_dropout_on, _unsoftened, _logits, _with_gradients, _multiplied))
def check_teacher_soft_targets(candidate) -> None:
    images = torch.randn(5, 6, generator=torch.Generator().manual_seed(8))
    teacher = _DropoutTeacher()
    teacher.train()  # as a teacher may be handed over, fresh from its own training
    t = 4.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        out = candidate(teacher, images.clone(), t)
    if not isinstance(out, Tensor) or out.shape != (5, 4):
        raise ExerciseFailed(f"return a tensor of shape (N, C) = (5, 4), one row of probabilities per image; got "
                             f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}.")
    want = teacher_soft_targets(_DropoutTeacher(), images, t)
    if not torch.allclose(out.sum(dim=-1).detach(), torch.ones(5), atol=1e-4):
        if close(out.detach(), _logits(_DropoutTeacher(), images, t), atol=1e-4):
            raise ExerciseFailed("these are softened logits, not probabilities: apply a softmax over the classes.")
        raise ExerciseFailed("each row should be a probability distribution (summing to 1): softmax over dim=-1.")
    if teacher.training or not close(out.detach(), want, atol=1e-5):
        if teacher.training:
            raise ExerciseFailed("the teacher is still in train mode, so every call drops a random half of its hidden "
                                 "units and its soft targets are noise around the real ones: call teacher.eval() "
                                 "first. In eval mode a dropout net gives the averaged prediction of all its "
                                 "thinned nets — the ensemble the paper distils (§3).")
        if close(out.detach(), _unsoftened(_DropoutTeacher(), images, t), atol=1e-5):
            raise ExerciseFailed("these are the T = 1 probabilities: divide the logits by the temperature before the "
                                 "softmax.")
        if close(out.detach(), _multiplied(_DropoutTeacher(), images, t), atol=1e-5):
            raise ExerciseFailed("you multiplied the logits by T, which sharpens the targets: DIVIDE by T to soften "
                                 "them.")
        raise ExerciseFailed("your soft targets differ from softmax(teacher(images) / T) computed in eval mode.")
    if out.requires_grad:
        raise ExerciseFailed("the targets carry gradients back into the teacher: compute them under "
                             "`with torch.no_grad():` — the teacher is frozen while the student learns.")


# --------------------------------------------------------------------------------------------
# Exercise 2: the soft-target gradient


def soft_target_gradient(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    r"""Reference: :math:`T\,(\mathrm{softmax}(z/T) - \mathrm{softmax}(v/T))` per example, the gradient of
    :math:`T^2\,\mathrm{KL}(\mathrm{softmax}(v/T)\,\|\,\mathrm{softmax}(z/T))` with respect to z.
    (N, C), (N, C), T -> (N, C)."""
    t = temperature
    return t * (torch.softmax(student_logits / t, dim=-1) - torch.softmax(teacher_logits / t, dim=-1))


def _without_t2(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    t = temperature
    return (torch.softmax(student_logits / t, dim=-1) - torch.softmax(teacher_logits / t, dim=-1)) / t


def _t_squared(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    t = temperature
    return t * t * (torch.softmax(student_logits / t, dim=-1) - torch.softmax(teacher_logits / t, dim=-1))


def _sign_flipped(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    t = temperature
    return t * (torch.softmax(teacher_logits / t, dim=-1) - torch.softmax(student_logits / t, dim=-1))


def _no_softening(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    return temperature * (torch.softmax(student_logits, dim=-1) - torch.softmax(teacher_logits, dim=-1))


def _autograd_reference(z: Tensor, v: Tensor, t: float) -> Tensor:
    """N times the autograd gradient of the library's batch-mean loss: per-example gradients."""
    z = z.clone().requires_grad_(True)
    soft_target_loss(z, v, t).backward()
    return z.grad * len(z)


@exercise("soft_target_gradient", "Exercise 2: the gradient of the soft-target loss", soft_target_gradient,
          wrong_answers=(_without_t2, _t_squared, _sign_flipped, _no_softening))
def check_soft_target_gradient(candidate) -> None:
    z = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.3, 0.2, -0.4, 1.5]], dtype=torch.float64)
    v = torch.tensor([[6.0, 1.0, -2.0, 0.0], [-1.0, 4.0, 0.0, 2.0]], dtype=torch.float64)
    for t in (1.0, 4.0):
        got = candidate(z.clone(), v.clone(), t)
        if not isinstance(got, Tensor) or got.shape != z.shape:
            raise ExerciseFailed(f"return a tensor shaped like the logits, {tuple(z.shape)}: one gradient entry per "
                                 f"logit; got {getattr(got, 'shape', type(got).__name__)}.")
        want = _autograd_reference(z, v, t)
        if close(got, want, atol=1e-6):
            continue
        at = f"At T = {t:g}"
        if t == 1.0 and close(got, -want, atol=1e-6):
            raise ExerciseFailed(f"{at} the sign is reversed: the gradient of the loss points *away* from the teacher, "
                                 f"softmax(z/T) − softmax(v/T) (student minus teacher), so that a descent step moves "
                                 f"the student towards the teacher.")
        if t != 1.0 and close(got, want / t**2, atol=1e-6):
            raise ExerciseFailed(f"{at} your gradient is T² times too small: that is the gradient of the KL alone. "
                                 f"The loss is T²·KL, and the chain rule through z/T gives one 1/T, so the result is "
                                 f"T·(q − p).")
        if t != 1.0 and close(got, want * t, atol=1e-6):
            raise ExerciseFailed(f"{at} your gradient is T times too large: T² from the loss, but the chain rule "
                                 f"through z/T divides by T once, so the result is T·(q − p), not T²·(q − p).")
        if t != 1.0 and close(got, t * (torch.softmax(z, -1) - torch.softmax(v, -1)), atol=1e-6):
            raise ExerciseFailed(f"{at} the probabilities must be softened: q = softmax(z/T) and p = softmax(v/T), "
                                 f"both divided by T before the softmax.")
        raise ExerciseFailed(f"{at} expected {[[round(x, 4) for x in row] for row in want.tolist()]}, got "
                             f"{[[round(float(x), 4) for x in row] for row in got.tolist()]}. The formula is "
                             f"T·(softmax(z/T) − softmax(v/T)), row by row.")
    if not close(candidate(z, z.clone(), 3.0), torch.zeros_like(z), atol=1e-9):
        raise ExerciseFailed("when the student's logits equal the teacher's the gradient must be zero.")


def dropout_noise(teacher: torch.nn.Module, images: Tensor, temperature: float, soft_targets=teacher_soft_targets) -> str:
    """Lesson 06, after Exercise 1: how far a dropout teacher's train-mode outputs are from its
    soft targets (``soft_targets``, the student's function or the reference) on ``images``, in
    words. Leaves the teacher in eval mode."""
    from labkd.losses import check_temperature

    t = check_temperature(temperature)
    p = soft_targets(teacher, images, t)
    teacher.train()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        noisy = [torch.softmax(teacher(images) / t, dim=-1) for _ in range(2)]
    teacher.eval()
    flips = float((noisy[0].argmax(1) != noisy[1].argmax(1)).float().mean())
    kl_bits = float((p * (p.clamp_min(1e-12).log2() - noisy[0].clamp_min(1e-12).log2())).sum(1).mean())
    return (f"on {len(images):,} training images at T = {t:g}: two train-mode calls of the teacher pick different "
            f"top classes on {flips:.2%} of them, and a train-mode call is on average {kl_bits:.3f} bits "
            f"(KL(p ‖ noisy p)) away from the eval-mode soft targets p.")
