r"""Three kinds of knowledge, one student: response-, feature- and relation-based distillation.

Lesson 11 distils the same CNN student (lesson 03's ``fitnet_student``) from the same CNN
teacher four ways, all with :func:`labkd.train.fit`:

==============  =========  ===================================================================
method          family     objective
==============  =========  ===================================================================
labels only     —          cross-entropy
KD              response   Hinton's :func:`labkd.losses.distillation_loss` (T = 4, α = 0.9)
AT              feature    CE + β · :func:`labkd.feature_losses.attention_transfer_loss`
RKD             relation   CE + β · :func:`labkd.feature_losses.rkd_loss` (distances + angles)
==============  =========  ===================================================================

(``"KD + AT"`` and ``"KD + RKD"`` add the feature term to KD instead of the cross-entropy.)

>>> run = fitnets.plan(fast)                     # lesson 03's sizes and cached teacher
>>> teacher = fitnets.train_teacher(data, run)
>>> rows = compare(fitnets.lesson_data(data, run), teacher, METHODS_DEFAULT, run.seeds, fitnets.student_config(run))
>>> summarize(rows)                               # accuracy, agreement with the teacher, time

Each row also says how closely the student matches the teacher in each kind of knowledge
(:func:`probe`): soft targets (KL), attention maps (AT distance) and relations (RKD distance).
The closing lesson (13) uses :func:`course_methods`, :func:`literature`, :func:`recorded_results`
and :func:`speed_table`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor, nn

from labkd import feature_losses, fitnets, losses, metrics
from labkd.data import Data
from labkd.experiments import Trained, train_model
from labkd.models import BlockModel, build_model, num_parameters
from labkd.plots import mean_std
from labkd.train import TrainConfig

#: The layers compared by AT and RKD: the last conv layer of each network (7x7 maps on MNIST;
#: 128 teacher channels, 32 student channels). RKD pools them to embeddings (what the heads see).
HINT_LAYER = "conv3"
GUIDED_LAYER = "conv6"
#: Temperature at which :func:`probe` compares soft targets (the KD students' temperature).
PROBE_TEMPERATURE = 4.0


@dataclass(frozen=True)
class Method:
    """One way of training the student: its knowledge ``family`` and the config changes."""

    name: str
    family: str
    changes: Mapping[str, object]
    matches: str

    def config(self, base: TrainConfig, beta: float | None = None) -> TrainConfig:
        """``base`` (the students' recipe) with this method's loss; ``beta`` overrides β."""
        changes = dict(self.changes)
        if beta is not None:
            if changes.get("loss") != "feature_kd":
                raise ValueError(f"beta only applies to feature or relation methods, not {self.name!r}")
            changes["feature_weight"] = float(beta)
        return base.replace(**changes)


def _feature(name: str, alpha: float) -> dict:
    entry = feature_losses.get(name)
    return {"loss": "feature_kd", "alpha": alpha, "feature_loss": name, "feature_weight": entry.weight,
            "hint_layer": HINT_LAYER, "guided_layer": GUIDED_LAYER}


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("labels only", "none", {"loss": "cross_entropy"}, "the labels"),
    Method("KD", "response", {"loss": "distillation"}, "the teacher's softened outputs"),
    Method("AT", "feature", _feature("attention", 0.0), "where the teacher's last conv layer is active"),
    Method("RKD", "relation", _feature("rkd", 0.0), "distances and angles between examples' embeddings"),
    Method("KD + AT", "response + feature", _feature("attention", 0.9), "soft outputs and attention maps"),
    Method("KD + RKD", "response + relation", _feature("rkd", 0.9), "soft outputs and relations"),
)}
METHODS_DEFAULT = ("labels only", "KD", "AT", "RKD")
COLOURS = {"labels only": "#7f7f7f", "KD": "#1f77b4", "AT": "#2ca02c", "RKD": "#9467bd",
           "KD + AT": "#17becf", "KD + RKD": "#e377c2", "teacher": "#d62728"}
#: The three kinds of knowledge :func:`probe` measures, with the column names it uses.
PROBES = {"kl": "soft targets: KL(T=4)", "attention": "attention maps: AT distance",
          "relation": "relations: RKD-D distance"}


def check_methods(methods: Sequence[str]) -> list[str]:
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise ValueError(f"methods must be a non-empty list of names from {tuple(METHODS)}; got {methods!r}")
    return methods


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    return seeds


def _model(model: nn.Module | Trained) -> BlockModel:
    return model.model if isinstance(model, Trained) else model


def methods_table(methods: Sequence[str] = METHODS_DEFAULT) -> list[dict]:
    """Rows describing ``methods``: family, what the student is asked to match, the TrainConfig changes."""
    rows = []
    for name in check_methods(methods):
        m = METHODS[name]
        changes = ", ".join(f"{k}={v!r}" for k, v in m.changes.items() if k not in ("hint_layer", "guided_layer"))
        rows.append({"method": name, "family": m.family, "the student matches": m.matches, "TrainConfig": changes})
    return rows


#: What the papers report, in words (their settings are far from ours: see lesson 11's "What we found").
PAPER_CLAIMS: list[dict] = [
    {"method": "KD", "paper": "Hinton et al. 2015", "setting": "MNIST MLPs; speech recognition",
     "claim": "the distilled student gets much of the teacher's (or an ensemble's) gain over training on labels"},
    {"method": "AT", "paper": "Zagoruyko & Komodakis 2017",
     "setting": "CIFAR-10 wide ResNets; ImageNet ResNet-34 → 18",
     "claim": "consistent gains over the student alone, about 1 point of top-1 error on ImageNet; AT and KD add up"},
    {"method": "RKD", "paper": "Park et al. 2019",
     "setting": "metric learning (CUB-200, Cars-196); CIFAR-100, Tiny ImageNet",
     "claim": "students taught by RKD beat their teachers at image retrieval; in classification RKD helps most "
              "combined with KD"},
]


def attention_figure(model: nn.Module | Trained, x: Tensor, layers: Sequence[str] | None = None,
                     attention_map: Callable[[Tensor], Tensor] = feature_losses.attention_map) -> go.Figure:
    """Images ``x`` (B, 1, H, W) in the first column and ``model``'s attention maps at ``layers``
    (default: every block) beside them, computed with ``attention_map`` ((N, C, h, w) -> (N, h·w))."""
    model = _model(model)
    layers = list(layers) if layers is not None else model.feature_names
    mode = model.training
    model.eval()
    with torch.no_grad(), fitnets.threads():
        _, feats = model.forward_features(x.to(next(model.parameters()).device))
    model.train(mode)
    fig = make_subplots(rows=len(x), cols=len(layers) + 1, column_titles=["image", *layers],
                        horizontal_spacing=0.02, vertical_spacing=0.02)
    for r in range(len(x)):
        fig.add_trace(go.Heatmap(z=x[r, 0].cpu().numpy(), colorscale="gray_r", showscale=False, hoverinfo="skip"),
                      row=r + 1, col=1)
        for c, layer in enumerate(layers, start=2):
            f = feats[layer][r:r + 1].cpu()
            q = attention_map(f).reshape(f.shape[2:])
            fig.add_trace(go.Heatmap(z=q.numpy(), colorscale="Viridis", showscale=False,
                                     hovertemplate="%{z:.3f}<extra></extra>"), row=r + 1, col=c)
    fig.update_xaxes(visible=False).update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(height=110 * len(x) + 60, width=110 * (len(layers) + 1) + 80, margin=dict(l=10, r=10, t=40, b=10))
    return fig


# --------------------------------------------------------------------------------------------
# Training


@torch.no_grad()
def embeddings(model: nn.Module | Trained, x: Tensor, layer: str) -> Tensor:
    """``model``'s ``layer`` output for images ``x``, pooled to (N, C) (eval mode, no gradient)."""
    model = _model(model)
    mode = model.training
    model.eval()
    with fitnets.threads():
        _, feats = model.forward_features(x.to(next(model.parameters()).device), upto=layer)
    model.train(mode)
    return feature_losses.embed(feats[layer]).cpu()


def seed_students(data: Data, teacher: nn.Module | Trained, methods: Sequence[str], config: TrainConfig,
                  progress: bool | None = None) -> dict[str, Trained]:
    """``{method: student}`` for ``config.seed`` (cached: already trained by :func:`compare`)."""
    return {m: train_student(data, teacher, m, config, progress=progress) for m in check_methods(methods)}


def train_student(data: Data, teacher: nn.Module | Trained, method: str, config: TrainConfig,
                  beta: float | None = None, progress: bool | None = None) -> Trained:
    """The ``fitnet_student`` trained by ``method`` (a key of :data:`METHODS`) with the recipe
    ``config`` (seed included); cached. Every method of one seed starts from the same weights."""
    m = METHODS[check_methods([method])[0]]
    cfg = m.config(config, beta)
    with fitnets.threads():
        return train_model(fitnets.STUDENT, data, cfg, teacher=None if cfg.loss == "cross_entropy" else teacher,
                           progress=progress, label=f"taxonomy lesson: {fitnets.STUDENT} {method} "
                           f"(beta={cfg.feature_weight if cfg.loss == 'feature_kd' else '-'}) seed={cfg.seed} "
                           f"on {data.name}, {len(data.train)} images")


@torch.no_grad()
def probe(student: nn.Module | Trained, teacher: nn.Module | Trained, x: Tensor,
          hint_layer: str = HINT_LAYER, guided_layer: str = GUIDED_LAYER,
          temperature: float = PROBE_TEMPERATURE, batch_size: int = 250) -> dict[str, float]:
    """How closely ``student`` matches ``teacher`` on images ``x`` (N, C, H, W), three ways:

    - ``kl``: KL(teacher‖student) of soft targets at ``temperature`` (response);
    - ``attention``: :func:`~labkd.feature_losses.attention_transfer_loss` at the layer pair (feature);
    - ``relation``: :func:`~labkd.feature_losses.rkd_distance_loss` of the pooled embeddings (relation),
      averaged over chunks of ``batch_size`` images (relations are measured within a batch).

    Lower is closer; 0 means identical. Eval mode; the models' modes are restored.
    """
    student, teacher = _model(student), _model(teacher)
    if not isinstance(x, Tensor) or x.ndim != 4 or len(x) < 2:
        raise ValueError(f"x must be a batch of at least 2 images (N, C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    modes = (student.training, teacher.training)
    student.eval(), teacher.eval()
    device = next(student.parameters()).device
    teacher.to(device)
    sums = {"kl": 0.0, "attention": 0.0, "relation": 0.0}
    chunks = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
    chunks = [c for c in chunks if len(c) >= 2]
    with fitnets.threads():
        for chunk in chunks:
            chunk = chunk.to(device)
            s_logits, s_feats = student.forward_features(chunk)
            t_logits, t_feats = teacher.forward_features(chunk)
            s, t = s_feats[guided_layer], t_feats[hint_layer]
            sums["kl"] += metrics.mean_kl(t_logits, s_logits, temperature) * len(chunk)
            sums["attention"] += float(feature_losses.attention_transfer_loss(s, t)) * len(chunk)
            sums["relation"] += float(feature_losses.rkd_distance_loss(feature_losses.embed(s),
                                                                       feature_losses.embed(t))) * len(chunk)
    student.train(modes[0]), teacher.train(modes[1])
    n = sum(len(c) for c in chunks)
    return {k: v / n for k, v in sums.items()}


def compare(data: Data, teacher: nn.Module | Trained, methods: Sequence[str], seeds: Sequence[int],
            config: TrainConfig, n_probe: int = 1000, progress: bool | None = None,
            on_run: Callable[[str, int], None] | None = None) -> list[dict]:
    """Train the student by every method for every seed (cached) and measure each one.

    Returns one row per (method, seed): ``method``, ``family``, ``seed``, ``accuracy`` (test),
    ``agreement`` (top-1 agreement with the teacher on the test split), ``seconds`` (training),
    ``curve`` (test accuracy per epoch), ``params``, ``start_norm`` (first-layer weight norm before
    training: equal across methods of one seed) and the three :func:`probe` distances on the first
    ``n_probe`` test images.
    """
    methods, seeds = check_methods(methods), _check_seeds(seeds)
    if isinstance(n_probe, bool) or not isinstance(n_probe, int) or n_probe < 2:
        raise ValueError(f"n_probe must be an integer >= 2, got {n_probe!r}")
    teacher_model = _model(teacher)
    with fitnets.threads():
        teacher_test = metrics.predict_logits(teacher_model, data.test.x)
    x_probe = data.test.x[:n_probe]
    rows = []
    for seed in seeds:
        start = build_model(fitnets.STUDENT, data.input_shape, data.num_classes, seed=seed)
        norm = float(start.blocks["conv1"][0].weight.detach().norm())
        for method in methods:
            trained = train_student(data, teacher, method, config.replace(seed=seed), progress=progress)
            with fitnets.threads():
                logits = metrics.predict_logits(trained.model, data.test.x)
            rows.append({
                "method": method, "family": METHODS[method].family, "seed": seed,
                "accuracy": trained.final("test_acc"), "agreement": metrics.agreement(logits, teacher_test),
                "seconds": round(trained.seconds, 1), "curve": [h["test_acc"] for h in trained.history],
                "params": num_parameters(trained.model), "start_norm": norm,
                **probe(trained, teacher_model, x_probe),
            })
            if on_run is not None:
                on_run(method, seed)
    return rows


def _pm(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    mean, std = mean_std(values)
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}" if len(values) > 1 else f"{scale * mean:.{digits}f}"


def summarize(rows: Sequence[Mapping], probes: bool = True) -> list[dict]:
    """One row per method: test accuracy and agreement with the teacher (%, mean ± std over
    seeds), mean training seconds, and (``probes=True``) the three probe distances (mean)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        out.append({
            "method": method, "family": mine[0]["family"], "seeds": len(mine),
            "test accuracy %": _pm([r["accuracy"] for r in mine]),
            "agreement with teacher %": _pm([r["agreement"] for r in mine]),
            "train seconds": round(float(np.mean([r["seconds"] for r in mine])), 1),
            **({PROBES[k]: round(float(np.mean([r[k] for r in mine])), 4) for k in PROBES} if probes else {}),
        })
    return out


def key_results(rows: Sequence[Mapping]) -> dict[str, object]:
    """The numbers lesson 11 records (:func:`labkd.results.record`): per method the mean test
    accuracy and agreement (%), and which method is closest to the teacher in each probe."""
    out: dict[str, object] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        key = method.replace(" + ", "_").replace(" ", "_").lower()
        mine = [r for r in rows if r["method"] == method]
        out[f"{key}_test_accuracy_pct"] = round(100 * float(np.mean([r["accuracy"] for r in mine])), 2)
        out[f"{key}_agreement_pct"] = round(100 * float(np.mean([r["agreement"] for r in mine])), 2)
    out.update({f"closest_in_{p}": closest_method(rows, p) for p in PROBES})
    return out


def best_method(rows: Sequence[Mapping]) -> str:
    """The method with the highest mean test accuracy."""
    methods = dict.fromkeys(r["method"] for r in rows)
    return max(methods, key=lambda m: float(np.mean([r["accuracy"] for r in rows if r["method"] == m])))


def verdict(rows: Sequence[Mapping], method: str, baseline: str, metric: str = "accuracy") -> str:
    """A sentence comparing ``method`` with ``baseline`` on ``metric`` (a row key, e.g.
    ``"accuracy"``, ``"agreement"`` or a probe) and whether the gap exceeds twice the seed spread."""
    a = [r[metric] for r in rows if r["method"] == method]
    b = [r[metric] for r in rows if r["method"] == baseline]
    if not a or not b:
        raise ValueError(f"rows need both {method!r} and {baseline!r}; found {sorted({r['method'] for r in rows})}")
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    k = 100.0 if metric in ("accuracy", "agreement") else 1.0
    unit = " points" if k == 100 else ""
    text = f"{metric}: {method} {k * ma:.4g} vs {baseline} {k * mb:.4g} (difference {k * (ma - mb):+.3g}{unit}"
    if len(a) < 2 or len(b) < 2:
        return text + "). One seed only: this run cannot say whether the difference is real."
    spread = k * max(sa, sb)
    text += f", seed std up to {spread:.3g}{unit} over {min(len(a), len(b))} seeds). "
    if abs(k * (ma - mb)) > 2 * spread:
        return text + "Larger than twice the seed spread: a real difference at this budget."
    return text + "Within twice the seed spread: no clear difference at this budget."


def closest_method(rows: Sequence[Mapping], probe_name: str) -> str:
    """The method whose students are, on average, closest to the teacher in ``probe_name``."""
    if probe_name not in PROBES:
        raise ValueError(f"probe_name={probe_name!r} is unknown; expected one of {tuple(PROBES)}")
    means = {m: float(np.mean([r[probe_name] for r in rows if r["method"] == m]))
             for m in dict.fromkeys(r["method"] for r in rows)}
    return min(means, key=means.get)


# --------------------------------------------------------------------------------------------
# Figures


def comparison_figure(rows: Sequence[Mapping], teacher_accuracy: float | None = None) -> go.Figure:
    """Test accuracy and agreement with the teacher per method: a dot per seed, mean ± std."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["test accuracy %", "top-1 agreement with the teacher %"])
    for col, key in ((1, "accuracy"), (2, "agreement")):
        for method in dict.fromkeys(r["method"] for r in rows):
            values = [100 * r[key] for r in rows if r["method"] == method]
            mean, std = mean_std(values)
            colour = COLOURS.get(method)
            fig.add_trace(go.Scatter(x=[method] * len(values), y=values, mode="markers", showlegend=False,
                                     marker=dict(size=7, opacity=0.5, color=colour)), row=1, col=col)
            fig.add_trace(go.Scatter(x=[method], y=[mean], mode="markers", showlegend=False, name=method,
                                     marker=dict(size=18, symbol="line-ew-open", line_width=3, color=colour),
                                     error_y=dict(type="data", array=[std], color=colour)), row=1, col=col)
    if teacher_accuracy is not None:
        fig.add_hline(y=100 * teacher_accuracy, line_dash="dot", line_color=COLOURS["teacher"],
                      annotation_text="teacher", row=1, col=1)
    fig.update_layout(height=380, title="Same student, same start, four kinds of supervision")
    return fig


def match_figure(rows: Sequence[Mapping]) -> go.Figure:
    """Heatmap: for each method (rows) and kind of knowledge (columns), the mean probe distance
    to the teacher divided by the labels-only student's (1 = no closer than labels alone)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    means = {m: {k: float(np.mean([r[k] for r in rows if r["method"] == m])) for k in PROBES} for m in methods}
    base = means.get("labels only")
    z = [[means[m][k] / base[k] if base and base[k] > 0 else means[m][k] for k in PROBES] for m in methods]
    fig = go.Figure(go.Heatmap(z=z, x=list(PROBES.values()), y=methods, colorscale="RdBu", zmid=1.0,
                               texttemplate="%{z:.2f}", reversescale=False,
                               hovertemplate="%{y}, %{x}: %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=120 + 45 * len(methods), title="Distance to the teacher, relative to the labels-only "
                      "student" if base else "Distance to the teacher", margin=dict(l=10, r=10, t=60, b=10))
    return fig


# --------------------------------------------------------------------------------------------
# What the panel shows: one fixed batch, every model's three kinds of "knowledge"


@dataclass
class RelationSnapshot:
    """Precomputed views of one fixed batch of B test images (all on the CPU).

    ``images`` (B, 1, H, W), ``labels`` (B,); per model name ("teacher" and each method):
    ``probs[name]`` soft targets at ``temperature`` (B, C), ``attention[name]`` normalised
    attention maps (B, h, w), ``distances[name]`` RKD-normalised distance matrices (B, B) and
    ``scores[name]`` its :func:`probe` distances to the teacher on this batch.
    """

    images: Tensor
    labels: Tensor
    class_names: list[str]
    temperature: float
    probs: dict[str, Tensor] = field(default_factory=dict)
    attention: dict[str, Tensor] = field(default_factory=dict)
    distances: dict[str, Tensor] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return [n for n in self.probs if n != "teacher"]


def sorted_batch(data: Data, per_class: int = 3) -> Tensor:
    """Indices of ``per_class`` test images of every class, grouped by class (so a distance
    matrix shows blocks when the embedding separates the classes)."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    y = data.test.y.cpu()
    picks = [torch.nonzero(y == c).flatten()[:per_class] for c in range(data.num_classes)]
    return torch.cat(picks)


@torch.no_grad()
def relation_snapshot(teacher: nn.Module | Trained, students: Mapping[str, nn.Module | Trained], data: Data,
                      per_class: int = 3, temperature: float = PROBE_TEMPERATURE,
                      hint_layer: str = HINT_LAYER, guided_layer: str = GUIDED_LAYER) -> RelationSnapshot:
    """Everything :class:`labkd.widgets.taxonomy.TaxonomyPanel` shows, computed once (no training)."""
    if not students:
        raise ValueError("students is empty: give at least one {method: trained student}")
    idx = sorted_batch(data, per_class)
    x = data.test.x[idx].cpu()
    snap = RelationSnapshot(images=x, labels=data.test.y[idx].cpu(), class_names=list(data.class_names),
                            temperature=float(temperature))
    models = {"teacher": (_model(teacher), hint_layer), **{n: (_model(s), guided_layer) for n, s in students.items()}}
    for name, (model, layer) in models.items():
        mode = model.training
        model.eval()
        device = next(model.parameters()).device
        with fitnets.threads():
            logits, feats = model.forward_features(x.to(device))
        model.train(mode)
        f = feats[layer].cpu()
        snap.probs[name] = torch.softmax(logits.cpu() / temperature, dim=1)
        snap.attention[name] = feature_losses.attention_map(f).reshape(len(x), *f.shape[2:])
        snap.distances[name] = feature_losses.normalized_distances(feature_losses.embed(f))
    for name in snap.methods:
        snap.scores[name] = probe(students[name], teacher, x, hint_layer, guided_layer, temperature)
    return snap


# --------------------------------------------------------------------------------------------
# The course at a glance (lesson 13)


#: Where each of the course's losses is taught and what it transfers.
_LESSONS = {"cross_entropy": "all (baseline)", "soft_target": "01, 02", "distillation": "01-05, 11",
            "logit_matching": "01", "hint": "03", "attention": "11", "rkd_distance": "11", "rkd_angle": "11",
            "rkd": "11"}
_FAMILIES = {"cross_entropy": "— (labels)", "soft_target": "response", "distillation": "response",
             "logit_matching": "response", "hint": "feature"}


def course_methods() -> list[dict]:
    """Every loss registered in :data:`labkd.losses.LOSSES` and
    :data:`labkd.feature_losses.FEATURE_LOSSES`: name, family, where it is taught, how to use it."""
    rows = []
    for name, fn in losses.LOSSES.items():
        use = "TrainConfig(loss='hint', hint_layer=..., guided_layer=...)" if name == "hint" else \
            f"TrainConfig(loss={name!r})"
        rows.append({"loss": name, "family": _FAMILIES.get(name, "?"), "function": f"losses.{fn.__name__}",
                     "lessons": _LESSONS.get(name, ""), "in fit": use})
    for name, entry in feature_losses.FEATURE_LOSSES.items():
        rows.append({"loss": name, "family": entry.family, "function": f"feature_losses.{entry.fn.__name__}",
                     "lessons": _LESSONS.get(name, ""),
                     "in fit": f"TrainConfig(loss='feature_kd', feature_loss={name!r}, "
                               f"feature_weight={entry.weight:g}, "
                               f"hint_layer=..., guided_layer=...)"})
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
                 "TrainConfig(loss='feature_kd', feature_loss='attention', hint_layer='conv3', guided_layer='conv6')"},
    {"work": "TAKD", "paper": "Mirzadeh et al. 2020", "url": "https://arxiv.org/abs/1902.03393",
     "idea": "when the teacher is much larger than the student, distil through an intermediate "
             "teacher assistant",
     "headline": "teacher → assistant → student beats teacher → student on CIFAR and ImageNet",
     "in labkd": "lesson 04: teacher_studies.teacher_assistant(data, family, student_hidden, [assistant_hidden], "
                 "kd_config(fast))"},
    {"work": "CRD", "paper": "Tian et al. 2020", "url": "https://arxiv.org/abs/1910.10699",
     "idea": "contrastive representation distillation: make the student's embedding of an image "
             "closer to the teacher's embedding of the same image than to other images' (InfoNCE with "
             "a memory bank of negatives)",
     "headline": "outperformed KD and about a dozen other distillers (FitNets, AT, RKD, ...) on CIFAR-100 "
                 "teacher/student pairs and ImageNet",
     "in labkd": "not built in: a project. Write crd_loss(student, teacher) with projection heads in "
                 "feature_losses.py; lesson 11's RKD shows the batch-relation machinery to start from"},
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
    with fitnets.threads():
        model(x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))


def course_pairs(data: Data) -> dict[str, tuple[BlockModel, BlockModel]]:
    """The course's teacher/student pairs, untrained (size and speed do not depend on the weights)."""
    shape, c = data.input_shape, data.num_classes

    def mlp(preset: str) -> BlockModel:
        return build_model(preset, shape, c)

    return {
        "MLP 1200-1200 → 800-800 (lessons 01-02)": (mlp("hinton_teacher"), mlp("hinton_student")),
        "MLP 1200-1200 → 30-30 (lessons 02, 04)": (mlp("hinton_teacher"), mlp("small_student")),
        "CNN 3 wide → 6 thin layers (lessons 03, 11)": (fitnets.build_teacher(shape, c),
                                                        fitnets.build_student(shape, c)),
    }


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

