r"""Online and self-distillation: deep mutual learning and born-again networks (lesson 10).

**Deep mutual learning** (Zhang, Xiang, Hospedales & Lu, CVPR 2018,
https://arxiv.org/abs/1706.00384): no pre-trained teacher; a cohort of K students trains at the
same time and each one also learns from the others' predictions. Student k minimises

.. math::
    \mathcal{L}_k = \mathrm{CE}(y, p_k) + \frac{T^2}{K-1}\sum_{j \ne k}
    \mathrm{KL}\big(p_j^{(T)} \,\|\, p_k^{(T)}\big),

with :math:`p^{(T)} = \mathrm{softmax}(z/T)`. The paper uses T = 1. The other students'
predictions are *targets*: no gradient flows through them into their own weights
(:func:`mutual_learning_loss`, :func:`fit_mutual`, :func:`train_mutual`, :func:`mutual_vs_independent`).

**Born-again networks** (Furlanello, Lipton, Tschannen, Itti & Anandkumar, ICML 2018,
https://arxiv.org/abs/1805.04770): generation 0 learns from the labels; generation g, of the
*same* architecture, is distilled from generation g - 1; the generations can also be averaged
into an ensemble (:func:`born_again`, :func:`generation_ensembles`).

>>> rows = mutual_vs_independent(data, (100, 100), config, n_models=2, repeats=3)
>>> ban = born_again(data, (100, 100), config, kd, generations=3, seeds=[0, 1, 2])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkd import cache, metrics
from labkd.data import Data, batches
from labkd.experiments import Trained, train_model
from labkd.losses import check_logits, check_targets, check_temperature, ensemble_probs
from labkd.models import BlockModel, build_model
from labkd.progress import RunProgress, progress_bar
from labkd.checks import check_hidden, check_seeds
from labkd.teacher_studies import check_config, compare, mlp_name, summarize
from labkd.train import TrainConfig, default_device, evaluate_splits, make_optimizer, make_scheduler

MUTUAL = "mutual"
INDEPENDENT = "independent"


def lesson_config(fast: bool, seed: int = 0) -> TrainConfig:
    """Lesson 10's recipe for every network: :func:`labkd.zoo.student_config` (15 epochs, 5 in fast
    mode) with images shifted by up to 2 pixels and a learning rate of 0.02.

    Without augmentation a 784-100-100-10 MLP memorises its 10,000 training images within a few
    epochs; its predictions on them become nearly one-hot, and neither a classmate nor a born-again
    teacher has anything left to pass on. Shifted images are new every epoch. The learning rate is
    the distilled students' of lessons 04-05 (0.05 with the T²-scaled soft-target loss can kill
    ReLU units); every network of the lesson uses it, so the comparisons stay fair."""
    from labkd.zoo import student_config

    return student_config(fast, seed, lr=0.02, jitter=2, **({"epochs": 5} if fast else {}))


# --------------------------------------------------------------------------------------------
# The loss


def mutual_learning_loss(logits_list: Sequence[Tensor], targets: Tensor, temperature: float = 1.0) -> list[Tensor]:
    r"""Deep mutual learning: one loss per student of the cohort.

    :math:`\mathcal{L}_k = \mathrm{CE}(y, z_k) + \frac{T^2}{K-1}\sum_{j\ne k}\mathrm{KL}(p_j^{(T)}\|p_k^{(T)})`.

    The other students' probabilities are detached: ``mutual_learning_loss(...)[k]`` sends
    gradients into ``logits_list[k]`` only, so summing the K losses and calling ``backward``
    once updates every student with its own loss. The KL part is zero when all students agree.

    Args:
        logits_list: K >= 2 tensors (N, C), one per student, on the same examples.
        targets: class ids (N,).
        temperature: T > 0 of the KL part (the paper: 1); the KL is scaled by T².
    Returns: a list of K scalar tensors.
    """
    if isinstance(logits_list, Tensor) or not isinstance(logits_list, Sequence):
        raise TypeError("logits_list must be a list of K >= 2 logit tensors (N, C), one per student")
    if len(logits_list) < 2:
        raise ValueError(f"logits_list must hold at least 2 students' logits (mutual learning needs a cohort), "
                         f"got {len(logits_list)}")
    for k, z in enumerate(logits_list):
        check_logits(z, f"logits_list[{k}]")
        if z.shape != logits_list[0].shape:
            raise ValueError(f"logits_list[{k}] has shape {tuple(z.shape)}, expected {tuple(logits_list[0].shape)} "
                             f"like logits_list[0]: every student sees the same examples and classes")
    y = check_targets(targets, logits_list[0])
    t = check_temperature(temperature)
    k_models = len(logits_list)
    log_p = [F.log_softmax(z / t, dim=-1) for z in logits_list]
    out = []
    for k, z in enumerate(logits_list):
        kl = sum(F.kl_div(log_p[k], log_p[j].detach(), reduction="batchmean", log_target=True)
                 for j in range(k_models) if j != k)
        out.append(F.cross_entropy(z, y) + (t * t) * kl / (k_models - 1))
    return out


# --------------------------------------------------------------------------------------------
# Training a cohort


@dataclass
class MutualResult:
    """What :func:`fit_mutual` returns: the models and one history (list of epoch rows) per model."""

    models: list[nn.Module]
    histories: list[list[dict]] = field(default_factory=list)
    seconds: float = 0.0


def fit_mutual(
    models: Sequence[nn.Module], data: Data, config: TrainConfig, temperature: float = 1.0,
    progress: bool | None = None, device: torch.device | str | None = None,
    on_epoch: Callable[[list[dict]], None] | None = None,
) -> MutualResult:
    """Train a cohort of K >= 2 models in place with :func:`mutual_learning_loss`.

    Every model sees the same batches (order seeded by ``config.seed``, ``config.jitter``) and has
    its own optimiser and schedule built from ``config`` as in :func:`labkd.train.fit`; all are
    updated from one forward pass per batch (the paper alternates the updates; with detached
    targets the two differ only by one step's staleness). ``config.loss``, ``temperature`` and
    ``alpha`` fields are not used: the loss is DML's at ``temperature``.
    History rows per model: ``epoch``, ``loss``, ``train_acc``, ``val_acc``, ``test_acc``, ``seconds``;
    ``on_epoch`` receives the K rows of each epoch.
    """
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"models must hold at least 2 networks (a cohort), got {len(models)}")
    if any(not isinstance(m, nn.Module) for m in models):
        raise TypeError("models must be torch.nn.Module instances")
    if len({id(m) for m in models}) != len(models):
        raise ValueError("models lists the same network twice; build one network per student")
    check_config(config, "config")
    t = check_temperature(temperature)
    device = torch.device(device) if device is not None else default_device()
    data = data.to(device) if data.device != device else data
    for m in models:
        m.to(device)
    result = MutualResult(models=models, histories=[[] for _ in models])
    steps = math.ceil(len(data.train) / config.batch_size)
    bar = progress_bar(config.epochs, "mutual learning", unit="epoch", progress=progress)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        optimizers = [make_optimizer(list(m.parameters()), config) for m in models]
        schedulers = [make_scheduler(o, config, steps) for o in optimizers]
        for epoch in range(1, config.epochs + 1):
            for m in models:
                m.train()
            totals = torch.zeros(len(models), device=device)
            correct = torch.zeros(len(models), device=device)
            for x, y, _ in batches(data.train, config.batch_size, generator=generator, jitter=config.jitter,
                                   background=data.background):
                logits = [m(x) for m in models]
                losses = mutual_learning_loss(logits, y, t)
                for o in optimizers:
                    o.zero_grad(set_to_none=True)
                torch.stack(losses).sum().backward()
                for o, s in zip(optimizers, schedulers, strict=True):
                    o.step()
                    s.step()
                totals += torch.stack([v.detach() for v in losses]) * len(y)
                correct += torch.stack([(z.detach().argmax(1) == y).sum() for z in logits])
            rows = []
            for k, m in enumerate(models):
                rows.append({"epoch": epoch, "model": k, "loss": float(totals[k]) / len(data.train),
                             "train_acc": float(correct[k]) / len(data.train), **evaluate_splits(m, data),
                             "seconds": time.perf_counter() - start})
                result.histories[k].append(rows[-1])
            if on_epoch is not None:
                on_epoch(rows)
            bar.set_postfix(val_acc="/".join(f"{r['val_acc']:.3f}" for r in rows))
            bar.update(1)
    bar.close()
    result.seconds = time.perf_counter() - start
    for m in models:
        m.eval()
    return result


@dataclass
class MutualTrained:
    """A trained cohort (from :func:`train_mutual`): models, per-model histories, cache key."""

    models: list[BlockModel]
    histories: list[list[dict]]
    seeds: list[int]
    key: str
    seconds: float
    cached: bool

    def final(self, k: int, metric: str = "test_acc") -> float:
        return self.histories[k][-1][metric]


def train_mutual(
    data: Data, hidden: Sequence[int], config: TrainConfig, seeds: Sequence[int], temperature: float = 1.0,
    use_cache: bool = True, progress: bool | None = None,
) -> MutualTrained:
    """Build one MLP per seed (``hidden`` widths, initialised with that seed), train them as a
    cohort with :func:`fit_mutual` (batch order from ``config.seed``) and cache the result."""
    hidden = check_hidden(hidden)
    seeds = check_seeds(seeds)
    if len(seeds) < 2:
        raise ValueError(f"seeds must give at least 2 students for a cohort, got {seeds}")
    check_config(config, "config")
    t = check_temperature(temperature)
    models = [build_model("mlp", data.input_shape, data.num_classes, seed=s, hidden=hidden) for s in seeds]
    key = cache.make_key({"kind": "mutual", "models": [m.spec for m in models], "data": data.spec,
                          "train": config.to_dict(), "temperature": t})
    entry = cache.load(key) if use_cache else None
    if entry is not None:
        for k, m in enumerate(models):
            m.load_state_dict({n[len(f"{k}."):]: v for n, v in entry["state_dict"].items() if n.startswith(f"{k}.")})
            m.cache_key = f"{key}#{k}"
            m.eval()
        return MutualTrained(models, [list(h) for h in entry["history"]], seeds, key, float(entry["seconds"]), True)
    result = fit_mutual(models, data, config, t, progress=progress)
    for k, m in enumerate(models):
        m.cache_key = f"{key}#{k}"
    if use_cache:
        state = {f"{k}.{n}": v.detach().cpu() for k, m in enumerate(models) for n, v in m.state_dict().items()}
        cache.save(key, {"state_dict": state, "history": result.histories, "seconds": result.seconds})
        cache.write_description(key, f"mutual learning cohort {mlp_name(hidden, data)} x{len(seeds)} seeds={seeds} T={t:g}")
    return MutualTrained(models, result.histories, seeds, key, result.seconds, False)


def cohort_seeds(repeat: int, n_models: int, first_seed: int = 0) -> list[int]:
    """The student seeds of repeat r: ``first_seed + r*K .. first_seed + r*K + K - 1``."""
    return [first_seed + repeat * n_models + k for k in range(n_models)]


def mutual_vs_independent(
    data: Data, hidden: Sequence[int], config: TrainConfig, n_models: int = 2, repeats: int = 1,
    temperature: float = 1.0, first_seed: int = 0, progress: bool | None = None,
) -> list[dict]:
    """For each repeat, a cohort of ``n_models`` students trained together with DML and the same
    students (same seeds, so the same initial weights; same recipe and epochs) trained alone on
    the labels. Rows, one per student: ``method`` (:data:`MUTUAL` / :data:`INDEPENDENT`),
    ``repeat``, ``model`` (k), ``seed``, ``test_acc``, ``val_acc``, ``train_acc``, ``history``
    and ``agreement`` (top-1 agreement on the test set with the cohort's other students, mean)."""
    hidden = check_hidden(hidden)
    if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 2:
        raise ValueError(f"n_models must be an integer >= 2 (a cohort), got {n_models!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    check_config(config, "config", loss="cross_entropy")
    check_temperature(temperature)
    runs = RunProgress(repeats * (1 + n_models), "runs", progress, None)
    rows: list[dict] = []
    for r in range(repeats):
        seeds = cohort_seeds(r, n_models, first_seed)
        cohort = train_mutual(data, hidden, config.replace(seed=seeds[0]), seeds, temperature, progress=False)
        runs.step(f"cohort {r}")
        alone = []
        for s in seeds:
            alone.append(train_model("mlp", data, config.replace(seed=s), hidden=hidden, progress=False,
                                     label=f"independent {mlp_name(hidden, data)} seed={s}"))
            runs.step(f"independent seed {s}")
        for method, models, histories in ((MUTUAL, cohort.models, cohort.histories),
                                          (INDEPENDENT, [a.model for a in alone], [a.history for a in alone])):
            logits = [metrics.predict_logits(m, data.test.x) for m in models]
            for k, s in enumerate(seeds):
                others = [metrics.agreement(logits[k], logits[j]) for j in range(n_models) if j != k]
                h = histories[k]
                rows.append({"method": method, "repeat": r, "model": k, "seed": s, "test_acc": h[-1]["test_acc"],
                             "val_acc": h[-1]["val_acc"], "train_acc": h[-1]["train_acc"],
                             "agreement": sum(others) / len(others), "history": h,
                             "init_norm": _init_norm(models[k], s, data)})
    runs.close()
    return rows


def _init_norm(model: BlockModel, seed: int, data: Data) -> float:
    fresh = build_model("mlp", data.input_shape, data.num_classes, seed=seed, hidden=tuple(model.spec["hidden"]))
    return float(next(p for n, p in fresh.named_parameters() if n.endswith("weight")).detach().norm())


def mutual_summary(rows: Sequence[dict]) -> dict:
    """Mean ± std test accuracy and agreement of mutual and independent students, and the
    verdict of :func:`labkd.teacher_studies.compare` (beyond the seed spread or not)."""
    if not rows:
        raise ValueError("rows is empty: run mutual_vs_independent first")
    acc = {s["method"]: s for s in summarize(rows, ["method"])}
    agree = {s["method"]: s for s in summarize(rows, ["method"], "agreement")}
    if MUTUAL not in acc or INDEPENDENT not in acc:
        raise ValueError("rows need both mutual and independent students")
    result = compare(acc[MUTUAL]["values"], acc[INDEPENDENT]["values"], "mutual learning", "independent training")
    repeats = len({r["repeat"] for r in rows})
    if repeats < 2:  # the students of one cohort are not independent samples: no claim from one cohort
        result["significant"] = False
        result["verdict"] = (f"mutual learning {acc[MUTUAL]['mean']:.2%} vs independent training "
                             f"{acc[INDEPENDENT]['mean']:.2%} ({result['difference'] * 100:+.2f} points) from a single "
                             f"cohort: no claim either way — run more repeats (fast=False).")
    return {"repeats": repeats, "mutual_acc": acc[MUTUAL]["mean"], "mutual_std": acc[MUTUAL]["std"],
            "independent_acc": acc[INDEPENDENT]["mean"], "independent_std": acc[INDEPENDENT]["std"],
            "mutual_agreement": agree[MUTUAL]["mean"], "independent_agreement": agree[INDEPENDENT]["mean"],
            "n": acc[MUTUAL]["n"], "verdict": result["verdict"], "significant": result["significant"],
            "difference": result["difference"]}


def same_start(rows: Sequence[dict]) -> list[str]:
    """Per seed: the first-layer norm before training of the mutual and the independent student
    (one number: identical initial weights)."""
    by: dict[int, list[float]] = {}
    for r in rows:
        by.setdefault(r["seed"], []).append(r["init_norm"])
    return [f"seed {s}: " + (f"both start with first-layer norm {v[0]:.6f} (identical)" if max(v) == min(v)
                             else f"norms {min(v):.6f}..{max(v):.6f} (NOT identical)") for s, v in by.items()]


# --------------------------------------------------------------------------------------------
# Born-again networks


@dataclass
class BornAgain:
    """Generations per seed: ``trained[seed][g]`` (g = 0 is the labels-only network), tidy
    ``rows`` and the test logits ``test_logits[seed]`` (G+1, N, C) for ensembles and panels."""

    trained: dict[int, list[Trained]] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    test_logits: dict[int, Tensor] = field(default_factory=dict)
    test_targets: Tensor | None = None

    @property
    def generations(self) -> int:
        """Distilled generations (not counting generation 0)."""
        return len(next(iter(self.trained.values()))) - 1

    @property
    def seeds(self) -> list[int]:
        return sorted(self.trained)


#: Generation g of chain s is initialised with seed ``s + GENERATION_SEED_STEP * g`` (fresh weights).
GENERATION_SEED_STEP = 1000


def generation_seed(seed: int, generation: int, fresh_init: bool = True) -> int:
    """The model (and batch-order) seed of ``generation`` in the chain of ``seed``."""
    return seed + GENERATION_SEED_STEP * generation if fresh_init else seed


def born_again(
    data: Data, hidden: Sequence[int], config: TrainConfig, kd_config: TrainConfig, generations: int = 3,
    seeds: Sequence[int] = (0,), fresh_init: bool = True, progress: bool | None = None,
) -> BornAgain:
    """Generation 0: ``hidden`` MLP trained on labels with ``config`` (``loss="cross_entropy"``);
    generation g: the same architecture distilled from generation g - 1 with ``kd_config``
    (a distillation recipe). As in the paper every generation starts from fresh random weights
    (seed :func:`generation_seed`); ``fresh_init=False`` starts all generations of a chain from
    the same weights instead. All runs are cached.
    Rows: ``seed``, ``generation``, ``test_acc``, ``val_acc``, ``agreement_prev`` (test agreement
    with the previous generation; None for g = 0), ``init_norm``."""
    hidden = check_hidden(hidden)
    seeds = check_seeds(seeds)
    check_config(config, "config", loss="cross_entropy")
    check_config(kd_config, "kd_config")
    if kd_config.loss not in ("distillation", "soft_target"):
        raise ValueError(f"kd_config must be a distillation recipe (loss='distillation' or 'soft_target'), "
                         f"got loss={kd_config.loss!r}")
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise ValueError(f"generations must be a positive integer, got {generations!r}")
    name = mlp_name(hidden, data)
    runs = RunProgress(len(seeds) * (generations + 1), "generations", progress, None)
    result = BornAgain(test_targets=data.test.y.cpu())
    for s in seeds:
        chain = [train_model("mlp", data, config.replace(seed=s), hidden=hidden, progress=False,
                             label=f"born-again {name} generation 0 seed={s}")]
        runs.step(f"seed {s}, generation 0")
        for g in range(1, generations + 1):
            chain.append(train_model("mlp", data, kd_config.replace(seed=generation_seed(s, g, fresh_init)),
                                     teacher=chain[-1], hidden=hidden, progress=False,
                                     label=f"born-again {name} generation {g} seed={s}"))
            runs.step(f"seed {s}, generation {g}")
        result.trained[s] = chain
        logits = torch.stack([metrics.predict_logits(t.model, data.test.x).cpu() for t in chain])
        result.test_logits[s] = logits
        for g, t in enumerate(chain):
            result.rows.append({"seed": s, "generation": g, "test_acc": t.final("test_acc"), "val_acc": t.final("val_acc"),
                                "agreement_prev": None if g == 0 else metrics.agreement(logits[g], logits[g - 1]),
                                "init_norm": _init_norm(t.model, generation_seed(s, g, fresh_init), data)})
    runs.close()
    return result


def ensemble_accuracy(test_logits: Tensor, targets: Tensor, upto: int, first: int = 1) -> float:
    """Test accuracy of the arithmetic mean of the softmax outputs of generations
    ``first..upto`` (inclusive). test_logits (G+1, N, C), targets (N,)."""
    if test_logits.ndim != 3:
        raise ValueError(f"test_logits must have shape (G+1, N, C), got {tuple(test_logits.shape)}")
    if not 0 <= first <= upto < test_logits.shape[0]:
        raise ValueError(f"need 0 <= first <= upto <= {test_logits.shape[0] - 1}, got first={first}, upto={upto}")
    probs = ensemble_probs(test_logits[first:upto + 1])
    return float((probs.argmax(1) == targets).float().mean())


def generation_ensembles(ban: BornAgain, first: int = 1) -> list[dict]:
    """Per seed and generation g >= ``first``: the test accuracy of the ensemble of generations
    ``first..g`` (Furlanello et al.'s BAN ensemble uses the distilled generations, first = 1)."""
    rows = []
    for s in ban.seeds:
        for g in range(max(first, 1), ban.generations + 1):
            rows.append({"seed": s, "generation": g,
                         "test_acc": ensemble_accuracy(ban.test_logits[s], ban.test_targets, g, first)})
    return rows


def born_again_verdicts(ban: BornAgain) -> list[str]:
    """Each generation against generation 0 (labels only), judged against the seed spread."""
    stats = {s["generation"]: s for s in summarize(ban.rows, ["generation"])}
    base = stats[0]
    return [compare(stats[g]["values"], base["values"], f"generation {g}", "generation 0")["verdict"]
            for g in sorted(stats) if g > 0]


def generation_starts(ban: BornAgain) -> list[str]:
    """Per seed: every generation's first-layer norm before training — different numbers mean
    fresh initial weights for each generation, one number the same start for all."""
    out = []
    for s in ban.seeds:
        v = [r["init_norm"] for r in ban.rows if r["seed"] == s]
        kind = "the same initial weights" if max(v) == min(v) else "fresh initial weights"
        out.append(f"seed {s}: {len(v)} generations, {kind} (first-layer norms "
                   + ", ".join(f"{x:.4f}" for x in v) + ")")
    return out


def findings(rows: Sequence[dict], ban: BornAgain) -> list[dict]:
    """The two papers' headline claims beside this run's numbers (``claim``, ``paper``,
    ``this run``), judged against the seed spread; one cohort or one seed: no claim."""
    s = mutual_summary(rows)
    out = [{
        "claim": "students that learn from each other beat students trained alone",
        "paper": "on CIFAR-100 and Market-1501 every network of a DML cohort beat the same network trained alone",
        "this run": f"mutual {s['mutual_acc']:.2%} vs alone {s['independent_acc']:.2%} ({s['difference'] * 100:+.2f} "
                    f"points over {s['n']} students); {_spread(s)}. The cohort's students agree with each other on "
                    f"{s['mutual_agreement']:.2%} of test images (alone: {s['independent_agreement']:.2%})",
    }]
    stats = {st["generation"]: st for st in summarize(ban.rows, ["generation"])}
    g_best = max((g for g in stats if g > 0), key=lambda g: stats[g]["mean"])
    c = compare(stats[g_best]["values"], stats[0]["values"])
    ens = summarize(generation_ensembles(ban), ["generation"])
    last = max(ens, key=lambda e: e["generation"])
    out.append({
        "claim": "a student of the same architecture beats its teacher (born-again networks)",
        "paper": "born-again DenseNets and ResNets beat their teachers on CIFAR-10/100, and an ensemble of "
                 "generations did better still",
        "this run": f"generation 0 (labels) {stats[0]['mean']:.2%}; best distilled generation, {g_best}: "
                    f"{stats[g_best]['mean']:.2%} ({c['difference'] * 100:+.2f} points; {_spread(c)}); ensemble of "
                    f"generations 1..{last['generation']}: {last['mean']:.2%}",
    })
    return out


def _spread(result: dict) -> str:
    se = result.get("standard_error")
    if result.get("repeats", 2) < 2 or (se is not None and math.isnan(se)):
        return "one seed: no claim"
    return "beyond the seed spread" if result["significant"] else "within the seed spread"
