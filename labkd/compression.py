r"""Distillation beside the other ways to make a network small: quantization and pruning.

Lesson 12 repeats the MNIST comparison of the model-compression surveys (Cheng et al. 2017,
https://arxiv.org/abs/1710.09282; Choudhary et al. 2020, https://doi.org/10.1007/s10462-020-09816-7):
three families of baselines (MLP, CNN, small ResNet) of three sizes each, then

- **int8**: PyTorch's dynamic int8 quantization (:func:`quantize_int8`). It replaces
  ``nn.Linear`` layers only; convolutions stay float32, so it shrinks MLPs about fourfold and
  leaves CNNs and ResNets (whose only Linear layer is the small head) almost unchanged;
- **k-bit weights**: uniform per-channel quantization of every conv and linear weight to
  ``bits`` bits (:func:`quantize_weights`), *simulated*: the model computes in float32 with the
  rounded weights, and its size is that of the packed codes (:func:`packed_size`);
- **magnitude pruning**: the smallest ``sparsity`` fraction of weights, by absolute value, set
  to zero (:func:`prune_magnitude`, ``torch.nn.utils.prune``), one-shot, without retraining
  (batch-norm statistics are re-estimated afterwards: :func:`recalibrate_batchnorm`);
- **distillation**: small MLP students trained from the standard teacher (:func:`distil_students`);
- and the combinations ``distil+int8``, ``distil+prune``.

Sizes are measured by serialising, never computed from a formula alone:

- ``dense_bytes``: ``torch.save(model.state_dict())`` (:func:`labkd.models.serialized_size`).
  Zeros take as much room as any other float, so a pruned model's dense file does not shrink;
- ``stored_bytes``: the same, in the model's compact encoding: pruned weight matrices as CSR
  (float32 values, 16-bit column indices; :func:`sparse_size`), k-bit weights as packed codes
  plus one scale per output channel (:func:`packed_size`), int8 models as PyTorch stores them.
  This is what the lesson's plot shows;
- ``nonzero``: parameters that are not exactly zero (packed int8 weights counted too).

Latency is measured, not estimated (:func:`latency_ms`): the median over several runs of one
forward pass on a batch of test images, with a fixed number of torch threads.

The methods and measurements live in :mod:`labkd.compression_methods`, the static figure in
:mod:`labkd.compression_figures`; this module holds the lesson's models, recipes, study and findings.

>>> models = train_baselines(transfer, fast=fast, seed=0)
>>> students = distil_students(transfer, teacher, fast=fast, seed=0)
>>> rows = compression_study(data, models, students, teacher)      # one tidy row per variant
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
from torch import nn

from labkd import metrics, stats
from labkd.checks import check_positive_int
from labkd.compression_methods import (
    SIZE_MEASURES, STRENGTH, check_bits, check_method, check_sparsity, compress, measure,
)
from labkd.data import Data
from labkd.experiments import Trained, train_model
from labkd.models import num_parameters, serialized_size
from labkd.progress import RunProgress
from labkd.recipes import Recipes
from labkd.train import TrainConfig

# --------------------------------------------------------------------------------------------
# The models

#: The baselines: name -> (family, architecture, options). Three sizes per family, chosen so that
#: everything trains in a few minutes on two CPU cores (see the lesson's parameters cell).
MODELS: dict[str, tuple[str, str, dict]] = {
    "MLP 32×2": ("MLP", "mlp", {"hidden": (32, 32)}),
    "MLP 128×2": ("MLP", "mlp", {"hidden": (128, 128)}),
    "MLP 512×2": ("MLP", "mlp", {"hidden": (512, 512)}),
    "CNN 8-16-32": ("CNN", "cnn", {"channels": (8, 16, 32)}),
    "CNN 16-32-64": ("CNN", "cnn", {"channels": (16, 32, 64)}),
    "CNN 32-64-128": ("CNN", "cnn", {"channels": (32, 64, 128)}),
    "ResNet-8": ("ResNet", "resnet", {"depth": "simple", "width": 8}),
    "ResNet-14": ("ResNet", "resnet", {"depth": "medium", "width": 8}),
    "ResNet-20": ("ResNet", "resnet", {"depth": "deep", "width": 8}),
}
FAMILIES = ("MLP", "CNN", "ResNet")
#: Students distilled from the teacher: the MLP baselines' sizes (same seed, same initial weights).
STUDENTS = ("MLP 32×2", "MLP 128×2", "MLP 512×2")

#: Epochs per family in full mode (fast mode: 2, see :data:`RECIPES`). Conv nets see fewer epochs: each costs more.
EPOCHS = {"mlp": 10, "cnn": 3, "resnet": 2}
#: Learning rates: 0.02 for MLPs (lessons 01-05: 0.05 can make distilled MLP students diverge;
#: the MLP baselines use the same rate so that a student and its baseline differ only in the
#: loss), 0.05 for the batch-normalised conv nets.
LEARNING_RATES = {"mlp": 0.02, "cnn": 0.05, "resnet": 0.05}
TEMPERATURE = 4.0
ALPHA = 0.9
#: The recipes, as data: the labels-only recipe of each family (SGD + Nesterov, cosine schedule, no
#: augmentation; :data:`EPOCHS` epochs of batches of 128 at :data:`LEARNING_RATES`) and the MLP
#: students' (the MLP recipe with Hinton's loss, T = 4, alpha = 0.9). Fast mode: 2 epochs of
#: batches of 32, so that a 1,000-image transfer set still gives 60 steps. ``RECIPES("cnn", fast, seed=s)``.
_LABELS = {arch: TrainConfig(epochs=EPOCHS[arch], batch_size=128, lr=LEARNING_RATES[arch]) for arch in EPOCHS}
RECIPES = Recipes(_LABELS | {"student": _LABELS["mlp"].replace(loss="distillation", temperature=TEMPERATURE, alpha=ALPHA)},
                  fast={name: {"epochs": 2, "batch_size": 32} for name in (*EPOCHS, "student")})

#: Training images every model of the lesson learns from (full mode, fast mode).
TRANSFER_SIZE = {False: 12000, True: 1000}


def transfer_set(data: Data, fast: bool, seed: int = 0) -> Data:
    """The lesson's training set: a seeded subset of :data:`TRANSFER_SIZE` images (all of
    ``data.train`` when it is smaller). Validation and test splits are unchanged."""
    n = TRANSFER_SIZE[bool(fast)]
    return data if n >= len(data.train) else data.subset(n_train=n, seed=seed)


def _check_names(names: Iterable[str] | None, allowed: Sequence[str], argument: str) -> list[str]:
    out = list(allowed if names is None else names)
    unknown = [n for n in out if n not in allowed]
    if unknown or not out:
        raise ValueError(f"{argument} must name some of {list(allowed)}, got {out!r}")
    return out


def train_baselines(data: Data, fast: bool, seed: int = 0, names: Iterable[str] | None = None,
                    progress: bool | None = None) -> dict[str, Trained]:
    """Train each baseline of :data:`MODELS` (or just ``names``) on labels, cached. -> {name: Trained}."""
    chosen = _check_names(names, list(MODELS), "names")
    tracker = RunProgress(len(chosen), "baselines", progress)
    out = {}
    for name in chosen:
        _, arch, options = MODELS[name]
        out[name] = train_model(arch, data, RECIPES(arch, fast, seed=seed), progress=False,
                                label=f"lesson 12 baseline {name} seed={seed} on {data.name}", **options)
        tracker.step(name)
    tracker.close()
    return out


def distil_students(data: Data, teacher: Trained | nn.Module, fast: bool, seed: int = 0,
                    names: Iterable[str] | None = None, progress: bool | None = None) -> dict[str, Trained]:
    """Distil each MLP size of :data:`STUDENTS` from ``teacher`` (:data:`RECIPES` ``"student"``), cached.

    A student starts from the same weights as the baseline of its size and seed."""
    chosen = _check_names(names, list(STUDENTS), "names")
    tracker = RunProgress(len(chosen), "students", progress)
    out = {}
    for name in chosen:
        _, arch, options = MODELS[name]
        out[name] = train_model(arch, data, RECIPES("student", fast, seed=seed), teacher=teacher, progress=False,
                                label=f"lesson 12 distilled {name} seed={seed} on {data.name}", **options)
        tracker.step(name)
    tracker.close()
    return out


# --------------------------------------------------------------------------------------------
# The study


def _model(obj: Trained | nn.Module) -> nn.Module:
    return obj.model if isinstance(obj, Trained) else obj


def compression_study(
    data: Data, baselines: Mapping[str, Trained], students: Mapping[str, Trained],
    teacher: Trained | nn.Module | None = None, sparsities: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
    bits: Sequence[int] = (8, 4, 2), latency_batch_size: int = 256, runs: int = 5, threads: int = 1,
    calibration_images: int = 2000, progress: bool | None = None, on_run: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Every compression of every model, measured on ``data.test``: one tidy row per variant.

    Rows: ``model`` (the uncompressed model's name), ``family`` ("MLP", "CNN", "ResNet",
    "student", "teacher"), ``method``, ``strength`` (bits, sparsity, student name or None),
    ``label`` (one line for hover text), ``parent`` (the label of the model it was compressed
    from, for arrows), plus everything :func:`measure` returns. Baselines get ``float32``,
    ``int8``, ``kbit`` at each of ``bits`` and ``prune`` at each of ``sparsities``; students get
    ``distil``, ``distil+int8`` and ``distil+prune``. Latency: a batch of the first
    ``latency_batch_size`` test images, median of ``runs`` runs, ``threads`` torch threads.
    Pruned and k-bit models re-estimate their batch-norm statistics on the first
    ``calibration_images`` training images (0: not at all).
    """
    sparsities = [check_sparsity(s) for s in sparsities]
    bits = [check_bits(b) for b in bits]
    check_positive_int(latency_batch_size, "latency_batch_size")
    if not baselines and not students:
        raise ValueError("give at least one trained baseline or student to compress")
    for name in students:
        if name not in MODELS:
            raise ValueError(f"student {name!r} is not one of the lesson's models {list(MODELS)}")
    if isinstance(calibration_images, bool) or not isinstance(calibration_images, int) or calibration_images < 0:
        raise ValueError(f"calibration_images must be a non-negative integer, got {calibration_images!r}")
    calibration = data.train.x[:calibration_images] if calibration_images else None
    batch = data.test.x[:latency_batch_size]
    jobs: list[tuple[str, str, str, float | int | str | None, nn.Module, str | None]] = []
    if teacher is not None:
        jobs.append(("teacher", "teacher", "float32", None, _model(teacher), None))
    for name, trained in baselines.items():
        family = MODELS[name][0] if name in MODELS else "other"
        parent = f"{name} · float32"
        jobs.append((name, family, "float32", None, _model(trained), None))
        jobs.append((name, family, "int8", None, _model(trained), parent))
        jobs += [(name, family, "kbit", b, _model(trained), parent) for b in bits]
        jobs += [(name, family, "prune", s, _model(trained), parent) for s in sparsities]
    for name, trained in students.items():
        parent = f"{name} · distil"
        twin = f"{name} · float32" if name in baselines else None  # the labels-only model of its size
        jobs.append((name, "student", "distil", name, _model(trained), twin))
        jobs.append((name, "student", "distil+int8", name, _model(trained), parent))
        jobs += [(name, "student", "distil+prune", s, _model(trained), parent) for s in sparsities]
    tracker = RunProgress(len(jobs), "measuring", progress)
    rows = []
    for i, (name, family, method, strength, model, parent) in enumerate(jobs, start=1):
        variant = compress(model, method, strength if STRENGTH[method] in ("bits", "sparsity") else None, calibration)
        label = f"{name} · {method}" + ("" if strength is None or STRENGTH[method] == "student"
                                        else f" {strength:g} bits" if method == "kbit" else f" {strength:.0%}")
        rows.append({"model": name, "family": family, "method": method, "strength": strength, "label": label,
                     "parent": parent, **measure(variant, data, batch, runs=runs, threads=threads)})
        tracker.step(label)
        if on_run is not None:
            on_run(i, len(jobs))
    tracker.close()
    return rows


def seed_rows(data: Data, baselines: Mapping[str, Trained], students: Mapping[str, Trained], seed: int) -> list[dict]:
    """Test accuracy of labels-only and distilled students of one seed (for the spread over seeds):
    rows ``model``, ``method`` ("float32" or "distil"), ``seed``, ``test_acc``."""
    rows = []
    for method, group in (("float32", baselines), ("distil", students)):
        for name, trained in group.items():
            acc = float((metrics.predict_logits(_model(trained), data.test.x).argmax(1) == data.test.y.cpu()).float().mean())
            rows.append({"model": name, "method": method, "seed": seed, "test_acc": acc})
    return rows


# --------------------------------------------------------------------------------------------
# Reading the results


def select(rows: Sequence[Mapping], method: str, strength: float | int | str | None = None) -> list[Mapping]:
    """The rows of one method at one strength (all strengths when ``strength`` is None).

    Unknown methods, and strengths the study did not measure, are errors that list what exists."""
    check_method(method)
    mine = [r for r in rows if r["method"] == method]
    if strength is None or STRENGTH[method] is None:
        return mine
    available = sorted({r["strength"] for r in mine}, key=str)
    if method in ("prune", "distil+prune"):
        check_sparsity(strength)
        hits = [r for r in mine if abs(float(r["strength"]) - float(strength)) < 1e-9]
    elif method == "kbit":
        check_bits(strength)
        hits = [r for r in mine if r["strength"] == int(strength)]
    else:
        hits = [r for r in mine if r["strength"] == strength]
    if not hits:
        raise ValueError(f"{method} was not measured at {STRENGTH[method]}={strength!r}; measured: {available}")
    return hits


def strengths(rows: Sequence[Mapping], method: str) -> list:
    """The strengths measured for ``method``, in increasing compression (students smallest last)."""
    check_method(method)
    values = list(dict.fromkeys(r["strength"] for r in rows if r["method"] == method))
    if STRENGTH[method] == "bits":
        return sorted(values, reverse=True)
    if STRENGTH[method] == "sparsity":
        return sorted(values)
    if STRENGTH[method] == "student":
        return sorted(values, key=lambda n: -MODELS[n][2]["hidden"][0] if n in MODELS else 0)
    return values


def summary_table(rows: Sequence[Mapping], methods: Sequence[str] | None = None) -> list[dict]:
    """One line per (model, method, strength): accuracy, sizes, compression ratio (stored bytes
    of the float32 parent over this variant's) and latency, formatted for a table."""
    parents = {r["label"]: r for r in rows}
    lines = []
    for r in rows:
        if methods is not None and r["method"] not in methods:
            continue
        ref = parents.get(f"{r['model']} · float32") or r
        lines.append({
            "variant": r["label"], "test acc": f"{r['test_acc']:.2%}",
            "Δ acc vs float32 (points)": f"{(r['test_acc'] - ref['test_acc']) * 100:+.2f}",
            "dense file": _kb(r["dense_bytes"]), "stored": _kb(r["stored_bytes"]),
            "smaller by": f"{ref['stored_bytes'] / r['stored_bytes']:.1f}×",
            "nonzero params": f"{r['nonzero']:,}",
            "latency (ms/batch)": "" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}",
        })
    return lines


def _kb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def findings(rows: Sequence[Mapping], seed_results: Sequence[Mapping] = (), tolerance: float = 0.01) -> list[str]:
    """Sentences for "What we found", computed from the rows (nothing typed by hand):
    int8 and k-bit size ratios and accuracy changes per family, the largest sparsity that stays
    within ``tolerance`` of the dense accuracy, and distilled students against their labels-only
    baselines (against the spread over seeds when ``seed_results`` has several seeds)."""
    out = []
    by_label = {r["label"]: r for r in rows}
    for family in FAMILIES:
        pairs = [(by_label[r["parent"]], r) for r in rows if r["family"] == family and r["method"] == "int8"]
        if pairs:
            ratios = [p["stored_bytes"] / r["stored_bytes"] for p, r in pairs]
            deltas = [(r["test_acc"] - p["test_acc"]) * 100 for p, r in pairs]
            out.append(f"{family}: dynamic int8 made the files {min(ratios):.2f}–{max(ratios):.2f}× smaller, "
                       f"accuracy changed by {min(deltas):+.2f} to {max(deltas):+.2f} points.")
    for name in dict.fromkeys(r["model"] for r in rows if r["method"] == "prune"):
        dense = by_label[f"{name} · float32"]
        ok = [r for r in rows if r["model"] == name and r["method"] == "prune"
              and r["test_acc"] >= dense["test_acc"] - tolerance]
        best = max(ok, key=lambda r: r["strength"]) if ok else None
        points = f"{tolerance * 100:g} point{'s' if tolerance != 0.01 else ''}"
        out.append(f"{name}: " + (f"pruned to {best['strength']:.0%} sparsity losing at most {points} of accuracy "
                                  f"({best['test_acc']:.2%} vs {dense['test_acc']:.2%}), stored "
                                  f"{dense['stored_bytes'] / best['stored_bytes']:.1f}× smaller, dense file unchanged."
                                  if best else f"every sparsity tried lost more than {points} of accuracy."))
    seeds = sorted({r["seed"] for r in seed_results})
    for name in dict.fromkeys(r["model"] for r in seed_results if r["method"] == "distil"):
        kd = [r["test_acc"] for r in seed_results if r["model"] == name and r["method"] == "distil"]
        base = [r["test_acc"] for r in seed_results if r["model"] == name and r["method"] == "float32"]
        if base:
            out.append(f"{name} over {len(seeds)} seed(s): " + stats.compare(kd, base, "distilled", "labels only")["verdict"])
    return out


def student_seed_rows(data: Data, teacher: Trained | nn.Module, fast: bool, seeds: Sequence[int],
                      progress: bool | None = None) -> list[dict]:
    """For each seed: the MLP baselines of :data:`STUDENTS` sizes and the students distilled from
    ``teacher`` (same seed, same initial weights; cached, so the study's seed is reused), as
    :func:`seed_rows` rows. One teacher for every seed: the spread is the students' own."""
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or any(
            isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be distinct non-negative integers, got {seeds!r}")
    rows = []
    for seed in seeds:
        base = train_baselines(data, fast, int(seed), names=STUDENTS, progress=progress)
        students = distil_students(data, teacher, fast, int(seed), progress=progress)
        rows += seed_rows(data, base, students, int(seed))
    return rows


def model_table(baselines: Mapping[str, Trained], students: Mapping[str, Trained] | None = None,
                teacher: Trained | None = None) -> list[dict]:
    """One line per trained model: family, parameters, dense file size, epochs, test accuracy."""
    items = ([("teacher", "teacher (hinton_teacher)", teacher)] if teacher is not None else [])
    items += [(MODELS[n][0], n, t) for n, t in baselines.items()]
    items += [("student", f"{n} (distilled)", t) for n, t in (students or {}).items()]
    return [{"family": family, "model": name, "parameters": f"{num_parameters(t.model):,}",
             "dense file": _kb(serialized_size(t.model)), "epochs": len(t.history),
             "test acc": f"{t.final('test_acc'):.2%}"} for family, name, t in items]


def describe_layers(model: nn.Module) -> list[str]:
    """One line per conv/linear layer (float or quantized): its name and type, e.g.
    ``head.2: DynamicQuantizedLinear``; shows which layers a method changed."""
    out = []
    for name, m in model.named_modules():
        quantized = "quantized" in type(m).__module__ and callable(getattr(m, "weight", None))
        if isinstance(m, (nn.Conv2d, nn.Linear)) or quantized:
            out.append(f"{name}: {type(m).__name__} ({'int8, dynamic' if quantized else 'float32'})")
    return out


def pareto_front(rows: Sequence[Mapping], size: str = "stored_bytes") -> list[Mapping]:
    """The variants no other variant beats on both ``size`` (smaller) and accuracy (higher),
    smallest first."""
    if size not in SIZE_MEASURES:
        raise ValueError(f"size={size!r} is unknown; expected one of {list(SIZE_MEASURES)}")
    ordered = sorted(rows, key=lambda r: (r[size], -r["test_acc"]))
    front, best = [], -1.0
    for r in ordered:
        if r["test_acc"] > best:
            front.append(r)
            best = r["test_acc"]
    return front


def best_under_budgets(rows: Sequence[Mapping], budgets: Sequence[int], size: str = "stored_bytes") -> list[dict]:
    """For each size budget (bytes): the most accurate variant that fits, and the most accurate
    uncompressed baseline that fits (for comparison)."""
    out = []
    for budget in budgets:
        check_positive_int(budget, "each budget")
        fits = [r for r in rows if r[size] <= budget]
        plain = [r for r in fits if r["method"] == "float32" and r["family"] != "teacher"]
        best = max(fits, key=lambda r: r["test_acc"]) if fits else None
        base = max(plain, key=lambda r: r["test_acc"]) if plain else None
        out.append({"budget": _kb(budget), "best variant": best["label"] if best else "nothing fits",
                    "its accuracy": f"{best['test_acc']:.2%}" if best else "",
                    "its size": _kb(best[size]) if best else "",
                    "best uncompressed baseline": base["label"] if base else "nothing fits",
                    "baseline accuracy": f"{base['test_acc']:.2%}" if base else ""})
    return out


#: Published MNIST numbers to set beside ours (typed from the papers, with the source).
PAPER_RESULTS = (
    {"source": "Han et al. 2016, Deep Compression (ICLR)", "model": "LeNet-300-100 (MLP)",
     "method": "prune to 8% of weights + retrain, trained quantization, Huffman",
     "accuracy": "98.42% (baseline 98.36%)",
     "size": "1070 kB → 27 kB (40×)"},
    {"source": "Han et al. 2016, Deep Compression (ICLR)", "model": "LeNet-5 (CNN)",
     "method": "prune to 8% of weights + retrain, trained quantization, Huffman",
     "accuracy": "99.26% (baseline 99.20%)",
     "size": "1720 kB → 44 kB (39×)"},
    {"source": "Hinton et al. 2015, Distilling the Knowledge", "model": "784-800-800-10 MLP student",
     "method": "distilled from a 1200-1200 teacher (T = 20)", "accuracy": "74 test errors (146 labels only)",
     "size": "same size, more accurate"},
)


def same_start(baselines: Mapping[str, Trained], students: Mapping[str, Trained]) -> list[str]:
    """Proof of a fair comparison (:func:`labkd.stats.same_start`): for each student, the norm of
    its first layer *before* training and that of the labels-only baseline of its size (equal:
    same initial weights)."""
    missing = [name for name in students if name not in baselines]
    if missing:
        raise ValueError(f"no labels-only baseline named {missing[0]!r} to compare the student with")
    return stats.same_start({name: [metrics.first_layer_norm(baselines[name]), metrics.first_layer_norm(student)]
                             for name, student in students.items()}, what="first-layer norm")
