"""Lesson 13 (where the literature goes next): the course at a glance.

Every method the course registers (:func:`course_methods`), four later works and how to try
them here (:data:`LITERATURE`), the numbers the lessons recorded in an earlier ``labkd run``
(:func:`recorded_results`, :func:`results_table`, :func:`retention`) and DistilBERT's size and
speed quantities for the course's teacher/student pairs (:func:`course_pairs`, :func:`speed_table`).
Nothing here trains.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from labkd import crd, feature_losses, objectives
from labkd.data import Data
from labkd.models import BlockModel, build_model, num_parameters
from labkd.threads import fixed_threads



#: Where each of the course's objectives and feature losses is taught, and its family.
_LESSONS = {"cross_entropy": "all (baseline)", "soft_target": "01, 02", "distillation": "01-05, 11",
            "logit_matching": "01", "hint": "03", "feature_kd": "11", crd.CRD.name: "11", "attention": "11",
            "rkd_distance": "11", "rkd_angle": "11", "rkd": "11"}
_FAMILIES = {"cross_entropy": "— (labels)", "soft_target": "response", "distillation": "response",
             "logit_matching": "response", "hint": "feature", "feature_kd": "response + feature or relation",
             "crd": "contrastive (+ response)"}


def _use(name: str, cls: type) -> str:
    layers = ", hint_layer=..., guided_layer=..." if "hint_layer" in cls.config_fields else ""
    extra = ", feature_loss=..." if "feature_loss" in cls.config_fields else ""
    options = f", objective_options={{{', '.join(f'{k!r}: ...' for k in cls.defaults)}}}" if cls.defaults else ""
    return f"TrainConfig(loss={name!r}{extra}{layers}{options})"


def course_methods() -> list[dict]:
    """Every objective registered in :data:`labkd.objectives.OBJECTIVES` (what ``TrainConfig.loss``
    names) and every feature loss of :data:`labkd.feature_losses.FEATURE_LOSSES` (what
    ``loss="feature_kd"`` adds): name, family, where it is defined and taught, how to use it."""
    rows = []
    for name, cls in objectives.OBJECTIVES.items():
        rows.append({"loss": name, "family": _FAMILIES.get(name, "?"), "defined in": f"{cls.__module__}.{cls.__name__}",
                     "lessons": _LESSONS.get(name, ""), "in fit": _use(name, cls)})
    for name, entry in feature_losses.FEATURE_LOSSES.items():
        rows.append({"loss": name, "family": entry.family, "defined in": f"labkd.feature_losses.{entry.fn.__name__}",
                     "lessons": _LESSONS.get(name, ""),
                     "in fit": f"TrainConfig(loss='feature_kd', feature_loss={name!r}, "
                               f"feature_weight={entry.weight:g}, hint_layer=..., guided_layer=...)"})
    return rows


#: Four directions the literature took, with the paper's headline and how to try it here.
LITERATURE: list[dict] = [
    {"work": "DistilBERT", "paper": "Sanh et al. 2019", "url": "https://arxiv.org/abs/1910.01108",
     "idea": "distil BERT during pre-training: soft-target loss + masked-LM loss + cosine loss on hidden states; "
             "student = half the layers, initialised from every other teacher layer",
     "headline": "40% smaller, 60% faster, keeps 97% of BERT's GLUE score",
     "in labkd": "lesson 01 loss + a hidden-state term: TrainConfig(loss='feature_kd', alpha=0.9, ...); "
                 "initialise from the teacher with train_model(..., init=...)"},
    {"work": "MiniLM", "paper": "Wang et al. 2020", "url": "https://arxiv.org/abs/2002.10957",
     "idea": "deep self-attention distillation: match the last layer's attention distributions and "
             "value-relations (no layer mapping, any student width)",
     "headline": "keeps more than 99% of the teacher's accuracy on SQuAD 2.0 and several GLUE tasks with "
                 "50% of its parameters and computation",
     "in labkd": "closest analogue: attention transfer on the last layer only, "
                 "TrainConfig(loss='feature_kd', feature_loss='attention', hint_layer=..., guided_layer=...)"},
    {"work": "TAKD", "paper": "Mirzadeh et al. 2020", "url": "https://arxiv.org/abs/1902.03393",
     "idea": "when the teacher is much larger than the student, distil through an intermediate "
             "teacher assistant",
     "headline": "teacher → assistant → student beats teacher → student on CIFAR and ImageNet",
     "in labkd": "lesson 04: teacher_size.teacher_assistant(data, family, student_hidden, [assistant_hidden], "
                 "config)"},
    {"work": "CRD", "paper": "Tian et al. 2020", "url": "https://arxiv.org/abs/1910.10699",
     "idea": "contrastive representation distillation: make the student's embedding of an image "
             "closer to the teacher's embedding of the same image than to other images' (InfoNCE with "
             "a memory bank of negatives)",
     "headline": "outperformed KD and about a dozen other distillers (FitNets, AT, RKD, ...) on CIFAR-100 "
                 "teacher/student pairs and ImageNet",
     "in labkd": "lesson 11's 'CRD + KD' student: TrainConfig(loss='crd', feature_weight=..., hint_layer=..., "
                 "guided_layer=...), one registered objective in labkd/crd.py (heads and memory bank included)"},
]


def literature() -> list[dict]:
    """:data:`LITERATURE` as table rows (work, paper, headline, how to try it in labkd)."""
    return [{k: r[k] for k in ("work", "paper", "headline", "in labkd")} for r in LITERATURE]


def recorded_results(folder: Path | str | None = None) -> dict[str, dict]:
    """Key results the lessons recorded in an earlier ``labkd run`` (``<stem>.results.json`` files
    in ``folder``, default :func:`labkd.paths.reports_dir`), by notebook; {} when there are none.
    Unreadable files are skipped."""
    from labkd.paths import reports_dir

    folder = Path(folder) if folder is not None else reports_dir()
    found = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.results.json")):
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(values, dict):
            found[path.name[: -len(".results.json")]] = values
    return found


def results_table(results: Mapping[str, Mapping],
                  keys: Sequence[str] = ("accuracy", "error", "agreement")) -> list[dict]:
    """Rows ``{notebook, result, value}`` of the recorded numbers whose name contains one of ``keys``."""
    rows = []
    for notebook, values in results.items():
        for key, value in values.items():
            if any(k in key for k in keys) and isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"notebook": notebook, "result": key, "value": round(float(value), 4)})
    return rows


def retention(results: Mapping[str, Mapping]) -> list[dict]:
    """DistilBERT's "keeps 97% of the teacher's performance", for every recorded student: rows
    ``{notebook, student, student accuracy %, teacher accuracy %, retained %}`` from notebooks
    that recorded ``teacher_accuracy`` (a fraction) and ``<student>_test_accuracy_pct`` or
    ``<student>_test_error_pct`` (percent)."""
    rows = []
    for notebook, values in results.items():
        teacher = values.get("teacher_accuracy")
        if not isinstance(teacher, (int, float)) or not teacher > 0:
            continue
        for key, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key.endswith("_test_accuracy_pct"):
                name, acc = key[: -len("_test_accuracy_pct")], float(value)
            elif key.endswith("_test_error_pct"):
                name, acc = key[: -len("_test_error_pct")], 100.0 - float(value)
            else:
                continue
            rows.append({"notebook": notebook, "student": name, "student accuracy %": round(acc, 2),
                         "teacher accuracy %": round(100 * teacher, 2), "retained %": round(acc / teacher, 1)})
    return rows


@torch.no_grad()
def latency_ms(model: nn.Module, input_shape: Sequence[int] = (1, 28, 28), batch_size: int = 256,
               repeats: int = 5) -> float:
    """Median milliseconds of one forward pass over a batch on the CPU (one thread, eval mode)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    model = model.eval().cpu()
    x = torch.zeros(batch_size, *input_shape)
    times = []
    with fixed_threads():
        model(x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))


#: The course's teacher/student pairs as data: ``{name: ((arch, options), (arch, options))}``
#: (lesson 13 describes them; it imports no lesson module). Keep in step with the lessons'
#: TEACHER/STUDENT constants (``fitnets``, ``taxonomy``); the last pair is lesson 03's.
COURSE_PAIRS: dict[str, tuple[tuple[str, dict], tuple[str, dict]]] = {
    "MLP 1200-1200 → 800-800 (lessons 01-02)": (("hinton_teacher", {}), ("hinton_student", {})),
    "MLP 1200-1200 → 30-30 (lessons 02, 04)": (("hinton_teacher", {}), ("small_student", {})),
    "CNN 16-32-64 → 8-16-32 (lesson 11)": (("cnn", {"channels": (16, 32, 64)}), ("cnn", {"channels": (8, 16, 32)})),
    "CNN 3 wide → 6 thin layers (lesson 03)": (("fitnet_teacher", {"channels": (32, 64, 128)}), ("fitnet_student", {})),
}


def course_pairs(data: Data) -> dict[str, tuple[BlockModel, BlockModel]]:
    """:data:`COURSE_PAIRS` built for ``data``, untrained (size and speed do not depend on the weights)."""
    shape, c = data.input_shape, data.num_classes
    return {name: tuple(build_model(arch, shape, c, **options) for arch, options in pair)
            for name, pair in COURSE_PAIRS.items()}


def speed_table(pairs: Mapping[str, tuple[nn.Module, nn.Module]], repeats: int = 5) -> list[dict]:
    """For each ``{name: (teacher, student)}``: parameters, relative size and CPU inference time
    of the student — the quantities DistilBERT reports (40% smaller, 60% faster)."""
    rows = []
    for name, (teacher, student) in pairs.items():
        pt, ps = num_parameters(teacher), num_parameters(student)
        shape = tuple(teacher.spec["input_shape"]) if hasattr(teacher, "spec") else (1, 28, 28)
        tt, ts = latency_ms(teacher, shape, repeats=repeats), latency_ms(student, shape, repeats=repeats)
        rows.append({"pair": name, "teacher params": pt, "student params": ps,
                     "student / teacher params": round(ps / pt, 3),
                     "teacher ms / 256 images": round(tt, 1), "student ms / 256 images": round(ts, 1),
                     "speed-up x": round(tt / ts, 2) if ts > 0 else float("nan")})
    return rows
