"""Lesson 11's results: the claims judged on the fresh seeds, the tables and "What we found".

Everything here reads the rows of :func:`labkd.taxonomy.train_students` (one per method and
seed); nothing trains.

>>> found = taxonomy_results.claims(rows)             # labkd.stats claims, paired by seed
>>> taxonomy_results.summary(rows)                    # one row per method, mean ± std
>>> print("\n".join(taxonomy_results.findings(rows, found, teacher_accuracy, selection, run)))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from labkd import stats
from labkd.taxonomy import CLAIMS, PROBES, Plan, Selection, by_seed, setting_label

#: What the papers report, in words (their settings are far from ours: see lesson 11's "What we found").
PAPER_CLAIMS: list[dict] = [
    {"method": "KD", "paper": "Hinton et al. 2015 (§3, §4)", "setting": "MNIST MLPs; speech recognition",
     "claim": "the distilled student gets much of the teacher's (or an ensemble's) gain over training on labels"},
    {"method": "AT", "paper": "Zagoruyko & Komodakis 2017 (§4)",
     "setting": "CIFAR-10 wide ResNets; ImageNet ResNet-34 → 18",
     "claim": "consistent gains over the student alone, about 1 point of top-1 error on ImageNet; AT and KD add up"},
    {"method": "RKD", "paper": "Park et al. 2019 (§4.1, §4.2)",
     "setting": "metric learning (CUB-200, Cars-196); CIFAR-100, Tiny ImageNet",
     "claim": "students taught by RKD beat their teachers at image retrieval; in classification RKD helps most "
              "combined with KD"},
    {"method": "CRD + KD", "paper": "Tian et al. 2020 (§3, §4.1)",
     "setting": "CIFAR-100: 13 teacher/student pairs of ResNets, WRNs, VGGs, MobileNets, ShuffleNets; ImageNet",
     "claim": "CRD beats KD and about a dozen other distillers on nearly every pair; CRD + KD is the best row, "
              "roughly half a point to two and a half points over KD on CIFAR-100"},
]


def claims(rows: Sequence[Mapping], claim_list: Sequence[tuple[str, str, str, int]] = CLAIMS) -> list[stats.Claim]:
    """The lesson's claims (:data:`CLAIMS`) judged by :func:`labkd.stats.claim` on the paired
    test accuracies of ``rows`` (from :func:`train_students`); claims whose methods were not run
    are left out. Each claim's ``extra`` holds the training seconds behind it."""
    out = []
    for text, treatment, control, expected in claim_list:
        a, b = by_seed(rows, treatment), by_seed(rows, control)
        if not a or not b:
            continue
        seeds = [s for s in a if s in b]
        if not seeds:
            raise ValueError(f"rows have no seed on which both {treatment!r} and {control!r} ran")
        seconds = sum(r["seconds"] for r in rows if r["method"] in (treatment, control) and r["seed"] in seeds)
        out.append(stats.claim(text, [a[s] for s in seeds], [b[s] for s in seeds], seeds, expected=expected,
                               treatment_name=treatment, control_name=control, seconds=round(float(seconds), 1)))
    return out


def same_start(rows: Sequence[Mapping]) -> list[str]:
    """:func:`labkd.stats.same_start` sentences: every method of one seed began from the same weights."""
    norms: dict[str, list[float]] = {}
    for r in rows:
        norms.setdefault(f"seed {r['seed']}", []).append(r["start_norm"])
    return stats.same_start(norms)


def summary(rows: Sequence[Mapping], probes: bool = True) -> list[dict]:
    """One row per method: test accuracy and agreement with the teacher (mean ± std over seeds,
    :func:`labkd.stats.pm_values`), mean training seconds, and (``probes=True``) the probes' means."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        out.append({
            "method": method, "family": mine[0]["family"], "setting": mine[0].get("setting", ""),
            "seeds": len(mine), "test accuracy": stats.pm_values([r["accuracy"] for r in mine]),
            "agreement with teacher": stats.pm_values([r["agreement"] for r in mine]),
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
    if not methods:
        raise ValueError("rows is empty: no method to rank")
    return max(methods, key=lambda m: float(np.mean([r["accuracy"] for r in rows if r["method"] == m])))


def closest_method(rows: Sequence[Mapping], probe_name: str) -> str:
    """The method whose students are, on average, closest to the teacher in ``probe_name``."""
    if probe_name not in PROBES:
        raise ValueError(f"probe_name={probe_name!r} is unknown; expected one of {tuple(PROBES)}")
    means = {m: float(np.mean([r[probe_name] for r in rows if r["method"] == m]))
             for m in dict.fromkeys(r["method"] for r in rows)}
    if not means:
        raise ValueError("rows is empty: no method to rank")
    return min(means, key=means.get)


def findings(rows: Sequence[Mapping], found: Sequence[stats.Claim], teacher_accuracy: float,
             selection: Selection | None = None, run: Plan | None = None, fast: bool = False) -> list[str]:
    """"What we found" in sentences, every number from the runs: the regime, the teacher against
    the labels-only student, the settings chosen on validation, each claim's verdict, and the
    reading the verdicts allow."""
    if not rows:
        raise ValueError("rows is empty: run train_students first")
    lines = []
    seeds = sorted({r["seed"] for r in rows})
    mode = "fast (tiny subsets: illustration only)" if fast else "full"
    if run is not None:
        lines.append(f"Mode: {mode}; students: {run.student.epochs} epochs on {run.n_train:,} images, "
                     f"fresh seeds {seeds}; settings chosen on validation with seeds {list(run.dev_seeds)}.")
    else:
        lines.append(f"Mode: {mode}; fresh seeds {seeds}.")
    base = [r["accuracy"] for r in rows if r["method"] == "labels only"]
    if base:
        lines.append(f"Teacher {100 * teacher_accuracy:.2f} % against the labels-only student "
                     f"{stats.pm_values(base)} (test accuracy): a gap of "
                     f"{100 * (teacher_accuracy - float(np.mean(base))):.2f} points for distillation to close.")
    if selection is not None:
        lines.append("Chosen on validation: " + "; ".join(f"{m} {setting_label(s)}"
                                                          for m, s in selection.settings.items()) + ".")
    by_name = {c.treatment: c for c in found}
    for c in found:
        lines.append(f"{c.claim}: {'SHOWN' if c.shown else 'not shown'} "
                     f"(Δ = {c.row()['Δ ± SE']}, {c.treatment} ahead on {c.wins}/{len(c.seeds)} seeds).")
    if found and min(len(c.seeds) for c in found) < stats.MIN_SEEDS:
        lines.append(f"Too few paired seeds (fewer than {stats.MIN_SEEDS}) to judge any claim: run the full mode.")
        return lines
    kd = next((c for c in found if c.treatment == "KD" and c.control == "labels only"), None)
    others = [by_name[m] for m in ("AT", "RKD") if m in by_name and by_name[m].control == "KD"]
    if kd is not None:
        if kd.shown:
            lines.append("Reading: KD helps with this teacher (11a shown), so the teacher has knowledge to pass on.")
        else:
            lines.append("Reading: KD's gain over labels alone is not established at this budget (11a not "
                         "shown); the comparison between families below has little to compare.")
    if others:
        differ = [c for c in others if c.shown]
        if not differ:
            names = " and ".join(c.treatment for c in others)
            lines.append(f"{names} {'are each' if len(others) > 1 else 'is'} within two standard errors of KD: on "
                         f"this data the families we tried transfer about equally well, which is not the papers' "
                         f"finding (they report gains on CIFAR, ImageNet and metric learning).")
        for c in differ:
            direction = "better" if c.delta > 0 else "worse"
            lines.append(f"{c.treatment} does {direction} than KD by more than two standard errors "
                         f"({100 * c.delta:+.2f} ± {100 * c.se:.2f} points).")
    contrastive = by_name.get("CRD + KD")
    if contrastive is not None and contrastive.control == "KD":
        gap = f"{100 * contrastive.delta:+.2f} ± {100 * contrastive.se:.2f} points, ahead on " \
              f"{contrastive.wins}/{len(contrastive.seeds)} seeds"
        if contrastive.shown:
            lines.append(f"CRD + KD beats KD by more than two standard errors ({gap}): the paper's direction "
                         f"(§4.1) reproduces here.")
        elif contrastive.delta < 0 and abs(contrastive.delta) > 2 * contrastive.se:
            lines.append(f"CRD + KD does worse than KD by more than two standard errors ({gap}): the opposite of "
                         f"the paper's CIFAR-100 finding (§4.1) at this budget.")
        else:
            lines.append(f"CRD + KD is within two standard errors of KD ({gap}): the paper's gain over KD "
                         f"(§4.1, roughly 0.5 to 2.5 points on CIFAR-100) is not shown at this budget.")
    labels = by_seed(rows, "labels only")
    for c in others:  # not a claim: how far each family got on its own, beside labels alone
        mine = by_seed(rows, c.treatment)
        common = [s for s in mine if s in labels]
        if len(common) > 1:
            p = stats.paired([mine[s] for s in common], [labels[s] for s in common], common)
            lines.append(f"For scale: {c.treatment} against labels only, Δ = {100 * p.delta:+.2f} ± "
                         f"{100 * p.se:.2f} points (ahead on {p.wins}/{p.n} seeds); KD against labels only, "
                         f"{100 * kd.delta:+.2f} ± {100 * kd.se:.2f}." if kd is not None else
                         f"For scale: {c.treatment} against labels only, Δ = {100 * p.delta:+.2f} ± "
                         f"{100 * p.se:.2f} points (ahead on {p.wins}/{p.n} seeds).")
    return lines


#: The regimes tried while building the lesson (validation split, development seeds), in words;
#: :func:`findings` prints the measured numbers of the lesson's own regime.
REGIMES_TRIED: list[dict] = [
    {"regime": "MNIST; lesson 03's CNN teacher (3 epochs) and 6-layer student, 10,000 images, 4 epochs "
               "(this lesson before issue 18)",
     "teacher": "98.53 % (test)", "labels only": "98.32 % (test)",
     "what it showed": "a teacher barely better than its students: AT, RKD and KD all within the seed spread"},
    {"regime": "Fashion-MNIST; teacher 16-32-64 trained 5 epochs on 20,000 images; student 8-16-32 on 2,000 "
               "images, 20 epochs; seeds 0, 1",
     "teacher": "87.40 % (validation)", "labels only": "81.15 % (validation)",
     "what it showed": "KD (T=4, α=0.9) 81.87 %: +0.7 points, a weak teacher teaches little"},
    {"regime": "the same, teacher trained 12 epochs; student on 1,000 images, 30 epochs; seeds 0, 1",
     "teacher": "89.20 % (validation)", "labels only": "78.20 % (validation)",
     "what it showed": "KD T=4, α=0.9: 79.75 %, T=8, α=0.9: 79.50 %; AT β=10: 75.45 %, RKD β=10: 77.25 % "
                       "(worse than labels alone: hence smaller β in the grid)"},
    {"regime": "the lesson's regime (student on 1,000 images, 30 epochs), CRD added; seeds 0, 1 (issue 14)",
     "teacher": "the lesson's teacher", "labels only": "76.35 % (validation)",
     "what it showed": "KD T=2, α=0.9: 80.35 %. CRD + KD on KD's T, α, τ=0.07: β=0.1 79.80 %, β=0.2 79.45 %, "
                       "β=0.8 79.50 %, β=3.2 76.90 %; τ=0.2: β=0.1 79.70 %, β=0.8 80.65 %; τ=0.5, β=0.2: "
                       "80.30 %. CRD alone (α=0): β=0.2 76.95 %, β=0.8 76.70 %, about labels only"},
]
