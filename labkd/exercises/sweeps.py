r"""Exercises of lesson 02 (temperature sweep): the soft-target loss and one distillation step,
written by hand.

.. math::
    \mathcal{L}_{soft} = T^2 \cdot \frac1N \sum_n \mathrm{KL}\big(\mathrm{softmax}(v_n/T) \,\|\, \mathrm{softmax}(z_n/T)\big)

with teacher logits :math:`v` (the target) and student logits :math:`z`. The reference is
:func:`labkd.losses.soft_target_loss`; the checker recognises the usual mistakes by computing
them on the same fixed tensors and comparing.

``distillation_step(student, teacher, optimizer, images, labels, temperature, alpha)`` is the
training step itself; its checker runs it and :func:`library_step` (labkd's loss and optimiser
step, what :func:`labkd.train.fit` does on every batch) on the same batch and the same weights,
and names what differs: the teacher in train mode, gradients into the teacher, a missing T², the
KL's direction, ``reduction="mean"``, a forgotten ``zero_grad`` or ``step``.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from labkd.exercises import ExerciseFailed, exercise


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Reference: T² · KL(softmax(teacher/T) ‖ softmax(student/T)), mean over the batch.

    student_logits, teacher_logits (N, C); returns a scalar tensor that carries gradients to
    ``student_logits``.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature ** 2


# --- deliberate mistakes (the tests prove the checker names each one) ---------------------------


def _swapped(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """The student's distribution used as the target: KL(student ‖ teacher)."""
    return kd_loss(teacher_logits, student_logits, temperature)


def _no_t_squared(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    return kd_loss(student_logits, teacher_logits, temperature) / temperature ** 2


def _mean_reduction(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=-1)
    with warnings.catch_warnings():  # torch warns about this very mistake; the checker explains it
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(log_p_student, p_teacher, reduction="mean") * temperature ** 2


def _softmax_input(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    p_student = F.softmax(student_logits / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(p_student, p_teacher, reduction="batchmean") * temperature ** 2


def _sum_reduction(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    return kd_loss(student_logits, teacher_logits, temperature) * student_logits.shape[0]


def _forgot_temperature(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    return kd_loss(student_logits, teacher_logits, 1.0) * temperature ** 2


def _detached(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    return kd_loss(student_logits.detach(), teacher_logits, temperature)


WRONG_ANSWERS = (_swapped, _no_t_squared, _mean_reduction, _softmax_input, _sum_reduction, _forgot_temperature,
                 _detached)

# Each mistake the checker recognises, with what to tell the student. Order matters: the first
# mistake that reproduces the candidate's numbers at every temperature wins.
_MISTAKES = (
    (_no_t_squared, "your loss is the right one divided by T²: multiply the KL by temperature ** 2. "
                    "Without it the soft-target gradients shrink like 1/T², so at T = 20 the student "
                    "barely learns from the teacher."),
    (_swapped, "the arguments of the KL are swapped: the teacher's softened distribution is the target. "
               "F.kl_div(input, target) wants the student's log-probabilities as input and the teacher's "
               "probabilities as target."),
    (_mean_reduction, "your loss is the right one divided by the number of classes C: "
                      "F.kl_div(..., reduction='mean') averages over every element (N·C of them). "
                      "Use reduction='batchmean', which sums over classes and averages over examples."),
    (_softmax_input, "F.kl_div expects LOG-probabilities as its first argument: use "
                     "F.log_softmax(student_logits / T, dim=-1), not F.softmax."),
    (_sum_reduction, "your loss grows with the batch size: average over the examples "
                     "(reduction='batchmean'), do not sum."),
    (_forgot_temperature, "both distributions must be softened: divide the student's AND the teacher's logits "
                          "by T before the (log-)softmax."),
)


def _case(seed: int, n: int, c: int, scale: float) -> Tensor:
    return torch.randn(n, c, generator=torch.Generator().manual_seed(seed)) * scale


@exercise("kd_loss", "Exercise: the soft-target (KD) loss", kd_loss, wrong_answers=WRONG_ANSWERS)
def check_kd_loss(candidate) -> None:
    student = _case(1, 4, 5, 3.0)
    teacher = _case(2, 4, 5, 3.0)
    temperatures = (1.0, 2.0, 4.0, 20.0)
    outputs = {}
    for t in temperatures:
        z = student.clone().requires_grad_(True)
        out = candidate(z, teacher.clone(), t)
        if not isinstance(out, Tensor):
            raise ExerciseFailed(f"kd_loss should return a torch tensor, got {type(out).__name__}.")
        if out.numel() != 1:
            raise ExerciseFailed(f"kd_loss should return one number (a scalar tensor), got shape {tuple(out.shape)}: "
                                 f"reduce over the classes and average over the batch.")
        outputs[t] = (z, out.reshape(()))
    expected = {t: kd_loss(student, teacher, t) for t in temperatures}

    def matches(values: dict[float, Tensor]) -> bool:
        return all(torch.allclose(outputs[t][1].detach().double(), values[t].double(), rtol=1e-4, atol=1e-7)
                   for t in temperatures)

    if not matches(expected):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about reduction="mean"; the hint says more
            for mistake, hint in _MISTAKES:
                if matches({t: mistake(student, teacher, t) for t in temperatures}):
                    raise ExerciseFailed(hint)
        t = 4.0
        raise ExerciseFailed(f"at T = {t:g} the loss should be {float(expected[t]):.4f}, yours is "
                             f"{float(outputs[t][1].detach()):.4f}. Soften both logits with T, take the KL from the teacher's "
                             f"probabilities to the student's, average over the batch and multiply by T².")
    same = float(candidate(teacher.clone(), teacher.clone(), 4.0).detach())
    if abs(same) > 1e-5:
        raise ExerciseFailed(f"when the student equals the teacher the loss should be 0, yours is {same:.4g}.")
    z, out = outputs[4.0]
    if not out.requires_grad:
        raise ExerciseFailed("the loss carries no gradient to the student's logits: do not .detach() them or "
                             "compute under torch.no_grad().")
    out.backward()
    if z.grad is None or not torch.isfinite(z.grad).all():
        raise ExerciseFailed("the gradient with respect to the student's logits is missing or not finite.")


# =============================================================================================
# Exercise 2 of lesson 02: one distillation step, written by hand
# =============================================================================================


def distillation_step(student: torch.nn.Module, teacher: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      images: Tensor, labels: Tensor, temperature: float, alpha: float) -> Tensor:
    r"""Reference: one optimiser step of the student on one batch, what :func:`labkd.train.fit`
    does for ``TrainConfig(loss="distillation")``.

    The teacher is frozen: eval mode (no dropout) and no gradients. The loss is
    :math:`\alpha T^2 \mathrm{KL}(p \,\|\, q) + (1 - \alpha)\,\mathrm{CE}(y, \mathrm{softmax}(z))` with
    :math:`p = \mathrm{softmax}(v/T)` (teacher) and :math:`q = \mathrm{softmax}(z/T)` (student),
    averaged over the batch. Returns the loss (detached).
    """
    teacher.eval()                                     # dropout off: the same soft targets every call
    with torch.no_grad():                              # the teacher is not trained
        teacher_logits = teacher(images)
    student_logits = student(images)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    p = F.softmax(teacher_logits / temperature, dim=-1)
    soft = F.kl_div(log_q, p, reduction="batchmean") * temperature ** 2
    loss = alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


def _step_with(soft_loss, *, eval_teacher: bool = True, no_grad: bool = True, zero_grad: bool = True,
               step: bool = True):
    """A distillation step built from ``soft_loss(student_logits, teacher_logits, T)`` and the
    given habits: the reference and each deliberate mistake below."""
    def run(student, teacher, optimizer, images, labels, temperature, alpha):
        if eval_teacher:
            teacher.eval()
        if no_grad:
            with torch.no_grad():
                teacher_logits = teacher(images)
        else:
            teacher_logits = teacher(images)
        student_logits = student(images)
        loss = alpha * soft_loss(student_logits, teacher_logits, temperature) \
            + (1 - alpha) * F.cross_entropy(student_logits, labels)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        if step:
            optimizer.step()
        return loss.detach()
    return run


def _step_teacher_train_mode(student, teacher, optimizer, images, labels, temperature, alpha):
    """Forgets ``teacher.eval()``: the teacher's dropout stays on."""
    return _step_with(kd_loss, eval_teacher=False)(student, teacher, optimizer, images, labels, temperature, alpha)


def _step_teacher_gradients(student, teacher, optimizer, images, labels, temperature, alpha):
    """Computes the teacher's logits outside ``torch.no_grad()``: backward fills the teacher's .grad."""
    return _step_with(kd_loss, no_grad=False)(student, teacher, optimizer, images, labels, temperature, alpha)


def _step_no_t_squared(student, teacher, optimizer, images, labels, temperature, alpha):
    return _step_with(_no_t_squared)(student, teacher, optimizer, images, labels, temperature, alpha)


def _step_swapped_kl(student, teacher, optimizer, images, labels, temperature, alpha):
    return _step_with(_swapped)(student, teacher, optimizer, images, labels, temperature, alpha)


def _step_mean_reduction(student, teacher, optimizer, images, labels, temperature, alpha):
    return _step_with(_mean_reduction)(student, teacher, optimizer, images, labels, temperature, alpha)


def _step_no_zero_grad(student, teacher, optimizer, images, labels, temperature, alpha):
    return _step_with(kd_loss, zero_grad=False)(student, teacher, optimizer, images, labels, temperature, alpha)


def _step_no_optimizer_step(student, teacher, optimizer, images, labels, temperature, alpha):
    return _step_with(kd_loss, step=False)(student, teacher, optimizer, images, labels, temperature, alpha)


STEP_WRONG_ANSWERS = (_step_teacher_train_mode, _step_teacher_gradients, _step_no_t_squared, _step_swapped_kl,
                      _step_mean_reduction, _step_no_zero_grad, _step_no_optimizer_step)

# Mistakes recognised by the update they make to the student's weights (deterministic ones only:
# the teacher in train mode and gradients into the teacher are recognised from the teacher itself).
_STEP_MISTAKES = (
    (_step_no_t_squared, "the soft-target term is missing its factor T²: multiply the KL by temperature ** 2. "
                         "Without it the soft term's gradients shrink like 1/T² and at high T the student "
                         "learns almost only from the labels."),
    (_step_swapped_kl, "the KL has the wrong direction: it must be KL(p ‖ q), the teacher's softened "
                       "distribution p as the target. F.kl_div(input, target) takes the student's "
                       "log-probabilities as input and the teacher's probabilities as target."),
    (_step_mean_reduction, "the soft term is divided by the number of classes C: F.kl_div(..., reduction='mean') "
                           "averages over all N·C elements. Use reduction='batchmean'."),
    (_step_no_zero_grad, "the update still contains the gradients left in .grad by an earlier step: call "
                         "optimizer.zero_grad() before loss.backward() (PyTorch adds gradients up)."),
)


class _Tiny(torch.nn.Module):
    """A two-layer net with dropout, small enough to check a step in milliseconds."""

    def __init__(self, seed: int, hidden: int, dropout: float) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc1 = torch.nn.Linear(6, hidden)
        self.fc2 = torch.nn.Linear(hidden, 5)
        self.drop = torch.nn.Dropout(dropout)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.8)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


def _step_case(seed: int = 0):
    g = torch.Generator().manual_seed(100 + seed)
    images = torch.randn(12, 6, generator=g)
    labels = torch.randint(0, 5, (12,), generator=g)
    return images, labels


def _run_step(step, temperature: float, alpha: float, stale_grads: bool = True):
    """Run ``step`` on fresh copies of the fixed student and teacher (the teacher handed over in
    train mode, the student's .grad holding stale values from an 'earlier step').
    Returns (student, teacher, teacher weights before, output)."""
    student = _Tiny(seed=1, hidden=8, dropout=0.0)
    teacher = _Tiny(seed=2, hidden=32, dropout=0.5)
    teacher.train()
    before = [p.detach().clone() for p in teacher.parameters()]
    optimizer = torch.optim.SGD(student.parameters(), lr=1.0)
    if stale_grads:
        for p in student.parameters():
            p.grad = torch.full_like(p, 0.25)
    images, labels = _step_case()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same dropout masks for every candidate
        out = step(student, teacher, optimizer, images.clone(), labels.clone(), temperature, alpha)
    return student, teacher, before, out


def _weights(model: torch.nn.Module) -> Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


_STEP_SETTINGS = ((4.0, 0.9), (2.0, 0.5))


@exercise("distillation_step", "Exercise: one distillation step, by hand", distillation_step,
          wrong_answers=STEP_WRONG_ANSWERS)
def check_distillation_step(candidate) -> None:
    start = _weights(_Tiny(seed=1, hidden=8, dropout=0.0))
    results = {}
    for t, a in _STEP_SETTINGS:
        student, teacher, before, out = _run_step(candidate, t, a)
        if any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in teacher.parameters()):
            raise ExerciseFailed("gradients flowed into the teacher (its parameters have a .grad after your step): "
                                 "compute the teacher's logits under `with torch.no_grad():` — the teacher is "
                                 "frozen, only the student learns.")
        if any(not torch.equal(p.detach(), b) for p, b in zip(teacher.parameters(), before, strict=True)):
            raise ExerciseFailed("the teacher's weights changed: only the student's parameters may be updated.")
        if torch.equal(_weights(student), start):
            raise ExerciseFailed("the student's weights did not move: after computing the loss call "
                                 "optimizer.zero_grad(), loss.backward() and optimizer.step().")
        results[(t, a)] = (student, teacher, out)

    def matches(step) -> bool:
        for (t, a), (student, _, _) in results.items():
            reference, _, _, _ = _run_step(step, t, a)
            if not torch.allclose(_weights(student), _weights(reference), rtol=1e-4, atol=1e-6):
                return False
        return True

    if not matches(library_step):
        if any(teacher.training for _, teacher, _ in results.values()):
            raise ExerciseFailed("the teacher is still in train mode, so its dropout is on and its soft targets are "
                                 "noisy (different at every call): call teacher.eval() before computing its logits.")
        for mistake, hint in _STEP_MISTAKES:
            if matches(mistake):
                raise ExerciseFailed(hint)
        raise ExerciseFailed("your step moves the student's weights differently from labkd's (the library's "
                             "distillation loss and an SGD step on the same batch and weights). Check: the "
                             "teacher frozen (eval, no_grad), both logits divided by T, F.log_softmax for the "
                             "student and F.softmax for the teacher, reduction='batchmean', the T² factor, "
                             "alpha · soft + (1 − alpha) · cross-entropy on the labels.")
    for (t, a), (_, _, out) in results.items():
        _, _, _, want = _run_step(library_step, t, a)
        try:
            value = float(out)
        except (TypeError, ValueError):
            raise ExerciseFailed(f"your step should return the loss (one number), got {type(out).__name__}.") from None
        if abs(value - float(want)) > 1e-4 * max(1.0, abs(float(want))):
            raise ExerciseFailed(f"the weights are updated correctly, but the returned loss is {value:.4f} instead of "
                                 f"{float(want):.4f} (T = {t:g}, alpha = {a:g}): return the loss you called "
                                 f"backward() on.")


def library_step(student: torch.nn.Module, teacher: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 images: Tensor, labels: Tensor, temperature: float, alpha: float) -> Tensor:
    """The same step with labkd's own pieces (what :func:`labkd.train.fit` runs on every batch):
    :func:`labkd.losses.distillation_loss`, then zero_grad / backward / step. Tests compare it with
    :func:`distillation_step` and with ``fit``."""
    from labkd import losses

    teacher.eval()
    with torch.no_grad():
        teacher_logits = teacher(images)
    loss = losses.distillation_loss(student(images), teacher_logits, labels, temperature, alpha)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def compare_loops(by_hand: torch.nn.Module, by_fit: torch.nn.Module, data) -> str:
    """One sentence for lesson 02: do a student trained with the hand-written step and one trained
    by :func:`labkd.train.fit` (same start, same batches) end up the same? ``data`` is a
    :class:`labkd.data.Data` whose test split both are evaluated on."""
    from labkd.metrics import predict_logits

    hand, lib = _weights(by_hand), _weights(by_fit)
    if hand.shape != lib.shape:
        raise ValueError("by_hand and by_fit must be the same architecture (same number of weights)")
    gap = float((hand - lib).abs().max())
    acc = {name: float((predict_logits(m, data.test.x).argmax(1) == data.test.y).float().mean())
           for name, m in (("your loop", by_hand), ("fit", by_fit))}
    same = gap < 1e-3
    return (f"largest difference between the two students' weights: {gap:.2g} "
            f"({'rounding only: the same student' if same else 'they differ: the two loops did not do the same thing'}); "
            f"test accuracy {acc['your loop']:.2%} (your loop) and {acc['fit']:.2%} (fit) after one epoch.")
