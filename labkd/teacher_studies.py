r"""Which teacher makes the best student? Teacher size, teacher assistants, early-stopped teachers.

Lessons 04 and 05 ask what Cho & Hariharan ("On the Efficacy of Knowledge Distillation",
ICCV 2019, https://arxiv.org/abs/1910.01348) and Mirzadeh et al. ("Improved Knowledge
Distillation via Teacher Assistant", AAAI 2020, https://arxiv.org/abs/1902.03393) asked:

- does a bigger, more accurate teacher give a better student? (:func:`train_teacher_family`,
  :func:`distil_grid`, :func:`best_teachers`)
- does an intermediate "teacher assistant" help when the gap is large? (:func:`teacher_assistant`)
- is a teacher stopped early a better teacher? (:func:`checkpoint_stats`, :func:`checkpoint_sweep`)
- does it help to stop distilling early in the student's training (ESKD)? (:func:`early_stopped_kd`)

Every loop is a series of cached :func:`labkd.train_model` calls and returns *tidy rows*: a list
of dicts, one per trained student, with the seed in a column. :func:`summarize` turns rows into
mean ± standard deviation over seeds, and :func:`compare` says in words whether a difference is
larger than the seed spread. The lessons' figures and panels are in
:mod:`labkd.widgets.teacher_size` and :mod:`labkd.widgets.early_stopping`.

>>> family = train_teacher_family(data, [(32, 32), (1200, 1200)], seeds=[0, 1], config=teacher_config(fast))
>>> rows = distil_grid(data, family, [(10, 10)], kd_config(fast))
>>> summarize(rows, by=["student", "teacher_params"])

All students here are MLPs; a student with ``hidden=(30, 30)`` on MNIST is "784-30-30-10".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor

from labkd import metrics
from labkd.data import Data
from labkd.checks import Hidden, check_hidden, check_positive_int, check_seeds
from labkd.experiments import Trained, train_model
from labkd.losses import check_alpha, check_temperature
from labkd.models import rebuild
from labkd.progress import RunProgress
from labkd.train import TrainConfig

#: Distillation settings of both lessons: Hinton's loss at T = 4 with 90 % weight on soft targets.
TEMPERATURE = 4.0
ALPHA = 0.9
#: The students' learning rate. With the course's default (0.05, SGD + Nesterov momentum) the
#: T²-scaled soft-target loss of a confident teacher gives large early gradients: several of the
#: narrowest students (10 units per layer) lost their ReLU units and stalled at 10-30 % accuracy,
#: and some 30-unit students lost points; at 0.02 every run of lessons 04-05 trained stably.
STUDENT_LR = 0.02

RowFn = Callable[[int, int], None]

COLOURS = {"teacher": "#7f7f7f", "student": "#1f77b4", "baseline": "#d62728", "best": "#2ca02c",
           "assistant": "#9467bd", "eskd": "#ff7f0e"}


# --------------------------------------------------------------------------------------------
# Recipes, names and checks


def teacher_config(fast: bool, seed: int = 0, checkpoints: bool = False) -> TrainConfig:
    """The teacher family's recipe: SGD + Nesterov, cosine schedule, ±2-pixel jitter, no dropout;
    20 epochs (2 in fast mode). ``checkpoints=True`` keeps every epoch's weights (lesson 05)."""
    return TrainConfig(epochs=2 if fast else 20, batch_size=128, lr=0.05, jitter=2, seed=seed,
                       checkpoints=checkpoints)


def kd_config(fast: bool, temperature: float = TEMPERATURE, alpha: float = ALPHA, lr: float = STUDENT_LR,
              seed: int = 0) -> TrainConfig:
    """The students' recipe: :func:`labkd.zoo.student_config` (15 epochs, 2 in fast mode) with the
    distillation loss and a learning rate of :data:`STUDENT_LR`. The labels-only baseline is
    ``config.replace(loss="cross_entropy")``: same recipe, same seed, same initial weights."""
    from labkd.zoo import student_config

    check_temperature(temperature)
    check_alpha(alpha)
    return student_config(fast, seed, loss="distillation", temperature=float(temperature), alpha=float(alpha),
                          lr=float(lr))


def mlp_hidden(width: int, depth: int = 2) -> Hidden:
    """``depth`` hidden layers of ``width`` units: ``mlp_hidden(30) == (30, 30)``."""
    check_positive_int(width, "width")
    check_positive_int(depth, "depth")
    return (int(width),) * int(depth)


def mlp_num_parameters(input_size: int, hidden: Sequence[int], num_classes: int) -> int:
    """Weights and biases of a fully connected net ``input_size → hidden[0] → ... → num_classes``:
    the sum over layers of ``(fan_in + 1) * fan_out``."""
    sizes = [int(input_size), *[int(h) for h in hidden], int(num_classes)]
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def input_size(data: Data) -> int:
    """Pixels per image: 784 for MNIST, 64 for the 8x8 digits."""
    return int(math.prod(data.input_shape))


def mlp_name(hidden: Sequence[int], data: Data) -> str:
    """``"784-30-30-10"``: the layer sizes of an MLP on ``data``."""
    return "-".join(str(v) for v in (input_size(data), *hidden, data.num_classes))


def transfer_set(data: Data, n_transfer: int | None, seed: int = 0) -> Data:
    """``data`` with its training split cut to ``n_transfer`` images (a seeded subset); unchanged
    when ``n_transfer`` is None or not smaller than the split (fast mode is already small)."""
    if n_transfer is None or n_transfer >= len(data.train):
        return data
    check_positive_int(n_transfer, "n_transfer")
    return data.subset(n_train=int(n_transfer), seed=seed)


def _check_hidden_list(values: object, argument: str) -> list[Hidden]:
    if not isinstance(values, Iterable) or isinstance(values, str):
        raise TypeError(f"{argument} must be a list of layer-width tuples such as [(30, 30), (100, 100)]")
    out = [check_hidden(v, f"{argument}[{i}]") for i, v in enumerate(values)]
    if not out:
        raise ValueError(f"{argument} is empty; give at least one layer-width tuple such as (30, 30)")
    if len(set(out)) != len(out):
        raise ValueError(f"{argument} lists the same network twice: {out}")
    return out


def check_config(config: object, argument: str, loss: str | None = None) -> TrainConfig:
    if not isinstance(config, TrainConfig):
        raise TypeError(f"{argument} must be a labkd.TrainConfig, got {type(config).__name__}")
    if loss is not None and config.loss != loss:
        raise ValueError(f"{argument} must use loss={loss!r}, got loss={config.loss!r}")
    return config


def first_layer_norm(trained: Trained) -> float:
    """L2 norm of the first layer's weights *before* training (the model rebuilt from its seed).

    Equal numbers prove that two students started from identical weights."""
    model = rebuild(trained.model.spec)
    first = next(p for name, p in model.named_parameters() if name.endswith("weight"))
    return float(first.detach().norm())


# --------------------------------------------------------------------------------------------
# Progress over many runs


# --------------------------------------------------------------------------------------------
# Lesson 04: the teacher family and the distillation grid


@dataclass
class TeacherFamily:
    """Trained teachers by ``(hidden, seed)`` and one tidy row per teacher."""

    data: Data
    teachers: dict[tuple[Hidden, int], Trained] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)

    @property
    def hidden_sizes(self) -> list[Hidden]:
        """The teachers' layer widths, smallest (fewest parameters) first."""
        return sorted({h for h, _ in self.teachers},
                      key=lambda h: mlp_num_parameters(input_size(self.data), h, self.data.num_classes))

    @property
    def seeds(self) -> list[int]:
        return sorted({s for _, s in self.teachers})

    def get(self, hidden: Sequence[int], seed: int) -> Trained:
        key = (tuple(int(h) for h in hidden), int(seed))
        if key not in self.teachers:
            raise KeyError(f"no teacher {key[0]} with seed {seed}; the family has {self.hidden_sizes} "
                           f"with seeds {self.seeds}")
        return self.teachers[key]

    def largest(self) -> Hidden:
        return self.hidden_sizes[-1]


def train_teacher_family(
    data: Data, hidden_sizes: Sequence[Sequence[int]], seeds: Sequence[int], config: TrainConfig,
    progress: bool | None = None, on_run: RowFn | None = None,
) -> TeacherFamily:
    """Train one MLP teacher per ``(hidden, seed)`` with ``config`` (seed replaced), cached.

    Rows: ``teacher``, ``hidden``, ``params``, ``seed``, ``test_acc``, ``val_acc``, ``train_acc``
    (last epoch, on jittered images), ``entropy_T`` (mean entropy in nats of its soft targets on
    the transfer set at the distillation temperature :data:`TEMPERATURE`) and ``seconds``.
    """
    hiddens = _check_hidden_list(hidden_sizes, "hidden_sizes")
    seeds = check_seeds(seeds)
    check_config(config, "config", loss="cross_entropy")
    family = TeacherFamily(data)
    runs = RunProgress(len(hiddens) * len(seeds), "teachers", progress, on_run)
    for seed in seeds:
        for hidden in hiddens:
            name = mlp_name(hidden, data)
            trained = train_model("mlp", data, config.replace(seed=seed), hidden=hidden, progress=False,
                                  label=f"teacher family {name} seed={seed} on {data.name}")
            family.teachers[(hidden, seed)] = trained
            logits = metrics.predict_logits(trained.model, data.train.x)
            family.rows.append({
                "teacher": name, "hidden": hidden, "params": mlp_num_parameters(input_size(data), hidden, data.num_classes),
                "seed": seed, "test_acc": trained.final("test_acc"), "val_acc": trained.final("val_acc"),
                "train_acc": trained.final("train_acc"),
                "entropy_T": float(metrics.predictive_entropy(logits, TEMPERATURE).mean()),
                "seconds": trained.seconds,
            })
            runs.step(f"{name} seed {seed}")
    runs.close()
    return family


BASELINE = "labels only"


def distil_grid(
    data: Data, family: TeacherFamily, student_hidden_sizes: Sequence[Sequence[int]], config: TrainConfig,
    seeds: Sequence[int] | None = None, teacher_hidden_sizes: Sequence[Sequence[int]] | None = None,
    baseline: bool = True, progress: bool | None = None, on_run: RowFn | None = None,
) -> list[dict]:
    """Distil every student size from every teacher of ``family`` (student seed = teacher seed).

    ``config`` is the distillation recipe (:func:`kd_config`); with ``baseline`` each student is
    also trained on labels only (``config.replace(loss="cross_entropy")``), same seed, same
    initial weights. Rows: ``student``, ``student_hidden``, ``student_params``, ``teacher``
    (:data:`BASELINE` for labels only), ``teacher_hidden``, ``teacher_params``, ``teacher_acc``,
    ``seed``, ``test_acc``, ``val_acc``, ``agreement`` and ``kl_T`` (fidelity to the teacher on
    the test set at T), ``init_norm`` (first-layer norm before training) and ``cached``.
    """
    students = _check_hidden_list(student_hidden_sizes, "student_hidden_sizes")
    check_config(config, "config", loss="distillation")
    seeds = family.seeds if seeds is None else check_seeds(seeds)
    teachers = family.hidden_sizes if teacher_hidden_sizes is None else _check_hidden_list(
        teacher_hidden_sizes, "teacher_hidden_sizes")
    for hidden in teachers:
        for seed in seeds:
            family.get(hidden, seed)  # fail before any training if a teacher is missing
    runs = RunProgress(len(students) * len(seeds) * (len(teachers) + int(baseline)), "students", progress, on_run)
    rows: list[dict] = []
    for seed in seeds:
        for student in students:
            if baseline:
                rows.append(_student_row(data, student, config.replace(loss="cross_entropy", seed=seed), None, None))
                runs.step(f"{mlp_name(student, data)} labels only, seed {seed}")
            for hidden in teachers:
                teacher = family.get(hidden, seed)
                rows.append(_student_row(data, student, config.replace(seed=seed), teacher, hidden))
                runs.step(f"{mlp_name(student, data)} from {mlp_name(hidden, data)}, seed {seed}")
    runs.close()
    return rows


def _student_row(data: Data, student: Hidden, config: TrainConfig, teacher: Trained | None,
                 teacher_hidden: Hidden | None, init: Trained | None = None, extra: dict | None = None) -> dict:
    name = mlp_name(student, data)
    if teacher is None:
        label = f"{name} labels only seed={config.seed}"
    else:
        label = f"{name} distilled from {mlp_name(teacher_hidden, data) if teacher_hidden else teacher.key} seed={config.seed}"
    trained = train_model("mlp", data, config, teacher=teacher, init=init, hidden=student, progress=False, label=label)
    row = {
        "student": name, "student_hidden": student,
        "student_params": mlp_num_parameters(input_size(data), student, data.num_classes),
        "teacher": BASELINE if teacher is None else mlp_name(teacher_hidden, data) if teacher_hidden else "teacher",
        "teacher_hidden": teacher_hidden,
        "teacher_params": None if teacher_hidden is None else mlp_num_parameters(input_size(data), teacher_hidden, data.num_classes),
        "teacher_acc": None if teacher is None else teacher.final("test_acc"),
        "seed": config.seed, "test_acc": trained.final("test_acc"), "val_acc": trained.final("val_acc"),
        "init_norm": first_layer_norm(trained), "cached": trained.cached, "seconds": trained.seconds,
    }
    if teacher is not None:
        s_logits = metrics.predict_logits(trained.model, data.test.x)
        t_logits = metrics.predict_logits(teacher.model, data.test.x)
        row["agreement"] = metrics.agreement(s_logits, t_logits)
        row["kl_T"] = metrics.mean_kl(t_logits, s_logits, config.temperature)
    if extra:
        row.update(extra)
    row["_trained"] = trained  # reachable, but hidden from the row's repr
    return _Row(row)


class _Row(dict):
    """A dict whose ``_``-prefixed entries are hidden from its repr (tables print cleanly)."""

    def __repr__(self) -> str:
        return repr({k: v for k, v in self.items() if not k.startswith("_")})


# --------------------------------------------------------------------------------------------
# Summaries


def summarize(rows: Sequence[Mapping], by: Sequence[str], metric: str = "test_acc") -> list[dict]:
    """Mean, standard deviation (over seeds) and count of ``metric`` per group of ``by`` columns.

    Returns one dict per group, in first-seen order: the ``by`` values, ``mean``, ``std``
    (sample std; 0 for one seed), ``n`` and ``values``. Rows without ``metric`` (the labels-only
    baselines have no ``kl_T``) are left out; a ``by`` column missing from any row is an error.
    """
    if not rows:
        raise ValueError("rows is empty: nothing to summarize")
    columns = sorted({k for r in rows for k in r if not str(k).startswith("_")})
    missing = [k for k in by if any(k not in r for r in rows)]
    if missing or not any(metric in r for r in rows):
        raise KeyError(f"rows have no column(s) {missing or [metric]}; columns are {columns}")
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        if metric in row:
            groups.setdefault(tuple(row[k] for k in by), []).append(float(row[metric]))
    out = []
    for key, values in groups.items():
        a = np.asarray(values, dtype=float)
        out.append({**dict(zip(by, key, strict=True)), "mean": float(a.mean()),
                    "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": len(a), "values": values})
    return out


def compare(a: Sequence[float], b: Sequence[float], name_a: str = "A", name_b: str = "B") -> dict:
    """Is mean(a) - mean(b) larger than the seed spread? Returns ``difference`` (a - b),
    ``standard_error`` of that difference, ``significant`` (|difference| > 2 standard errors
    with ≥ 2 seeds each) and ``verdict``, a sentence to print."""
    a, b = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("compare needs at least one value on each side")
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        se = float("nan")
        verdict = (f"{name_a} {a.mean():.2%} vs {name_b} {b.mean():.2%} ({diff * 100:+.2f} points) from a single "
                   f"seed: no claim either way — run more seeds (fast=False).")
        return {"difference": diff, "standard_error": se, "significant": False, "verdict": verdict}
    se = float(math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))
    significant = abs(diff) > 2 * se
    better = name_a if diff > 0 else name_b
    if significant:
        verdict = (f"{better} is better by {abs(diff) * 100:.2f} points ({name_a} {a.mean():.2%} vs {name_b} "
                   f"{b.mean():.2%}); that is more than twice the standard error ({se * 100:.2f}) over "
                   f"{a.size} and {b.size} seeds.")
    else:
        verdict = (f"{name_a} {a.mean():.2%} vs {name_b} {b.mean():.2%}: the difference ({diff * 100:+.2f} points) "
                   f"is within twice the standard error ({se * 100:.2f}) over {a.size} and {b.size} seeds — "
                   f"no clear winner.")
    return {"difference": diff, "standard_error": se, "significant": bool(significant), "verdict": verdict}


def best_teachers(rows: Sequence[Mapping], family: TeacherFamily) -> list[dict]:
    """Per student size: the teacher whose students score best on average, the most accurate
    teacher, the baseline, and whether the best teacher beats the most accurate one beyond the
    seed spread. One dict per student (for "What we found")."""
    teacher_acc = {r["teacher"]: r["mean"] for r in summarize(family.rows, ["teacher"])}
    most_accurate = max(teacher_acc, key=teacher_acc.get)
    out = []
    for student in dict.fromkeys(r["student"] for r in rows):
        mine = [r for r in rows if r["student"] == student]
        stats = {r["teacher"]: r for r in summarize(mine, ["teacher"])}
        kd = {k: v for k, v in stats.items() if k != BASELINE}
        if not kd:
            continue
        best = max(kd, key=lambda k: kd[k]["mean"])
        row = {"student": student, "best teacher": best,
               "student acc (best)": _pm(kd[best]), "most accurate teacher": most_accurate,
               "student acc (most accurate)": _pm(kd[most_accurate]) if most_accurate in kd else "",
               "labels only": _pm(stats[BASELINE]) if BASELINE in stats else ""}
        if best != most_accurate and most_accurate in kd:
            result = compare(kd[best]["values"], kd[most_accurate]["values"], best, most_accurate)
            row["verdict"], row["difference"] = result["verdict"], _spread_words(result)
        else:
            row["verdict"] = "The most accurate teacher is also the best teacher here."
            row["difference"] = "the same teacher"
        out.append(row)
    return out


def _spread_words(result: Mapping) -> str:
    """A :func:`compare` result in a few words: beyond / within the seed spread, or one seed."""
    if math.isnan(result["standard_error"]):
        return "one seed: no claim"
    return "beyond the seed spread" if result["significant"] else "within the seed spread"


def _pm(stat: Mapping) -> str:
    return f"{stat['mean']:.2%} ± {stat['std'] * 100:.2f}" if stat["n"] > 1 else f"{stat['mean']:.2%}"


def table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> go.Figure:
    """A plotly table of rows (percent-formatting accuracies), for "What we found"."""
    from labkd.plots import comparison_table

    if not rows:
        raise ValueError("rows is empty: nothing to tabulate")
    columns = list(columns) if columns is not None else [k for k in rows[0] if not str(k).startswith("_")]
    return comparison_table([{c: _format(c, r.get(c)) for c in columns} for r in rows])


def _format(column: str, value: object) -> object:
    if isinstance(value, float) and ("acc" in column or column in ("mean", "agreement")):
        return f"{value:.2%}"
    if isinstance(value, tuple):
        return "-".join(str(v) for v in value)
    return value


def pivot(rows: Sequence[Mapping], index: str, columns: str, metric: str = "test_acc", digits: int = 2) -> go.Figure:
    """A table of ``metric`` (mean ± std over seeds) with one line per ``index`` value and one
    column per ``columns`` value, e.g. ``pivot(rows, "teacher", "student")``."""
    stats = summarize(rows, [index, columns], metric)
    cols = list(dict.fromkeys(s[columns] for s in stats))
    lines = []
    for key in dict.fromkeys(s[index] for s in stats):
        line = {index: _format(index, key)}
        for c in cols:
            match = [s for s in stats if s[index] == key and s[columns] == c]
            line[f"{columns} {_format(columns, c)}"] = _cell(match[0], metric, digits) if match else ""
        lines.append(line)
    from labkd.plots import comparison_table

    return comparison_table(lines)


def _cell(stat: Mapping, metric: str, digits: int) -> str:
    percent = "acc" in metric or metric == "agreement"
    scale, unit = (100, "%") if percent else (1, "")
    text = f"{stat['mean'] * scale:.{digits}f}{unit}"
    return text + (f" ± {stat['std'] * scale:.{digits}f}" if stat["n"] > 1 else "")


def teacher_table(family: TeacherFamily) -> go.Figure:
    """The family at a glance: parameters, test accuracy, last-epoch training accuracy and the
    entropy of its soft targets on the transfer set at T (mean ± std over seeds)."""
    lines = []
    for hidden in family.hidden_sizes:
        mine = [r for r in family.rows if r["hidden"] == hidden]
        line = {"teacher": mine[0]["teacher"], "parameters": f"{mine[0]['params']:,}"}
        for metric, title, digits in (("test_acc", "test accuracy", 2), ("train_acc", "train accuracy (jittered)", 2),
                                      ("entropy_T", f"soft-target entropy at T={TEMPERATURE:g} (nats)", 3)):
            line[title] = _cell(summarize(mine, ["teacher"], metric)[0], metric, digits)
        lines.append(line)
    from labkd.plots import comparison_table

    return comparison_table(lines)


def same_start(rows: Sequence[Mapping]) -> list[str]:
    """Sentences proving the comparison is fair: per (student, seed), the first-layer weight norm
    before training of every run — identical numbers mean identical initial weights."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["student"], r["seed"]), []).append(r["init_norm"])
    out = []
    for (student, seed), norms in groups.items():
        same = max(norms) - min(norms) == 0
        out.append(f"{student}, seed {seed}: {len(norms)} runs start with first-layer norm "
                   + (f"{norms[0]:.6f} (identical)" if same else f"{min(norms):.6f}..{max(norms):.6f} (NOT identical)"))
    return out


# --------------------------------------------------------------------------------------------
# Lesson 04: teacher assistants


def teacher_assistant(
    data: Data, family: TeacherFamily, student_hidden: Sequence[int], assistant_hidden_sizes: Sequence[Sequence[int]],
    config: TrainConfig, teacher_hidden: Sequence[int] | None = None, seeds: Sequence[int] | None = None,
    progress: bool | None = None, on_run: RowFn | None = None,
) -> list[dict]:
    """Mirzadeh et al.'s teacher assistant: teacher → assistant → student versus teacher → student.

    For each seed: the student on labels only, distilled directly from the teacher (default:
    the family's largest), and, for each assistant size, an assistant distilled from the teacher
    and the student distilled from that assistant. Every student of one seed starts from the
    same weights. Rows as :func:`distil_grid`, plus ``route`` (``"labels only"``,
    ``"teacher → student"``, ``"teacher → TA 784-128-128-10 → student"``), ``assistant`` and
    ``assistant_acc``.
    """
    student = check_hidden(student_hidden, "student_hidden")
    assistants = _check_hidden_list(assistant_hidden_sizes, "assistant_hidden_sizes")
    check_config(config, "config", loss="distillation")
    teacher_hidden = family.largest() if teacher_hidden is None else check_hidden(teacher_hidden, "teacher_hidden")
    seeds = family.seeds if seeds is None else check_seeds(seeds)
    for seed in seeds:
        family.get(teacher_hidden, seed)
    runs = RunProgress(len(seeds) * (2 + 2 * len(assistants)), "teacher-assistant runs", progress, on_run)
    rows: list[dict] = []
    for seed in seeds:
        teacher = family.get(teacher_hidden, seed)
        kd = config.replace(seed=seed)
        rows.append(_student_row(data, student, kd.replace(loss="cross_entropy"), None, None,
                                 extra={"route": BASELINE, "assistant": None, "assistant_acc": None}))
        runs.step(f"labels only, seed {seed}")
        rows.append(_student_row(data, student, kd, teacher, teacher_hidden,
                                 extra={"route": "teacher → student", "assistant": None, "assistant_acc": None}))
        runs.step(f"direct, seed {seed}")
        for hidden in assistants:
            ta_name = mlp_name(hidden, data)
            assistant = train_model("mlp", data, kd, teacher=teacher, hidden=hidden, progress=False,
                                    label=f"assistant {ta_name} from {mlp_name(teacher_hidden, data)} seed={seed}")
            runs.step(f"assistant {ta_name}, seed {seed}")
            row = _student_row(data, student, kd, assistant, hidden,
                               extra={"route": f"teacher → TA {ta_name} → student", "assistant": ta_name,
                                      "assistant_acc": assistant.final("test_acc")})
            rows.append(row)
            runs.step(f"student via {ta_name}, seed {seed}")
    runs.close()
    return rows


def assistant_verdicts(rows: Sequence[Mapping]) -> list[str]:
    """For each assistant route: is it better than direct distillation beyond the seed spread?"""
    stats = {s["route"]: s for s in summarize(rows, ["route"])}
    direct = stats.get("teacher → student")
    if direct is None:
        raise ValueError("rows have no 'teacher → student' route; run teacher_assistant first")
    return [compare(s["values"], direct["values"], route, "direct")["verdict"]
            for route, s in stats.items() if "TA" in route]


# --------------------------------------------------------------------------------------------
# Lesson 05: early-stopped teachers


def train_checkpointed_teachers(
    data: Data, hidden: Sequence[int], seeds: Sequence[int], config: TrainConfig, progress: bool | None = None,
) -> dict[int, Trained]:
    """One teacher per seed trained with ``checkpoints=True`` (every epoch's weights kept), cached."""
    hidden = check_hidden(hidden, "hidden")
    seeds = check_seeds(seeds)
    check_config(config, "config", loss="cross_entropy")
    if not config.checkpoints:
        raise ValueError("config must keep checkpoints: use teacher_config(fast, checkpoints=True)")
    runs = RunProgress(len(seeds), "teachers", progress, None)
    out = {}
    for seed in seeds:
        out[seed] = train_model("mlp", data, config.replace(seed=seed), hidden=hidden, progress=False,
                                label=f"checkpointed teacher {mlp_name(hidden, data)} seed={seed} on {data.name}")
        runs.step(f"seed {seed}")
    runs.close()
    return out


def _check_epochs(epochs: Sequence[int] | None, teacher: Trained) -> list[int]:
    n = len(teacher.checkpoints)
    if n == 0:
        raise ValueError("the teacher was trained without checkpoints; use TrainConfig(checkpoints=True)")
    if epochs is None:
        return list(range(1, n + 1))
    out = sorted({int(e) for e in epochs})
    if not out or any(not 1 <= e <= n for e in out):
        raise ValueError(f"epochs must be teacher epochs in 1..{n}, got {list(epochs)}")
    return out


def spread_epochs(n_epochs: int, count: int) -> list[int]:
    """About ``count`` epochs from 1 to ``n_epochs``, denser early (where the teacher changes most),
    always including the first and the last: ``spread_epochs(20, 8) == [1, 2, 3, 4, 6, 8, 13, 20]``."""
    check_positive_int(n_epochs, "n_epochs")
    check_positive_int(count, "count")
    if count >= n_epochs:
        return list(range(1, n_epochs + 1))
    grid = np.unique(np.round(np.geomspace(1, n_epochs, count)).astype(int))
    out = sorted(set(int(e) for e in grid) | {1, n_epochs})
    extra = 2
    while len(out) < count:  # rounding merged some early epochs: fill from the start
        out = sorted(set(out) | {extra})
        extra += 1
    return out


def checkpoint_stats(
    teachers: Mapping[int, Trained], data: Data, temperature: float = TEMPERATURE, epochs: Sequence[int] | None = None,
    n_transfer_images: int | None = 2000, progress: bool | None = None,
) -> list[dict]:
    """The teacher at each checkpoint: ``test_acc``, ``entropy_T`` (mean entropy in nats of its
    soft targets at ``temperature`` on the transfer set: what the student is shown), ``ece``
    (expected calibration error on the test set, T = 1) and ``confidence`` (mean top-class
    probability on the test set). One row per (seed, epoch).

    The entropy is averaged over a fixed, seeded sample of ``n_transfer_images`` transfer images
    (None: all of them) — a mean over 2,000 images is precise to about 0.01 nats and saves most
    of the forward passes through a large teacher."""
    t = check_temperature(temperature)
    x = data.train.x
    if n_transfer_images is not None:
        check_positive_int(n_transfer_images, "n_transfer_images")
        if n_transfer_images < len(x):
            x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n_transfer_images]]
    chosen = {seed: _check_epochs(epochs, teacher) for seed, teacher in teachers.items()}
    runs = RunProgress(sum(len(e) for e in chosen.values()), "checkpoints", progress, None)
    rows = []
    for seed, teacher in teachers.items():
        for epoch in chosen[seed]:
            model = teacher.checkpoint_model(epoch)
            test_logits = metrics.predict_logits(model, data.test.x)
            rows.append({
                "seed": seed, "epoch": epoch, "test_acc": metrics.accuracy(test_logits, data.test.y),
                "entropy_T": float(metrics.predictive_entropy(metrics.predict_logits(model, x), t).mean()),
                "ece": metrics.expected_calibration_error(test_logits, data.test.y),
                "confidence": float(torch.softmax(test_logits, 1).max(1).values.mean()),
            })
            runs.step(f"epoch {epoch}, seed {seed}")
    runs.close()
    return rows


def checkpoint_sweep(
    data: Data, teachers: Mapping[int, Trained], student_hidden: Sequence[int], config: TrainConfig,
    epochs: Sequence[int] | None = None, baseline: bool = True, progress: bool | None = None,
    on_run: RowFn | None = None,
) -> list[dict]:
    """Distil the same student (seed = teacher seed, so the same initial weights for every
    checkpoint) from the teacher as it was after each of ``epochs``.

    Rows as :func:`distil_grid` plus ``teacher_epoch`` (None for the labels-only baseline)."""
    student = check_hidden(student_hidden, "student_hidden")
    check_config(config, "config", loss="distillation")
    if not teachers:
        raise ValueError("teachers is empty; give {seed: teacher trained with checkpoints=True}")
    chosen = {seed: _check_epochs(epochs, teacher) for seed, teacher in teachers.items()}
    total = sum(len(e) + int(baseline) for e in chosen.values())
    runs = RunProgress(total, "students", progress, on_run)
    rows = []
    for seed, teacher in teachers.items():
        hidden = tuple(teacher.model.spec["hidden"])
        kd = config.replace(seed=seed)
        if baseline:
            rows.append(_student_row(data, student, kd.replace(loss="cross_entropy"), None, None,
                                     extra={"teacher_epoch": None}))
            runs.step(f"labels only, seed {seed}")
        for epoch in chosen[seed]:
            checkpoint = teacher.checkpoint_model(epoch)
            row = _student_row(data, student, kd, _as_trained(checkpoint, teacher, epoch), hidden,
                               extra={"teacher_epoch": epoch})
            rows.append(row)
            runs.step(f"from epoch {epoch}, seed {seed}")
    runs.close()
    return rows


def _as_trained(model, teacher: Trained, epoch: int) -> Trained:
    """A checkpoint wrapped as a :class:`Trained` (its history cut at ``epoch``) for the row helpers."""
    return Trained(model, teacher.history[:epoch], model.cache_key, teacher.seconds, True)


def checkpoint_soft_targets(teacher: Trained, x: Tensor, epochs: Sequence[int], temperature: float = TEMPERATURE) -> Tensor:
    """Logits of each checkpoint on a few images x (K, ...): shape (len(epochs), K, C).

    Computed once so a widget can show any epoch's soft targets without a forward pass."""
    check_temperature(temperature)
    chosen = _check_epochs(epochs, teacher)
    return torch.stack([metrics.predict_logits(teacher.checkpoint_model(e), x) for e in chosen])


def pick_examples(logits: Tensor, targets: Tensor, n: int = 4) -> list[int]:
    """Indices of ``n`` test images worth looking at: half the most uncertain correctly
    classified ones (most "dark knowledge") and half typical ones (first of distinct classes)."""
    check_positive_int(n, "n")
    metrics.accuracy(logits, targets)  # validates shapes
    entropy = metrics.predictive_entropy(logits)
    correct = logits.argmax(1) == targets
    uncertain = [int(i) for i in torch.argsort(entropy, descending=True) if bool(correct[i])][: n // 2]
    typical, seen = [], set()
    for i in range(len(targets)):
        c = int(targets[i])
        if c not in seen and i not in uncertain and bool(correct[i]):
            typical.append(i)
            seen.add(c)
        if len(typical) == n - len(uncertain):
            break
    return typical + uncertain


def checkpoint_curves(stats_rows: Sequence[Mapping], sweep_rows: Sequence[Mapping]) -> dict:
    """Mean ± std over seeds, per teacher epoch, of everything :func:`early_stopping_figure` draws."""
    out: dict = {}
    for key in ("test_acc", "entropy_T", "ece"):
        s = sorted(summarize(stats_rows, ["epoch"], key), key=lambda r: r["epoch"])
        out[f"teacher_{key}"] = ([r["epoch"] for r in s], [r["mean"] for r in s], [r["std"] for r in s])
    kd = sorted((r for r in summarize(sweep_rows, ["teacher_epoch"]) if r["teacher_epoch"] is not None),
                key=lambda r: r["teacher_epoch"])
    out["student"] = ([r["teacher_epoch"] for r in kd], [r["mean"] for r in kd], [r["std"] for r in kd])
    out["student_values"] = {r["teacher_epoch"]: r["values"] for r in kd}
    base = [r for r in summarize(sweep_rows, ["teacher_epoch"]) if r["teacher_epoch"] is None]
    out["baseline"] = (base[0]["mean"], base[0]["std"], base[0]["values"]) if base else None
    return out


def early_stopping_summary(stats_rows: Sequence[Mapping], sweep_rows: Sequence[Mapping]) -> dict:
    """The numbers for "What we found": the best teacher epoch for the student (by mean test
    accuracy), the final epoch, both students' accuracies and a :func:`compare` verdict."""
    curves = checkpoint_curves(stats_rows, sweep_rows)
    epochs, means, stds = curves["student"]
    if not epochs:
        raise ValueError("sweep_rows has no distilled students")
    best = epochs[int(np.argmax(means))]
    final = max(epochs)
    values = curves["student_values"]
    result = {
        "best_epoch": best, "final_epoch": final,
        "student_acc_best": float(np.mean(values[best])), "student_acc_final": float(np.mean(values[final])),
        "student_std_best": float(np.std(values[best], ddof=1)) if len(values[best]) > 1 else 0.0,
        "student_std_final": float(np.std(values[final], ddof=1)) if len(values[final]) > 1 else 0.0,
        "n_seeds": len(values[final]),
    }
    t_epochs, t_acc, _ = curves["teacher_test_acc"]
    result["teacher_acc_best_epoch"] = t_acc[t_epochs.index(best)] if best in t_epochs else float("nan")
    result["teacher_acc_final"] = t_acc[t_epochs.index(final)] if final in t_epochs else float("nan")
    if best == final:
        result["verdict"] = f"The fully trained teacher (epoch {final}) gave the best student."
    else:
        result["verdict"] = compare(values[best], values[final], f"teacher epoch {best}", f"teacher epoch {final}")["verdict"]
    if curves["baseline"] is not None:
        result["baseline_acc"] = curves["baseline"][0]
    return result


# --------------------------------------------------------------------------------------------
# Lesson 05: stopping distillation early (ESKD)

ARMS = ("KD throughout", "KD then labels (ESKD)", "labels only")


def early_stopped_kd(
    data: Data, teachers: Mapping[int, Trained], student_hidden: Sequence[int], config: TrainConfig,
    stop_epochs: Sequence[int], progress: bool | None = None, on_run: RowFn | None = None,
) -> list[dict]:
    """Stop distilling at epoch k and finish on labels only, against KD all the way and labels only.

    Each arm is two chained :func:`labkd.train_model` calls (k epochs, then ``config.epochs - k``
    more from those weights with ``init=``), so the three arms share the same learning-rate
    schedule (it restarts at k in every arm); "KD throughout" and "KD then labels" share their
    first segment. Rows: ``stop_epoch``, ``arm`` (one of :data:`ARMS`), ``seed``, ``test_acc``,
    ``val_acc``, ``curve`` (test accuracy after each of the ``config.epochs`` epochs) and
    ``init_norm``.
    """
    student = check_hidden(student_hidden, "student_hidden")
    check_config(config, "config", loss="distillation")
    total = config.epochs
    if isinstance(stop_epochs, (int, np.integer)):
        stop_epochs = [stop_epochs]
    stops = sorted({int(k) for k in stop_epochs})
    if not stops or any(not 1 <= k < total for k in stops):
        raise ValueError(f"stop_epochs must lie in 1..{total - 1} (the student trains {total} epochs), got {list(stop_epochs)}")
    if not teachers:
        raise ValueError("teachers is empty; give {seed: trained teacher}")
    runs = RunProgress(len(stops) * len(teachers) * 5, "ESKD runs", progress, on_run)
    rows = []
    name = mlp_name(student, data)
    for seed, teacher in teachers.items():
        kd = config.replace(seed=seed)
        ce = kd.replace(loss="cross_entropy")
        for k in stops:
            def segment(cfg: TrainConfig, init: Trained | None, what: str,
                        seed: int = seed, teacher: Trained = teacher) -> Trained:
                trained = train_model("mlp", data, cfg, teacher=teacher if cfg.loss == "distillation" else None,
                                      init=init, hidden=student, progress=False, label=f"ESKD {name} {what} seed={seed}")
                runs.step(f"{what}, seed {seed}")
                return trained

            kd_first = segment(kd.replace(epochs=k), None, f"KD epochs 1-{k}")
            ce_first = segment(ce.replace(epochs=k), None, f"labels epochs 1-{k}")
            later = f"epochs {k + 1}-{total}"
            arms = {
                ARMS[0]: (kd_first, segment(kd.replace(epochs=total - k), kd_first, f"KD {later}")),
                ARMS[1]: (kd_first, segment(ce.replace(epochs=total - k), kd_first, f"ESKD labels {later}")),
                ARMS[2]: (ce_first, segment(ce.replace(epochs=total - k), ce_first, f"labels {later}")),
            }
            for arm, (first, last) in arms.items():
                rows.append(_Row({
                    "student": name, "stop_epoch": k, "arm": arm, "seed": seed,
                    "test_acc": last.final("test_acc"), "val_acc": last.final("val_acc"),
                    "curve": [h["test_acc"] for h in first.history + last.history],
                    "init_norm": first_layer_norm(first), "_trained": last,
                }))
    runs.close()
    return rows


def fit_stops(stop_epochs: Sequence[int], epochs: int) -> list[int]:
    """The stop epochs that fit a student trained ``epochs`` epochs (1..epochs-1); if none fits
    (fast mode trains 2 epochs), the middle epoch."""
    check_positive_int(epochs, "epochs")
    if epochs < 2:
        raise ValueError("stopping distillation early needs a student trained for at least 2 epochs")
    fitting = sorted({int(k) for k in stop_epochs if 1 <= int(k) < epochs})
    return fitting or [max(1, epochs // 2)]


def eskd_verdicts(rows: Sequence[Mapping]) -> list[str]:
    """Per stop epoch: ESKD against KD throughout, and against labels only, with the seed spread."""
    out = []
    for k in sorted({r["stop_epoch"] for r in rows}):
        values = {arm: [r["test_acc"] for r in rows if r["stop_epoch"] == k and r["arm"] == arm] for arm in ARMS}
        out.append(f"stop after epoch {k}: " + compare(values[ARMS[1]], values[ARMS[0]], "ESKD", "KD throughout")["verdict"])
        out.append(f"stop after epoch {k}: " + compare(values[ARMS[1]], values[ARMS[2]], "ESKD", "labels only")["verdict"])
    return out


# --------------------------------------------------------------------------------------------
# "What we found": the papers' claims beside this run's numbers

#: What the papers report, in words (their numbers are on ImageNet/CIFAR, not comparable to ours).
PAPER = {
    "size": "Cho & Hariharan 2019, ImageNet: a ResNet18 student distilled from ResNet34 ends up more accurate "
            "than one distilled from the larger, more accurate ResNet50 or ResNet152.",
    "mimic": "Cho & Hariharan 2019: small students are unable to mimic large teachers (the capacity gap).",
    "assistant": "Mirzadeh et al. 2020, CIFAR-10/100: distilling through an intermediate-size teacher assistant "
                 "beats distilling directly when the teacher-student gap is large.",
    "sequence": "Cho & Hariharan 2019, ImageNet: a sequence of distillation steps did not help.",
    "early_teacher": "Cho & Hariharan 2019: a teacher stopped early in its training is often a better teacher "
                     "than the fully trained one.",
    "eskd": "Cho & Hariharan 2019: stopping distillation early in the student's training (ESKD) and finishing "
            "on the labels gives a better student than distilling all the way.",
}


def size_findings(rows: Sequence[Mapping], family: TeacherFamily, assistant_rows: Sequence[Mapping] | None = None) -> list[dict]:
    """Lesson 04's claims, each with the paper's finding and this run's measurement in words."""
    lines = [f"{f['student']}: best {f['best teacher']} {f['student acc (best)']}, most accurate "
             f"{f['most accurate teacher']} {f['student acc (most accurate)']} ({f['difference']})"
             for f in best_teachers(rows, family)]
    out = [{"claim": "a bigger, more accurate teacher is not always a better teacher", "paper": PAPER["size"],
            "this run": "<br>".join(lines)}]
    smallest = min(dict.fromkeys(r["student"] for r in rows), key=lambda s: next(r["student_params"] for r in rows if r["student"] == s))
    kd_rows = [r for r in rows if r["student"] == smallest and r["teacher"] != BASELINE]
    kl = sorted(summarize(kd_rows, ["teacher", "teacher_params"], "kl_T"), key=lambda s: s["teacher_params"]) if kd_rows else []
    if kl:
        out.append({"claim": "small students cannot mimic large teachers", "paper": PAPER["mimic"],
                    "this run": f"KL(teacher || student) at T for {smallest}: " + ", ".join(
                        f"{s['mean']:.4f} from {s['teacher']}" for s in kl)})
    if assistant_rows:
        stats = {s["route"]: s for s in summarize(assistant_rows, ["route"])}
        direct = stats["teacher → student"]
        lines = [f"direct: {_pm(direct)}"]
        for route, stat in stats.items():
            if "TA" in route:
                result = compare(stat["values"], direct["values"])
                lines.append(f"via {stat_name(route)}: {_pm(stat)} ({result['difference'] * 100:+.2f} points, {_spread_words(result)})")
        out.append({"claim": "a teacher assistant helps when the gap is large", "paper": f"{PAPER['assistant']} {PAPER['sequence']}",
                    "this run": "<br>".join(lines)})
    return out


def stat_name(route: str) -> str:
    """``"teacher → TA 784-128-128-10 → student"`` -> ``"TA 784-128-128-10"``."""
    parts = [p.strip() for p in route.split("→")]
    return next((p for p in parts if p.startswith("TA")), route)


def early_stopping_findings(summary: Mapping, eskd_rows: Sequence[Mapping] | None = None) -> list[dict]:
    """Lesson 05's claims, each with the paper's finding and this run's measurement in words."""
    out = [{"claim": "an early-stopped teacher can be a better teacher", "paper": PAPER["early_teacher"],
            "this run": f"best teacher epoch {summary['best_epoch']} of {summary['final_epoch']}: student "
                        f"{summary['student_acc_best']:.2%} vs {summary['student_acc_final']:.2%} from the final teacher "
                        f"(teacher accuracy {summary['teacher_acc_best_epoch']:.2%} vs {summary['teacher_acc_final']:.2%}). "
                        f"{summary['verdict']}"}]
    if eskd_rows:
        stats = {(s["stop_epoch"], s["arm"]): s for s in summarize(eskd_rows, ["stop_epoch", "arm"])}
        for k in sorted({r["stop_epoch"] for r in eskd_rows}):
            eskd, full = stats[(k, ARMS[1])], stats[(k, ARMS[0])]
            verdict = compare(eskd["values"], full["values"], "ESKD", "KD throughout")["verdict"]
            out.append({"claim": f"stopping distillation after student epoch {k} helps", "paper": PAPER["eskd"],
                        "this run": f"ESKD {_pm(eskd)}, KD throughout {_pm(full)}, labels only "
                                    f"{_pm(stats[(k, ARMS[2])])}. {verdict}"})
    return out


def findings_table(findings: Sequence[Mapping[str, str]]) -> go.Figure:
    """The claim / paper / this-run rows of :func:`size_findings` or :func:`early_stopping_findings`
    as a plotly table with wrapped text (the widest column for this run's numbers)."""
    if not findings:
        raise ValueError("findings is empty: nothing to tabulate")
    columns = list(findings[0].keys())
    widths = ([1.0, 2.0, 3.0] + [2.0] * len(columns))[: len(columns)]
    fig = go.Figure(go.Table(
        columnwidth=widths,
        header=dict(values=[f"<b>{c}</b>" for c in columns], align="left"),
        cells=dict(values=[[str(f.get(c, "")) for f in findings] for c in columns], align="left", height=24),
    ))
    # estimate the wrapped height: about 150 characters across the table, split by column width
    per_line = [max(10, int(150 * w / sum(widths))) for w in widths]

    def lines(text: str, width: int) -> int:
        return sum(max(1, math.ceil(len(part) / width)) for part in text.split("<br>"))

    total = sum(max(lines(str(f.get(c, "")), w) for c, w in zip(columns, per_line, strict=True)) for f in findings)
    fig.update_layout(height=50 + 17 * total + 10 * len(findings), margin=dict(l=5, r=5, t=5, b=5))
    return fig


def size_reading(rows: Sequence[Mapping], family: TeacherFamily) -> str:
    """A few sentences reading lesson 04's grid: did any student learn significantly better from
    a smaller teacher than from the most accurate one, and how far apart were the teachers?"""
    teachers = sorted(summarize(family.rows, ["teacher", "params"]), key=lambda s: s["params"])
    span = f"the teachers' test accuracy spans {teachers[0]['mean']:.2%} ({teachers[0]['teacher']}) to " \
           f"{teachers[-1]['mean']:.2%} ({teachers[-1]['teacher']})"
    found = best_teachers(rows, family)
    dips = [f["student"] for f in found if f["difference"] == "beyond the seed spread"]
    if any(f["difference"] == "one seed: no claim" for f in found):
        return f"With one seed, {span}; no ranking of teachers can be claimed."
    if dips:
        return (f"A smaller teacher beat the most accurate one beyond the seed spread for {', '.join(dips)}: "
                f"the shape of Cho & Hariharan's finding, on a much smaller scale ({span}).")
    return (f"No student learned significantly better from a smaller teacher than from the most accurate one: "
            f"{span}, and any dip at the large teachers is within the seed spread. The 'bigger is not better' "
            f"effect does not show up clearly here.")


def early_stopping_reading(summary: Mapping, stats_rows: Sequence[Mapping]) -> str:
    """A few sentences reading lesson 05's checkpoint sweep from its numbers."""
    by_epoch = {s["epoch"]: s["mean"] for s in summarize(stats_rows, ["epoch"])}
    entropy = {s["epoch"]: s["mean"] for s in summarize(stats_rows, ["epoch"], "entropy_T")}
    best, final = summary["best_epoch"], summary["final_epoch"]
    first = min(by_epoch)
    if summary["n_seeds"] < 2:
        return "With one seed, no checkpoint can be called better than another."
    history = (f"Its test accuracy rose from {by_epoch[first]:.2%} after epoch {first} to {by_epoch[final]:.2%} after "
               f"epoch {final}, and its soft targets on the transfer set went from {entropy[first]:.2f} to "
               f"{entropy[final]:.2f} nats at T.")
    if best == final:
        return (f"The fully trained teacher taught best. {history} It never became the over-fitted, over-confident "
                f"teacher that early stopping is meant to avoid.")
    if "no clear winner" in summary["verdict"]:
        return (f"The best checkpoint (epoch {best}) was not significantly better than the final teacher. {history}")
    return (f"An earlier checkpoint (epoch {best}) taught better than the final teacher although it was less accurate "
            f"({by_epoch.get(best, float('nan')):.2%} vs {by_epoch[final]:.2%}); its soft targets were softer "
            f"({entropy.get(best, float('nan')):.2f} vs {entropy[final]:.2f} nats at T).")
