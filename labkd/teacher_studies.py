r"""Shared pieces of the teacher studies (lessons 04 and 05) and of the lessons built on them.

Lessons 04 (:mod:`labkd.teacher_size`) and 05 (:mod:`labkd.early_stopping`) ask what Cho &
Hariharan ("On the Efficacy of Knowledge Distillation", ICCV 2019, https://arxiv.org/abs/1910.01348)
and Mirzadeh et al. ("Improved Knowledge Distillation via Teacher Assistant", AAAI 2020,
https://arxiv.org/abs/1902.03393) asked: which teacher makes the best student? This module holds
what they (and lessons 07-12) share: MLP names and sizes, the transfer set, one cached student
run as a *tidy row* (a dict with the seed in a column), summaries over seeds, the choice of a
regime on the validation split, paired claims on fresh seeds and the findings tables.

>>> rows = [student_row(data, (30, 30), config.replace(seed=s), teacher, (256, 256)) for s in seeds]
>>> summarize(rows, by=["teacher"])                    # mean ± std over seeds
>>> best = choose(rows, by=["temperature", "alpha"])   # by mean validation accuracy

All students here are MLPs; a student with ``hidden=(30, 30)`` on MNIST is "784-30-30-10".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import plotly.graph_objects as go
from torch import Tensor

from labkd import metrics, parallel, stats
from labkd.checks import Hidden, check_config, check_hidden, check_positive_int, check_seeds, mlp_name
from labkd.data import Data
from labkd.experiments import Trained
from labkd.models import rebuild
from labkd.progress import RunProgress
from labkd.train import TrainConfig

__all__ = ["BASELINE", "COLOURS", "DEV_SEEDS", "TEMPERATURE", "check_config", "check_dev_and_fresh", "choose", "claim_from_rows",
           "compare", "entropy_bits", "findings_table", "first_layer_norm", "input_size", "mlp_hidden", "mlp_name",
           "mlp_num_parameters", "pivot", "PlannedStudent", "same_start", "student_row", "student_run", "train_students", "training_seconds", "summarize", "table", "transfer_set"]

#: Seeds on which lessons 04-05 choose their regime (on the validation split); claims are then
#: confirmed on fresh seeds ``100 + seed ...`` (:func:`labkd.stats.fresh_seeds`).
DEV_SEEDS = (0, 1)
#: The labels-only baseline's name in the ``teacher`` column of student rows.
BASELINE = "labels only"

#: The distillation temperature at which teachers' soft targets are compared (entropy, KL).
TEMPERATURE = 4.0

COLOURS = {"teacher": "#7f7f7f", "student": "#1f77b4", "baseline": "#d62728", "best": "#2ca02c",
           "assistant": "#9467bd", "eskd": "#ff7f0e"}


# --------------------------------------------------------------------------------------------
# Names, sizes and checks


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


def first_layer_norm(trained: Trained) -> float:
    """L2 norm of the first layer's weights *before* training (the model rebuilt from its seed).

    Equal numbers prove that two students started from identical weights."""
    model = rebuild(trained.model.spec)
    first = next(p for name, p in model.named_parameters() if name.endswith("weight"))
    return float(first.detach().norm())


# --------------------------------------------------------------------------------------------
# One student run as a row


def entropy_bits(logits: Tensor, temperature: float = 1.0) -> float:
    """Mean entropy **in bits** of ``softmax(logits / T)`` over the rows of ``logits`` (N, C): how
    much a teacher's soft targets say beyond the top class (0: one-hot; at most log2(C), 3.32
    bits for 10 classes). The course states entropies in bits."""
    return float(metrics.predictive_entropy(logits, temperature).mean()) / math.log(2)


def student_run(data: Data, student: Sequence[int], config: TrainConfig, teacher: Trained | None,
                teacher_name: str | None = None) -> parallel.Run:
    """The cached training run behind :func:`student_row` (labels only when ``teacher`` is None)."""
    student = check_hidden(student, "student")
    if teacher is None:
        config = config.replace(loss="cross_entropy", kd_epochs=None)
    tname = BASELINE if teacher is None else teacher_name or "teacher"
    return parallel.Run("mlp", config, teacher=teacher, label=f"{mlp_name(student, data)} from {tname} seed={config.seed}",
                        hidden=student)


@dataclass(frozen=True)
class PlannedStudent:
    """One student of a study, planned before any training: :func:`student_row`'s arguments and
    the label its progress step shows."""

    student: Hidden
    config: TrainConfig
    teacher: Trained | None
    teacher_name: str | None = None
    extra: Mapping = field(default_factory=dict)
    step: str = ""


def train_students(data: Data, plan: Sequence[PlannedStudent], desc: str = "students", progress: bool | None = None,
                   on_run: Callable[[int, int], None] | None = None) -> list[dict]:
    """The rows of ``plan``'s students (:func:`student_row`), in order. The ones not in the cache
    yet are trained first in ``LABKD_WORKERS`` processes (:mod:`labkd.parallel`; the same weights)."""
    parallel.train_runs(data, [student_run(data, p.student, p.config, p.teacher, p.teacher_name) for p in plan],
                        progress=progress)
    runs = RunProgress(len(plan), desc, progress, on_run)
    rows = []
    for p in plan:
        rows.append(student_row(data, p.student, p.config, p.teacher, p.teacher_name, p.extra))
        runs.step(p.step)
    runs.close()
    return rows


def student_row(data: Data, student: Sequence[int], config: TrainConfig, teacher: Trained | None,
                teacher_name: str | None = None, extra: Mapping | None = None) -> dict:
    """Train (cached) one MLP student with ``config`` (labels only when ``teacher`` is None) and
    return its row: ``student``, ``teacher`` (:data:`BASELINE` without one), ``seed``,
    ``temperature``, ``alpha``, ``test_acc``, ``val_acc``, ``train_acc``, ``init_norm``
    (first-layer norm before training: equal norms prove equal initial weights), ``seconds``,
    and for a distilled student ``kl_transfer``: KL(teacher || student) at the distillation
    temperature on the transfer set (how closely it mimics its teacher where it was taught),
    in nats. ``extra`` columns are added; the trained model is kept under ``_trained``."""
    run = student_run(data, student, config, teacher, teacher_name)
    name, config = mlp_name(run.options["hidden"], data), run.config
    tname = BASELINE if teacher is None else teacher_name or "teacher"
    trained = run.train(data)
    row = _Row({
        "student": name, "teacher": tname, "seed": config.seed,
        "temperature": None if teacher is None else config.temperature, "alpha": None if teacher is None else config.alpha,
        "test_acc": trained.final("test_acc"), "val_acc": trained.final("val_acc"),
        "train_acc": trained.final("train_acc"), "init_norm": first_layer_norm(trained),
        "seconds": trained.seconds, "cached": trained.cached,
    })
    if teacher is not None:
        t_logits = metrics.predict_logits(teacher.model, data.train.x)
        s_logits = metrics.predict_logits(trained.model, data.train.x)
        row["kl_transfer"] = metrics.mean_kl(t_logits, s_logits, config.temperature)
    row.update(extra or {})
    row["_trained"] = trained
    return row


class _Row(dict):
    """A dict whose ``_``-prefixed entries are hidden from its repr (tables print cleanly)."""

    def __repr__(self) -> str:
        return repr({k: v for k, v in self.items() if not k.startswith("_")})


# --------------------------------------------------------------------------------------------
# Summaries


# One statistics module for the course: these names stay importable from here for lessons 04/05.
summarize = stats.summarize
compare = stats.compare


def _spread_words(result: Mapping) -> str:
    """A :func:`compare` result in a few words: beyond / within the seed spread, or one seed."""
    if math.isnan(result["standard_error"]):
        return "one seed: no claim"
    return "beyond the seed spread" if result["significant"] else "within the seed spread"


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


def same_start(rows: Sequence[Mapping]) -> list[str]:
    """Sentences proving the comparison is fair: per (student, seed), the first-layer weight norm
    before training of every run — identical numbers mean identical initial weights."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(f"{r['student']}, seed {r['seed']}", []).append(r["init_norm"])
    return stats.same_start(groups, what="first-layer norm")


# --------------------------------------------------------------------------------------------
# Choosing on validation, confirming on fresh seeds


def check_dev_and_fresh(dev_seeds: Sequence[int], fresh_seeds: Sequence[int]) -> tuple[list[int], list[int]]:
    """Both seed lists, checked: non-empty, distinct, and no seed in both (a claim is confirmed on
    seeds that played no part in choosing the regime)."""
    dev, fresh = check_seeds(dev_seeds), check_seeds(fresh_seeds)
    overlap = sorted(set(dev) & set(fresh))
    if overlap:
        raise ValueError(f"fresh_seeds {overlap} are also development seeds {dev}; confirm on fresh seeds only")
    return dev, fresh


def choose(rows: Sequence[Mapping], by: Sequence[str], metric: str = "val_acc", **where) -> dict:
    """The group of ``by`` columns with the best mean ``metric`` (validation accuracy: never the
    test set) among the rows matching ``where`` (``teacher="784-64-64-10"``). Returns the group's
    :func:`summarize` dict (the ``by`` values, ``mean``, ``std``, ``n``, ``values``)."""
    mine = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
    if not mine:
        raise ValueError(f"no rows match {where}; nothing to choose from")
    return max(summarize(mine, by, metric), key=lambda s: s["mean"])


def per_seed(rows: Sequence[Mapping], seeds: Sequence[int], metric: str = "test_acc", **where) -> list[float]:
    """``metric`` of the row matching ``where`` for each seed, in the order of ``seeds`` (one row
    per seed, or an error naming the seed)."""
    out = []
    for seed in seeds:
        match = [r for r in rows if r["seed"] == seed and all(r.get(k) == v for k, v in where.items())]
        if len(match) != 1:
            raise ValueError(f"expected one row with seed={seed} and {where}, found {len(match)}")
        out.append(float(match[0][metric]))
    return out


def training_seconds(rows: Sequence[Mapping], teachers: Iterable[Trained] = ()) -> float:
    """The training time behind a claim: the ``seconds`` (and ``assistant_seconds``) of its rows plus
    the training time of ``teachers`` (stored with each model, so also right when it was cached)."""
    return float(sum(r.get("seconds") or 0.0 for r in rows) + sum(r.get("assistant_seconds") or 0.0 for r in rows)
                 + sum(t.seconds for t in teachers))


def claim_from_rows(what: str, rows: Sequence[Mapping], seeds: Sequence[int], treatment: Mapping,
                    control: Mapping, treatment_name: str, control_name: str, expected: int = 1,
                    **extra) -> stats.Claim:
    """:func:`labkd.stats.claim` on the paired test accuracies of two arms of ``rows``
    (``treatment`` and ``control`` are column filters, e.g. ``{"teacher": "784-64-64-10"}``)."""
    return stats.claim(what, per_seed(rows, seeds, **treatment), per_seed(rows, seeds, **control), seeds,
                       expected=expected, treatment_name=treatment_name, control_name=control_name, **extra)


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


