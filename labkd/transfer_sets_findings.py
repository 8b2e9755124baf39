"""Lesson 07's "What we found" (:mod:`labkd.transfer_sets`): the bias-shift table and readings,
the small-data summary and verdicts, and the paper-versus-labkd records — computed from the runs.

>>> shift_table([no_threes, only_78])
>>> overfitting_summary(rows); regularizer_verdicts(rows)
>>> record_comparison(key_numbers(no_threes, only_78, rows))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from labkd import stats
from labkd.transfer_sets import FULL, HARD, PAPER, SOFT, ShiftStudy


def shift_table(studies: Sequence[ShiftStudy], reference_errors: int | None = None) -> list[dict]:
    """One row per study for "What we found": this run's numbers beside the paper's."""
    rows = []
    for s in studies:
        m = s.summary()
        paper = _paper_for(s)
        rows.append({
            "transfer set": s.name, "shift (chosen on val)": f"{m['shift']:+.1f} on classes {s.classes}",
            "test errors before": f"{m['test_errors']} ({m['test_error_rate']:.1%})",
            "test errors after": f"{m['test_errors_shifted']} ({m['test_error_rate_shifted']:.1%})",
            "errors on missing classes before → after":
                f"{m['errors_on_missing']} → {m['errors_on_missing_shifted']} of {m['missing_test_images']}",
            "paper": paper,
        })
    if reference_errors is not None:
        rows.append({"transfer set": "all classes (reference)", "shift (chosen on val)": "none",
                     "test errors before": str(reference_errors), "test errors after": "",
                     "errors on missing classes before → after": "",
                     "paper": f"{PAPER['all_classes_errors']} errors"})
    return rows


def _paper_for(study: ShiftStudy) -> str:
    if study.missing == [3] or study.classes == [3]:
        return (f"{PAPER['no3_errors']} errors ({PAPER['no3_errors_on_3s']} of {PAPER['test_3s']} 3s); shift "
                f"+{PAPER['no3_shift']:g}: {PAPER['no3_errors_shifted']} ({PAPER['no3_errors_on_3s_shifted']} on 3s)")
    if sorted(study.classes) == [7, 8]:
        return (f"{PAPER['only78_error_rate']:.1%} error; shift {PAPER['only78_shift']:+g}: "
                f"{PAPER['only78_error_rate_shifted']:.1%}")
    return ""


def shift_readings(studies: Sequence[ShiftStudy], fast: bool) -> list[str]:
    """Sentences read from the measured numbers: did the shift chosen on val help on test?"""
    out = []
    for s in studies:
        m = s.summary()
        better = m["test_errors"] - m["test_errors_shifted"]
        if better > 0:
            verb = f"removed {better} of the {m['test_errors']} test errors"
        elif better == 0:
            verb = "did not change the number of test errors"
        else:
            verb = f"added {-better} test errors"
        text = (f"{s.name}: a shift of {m['shift']:+.1f} on classes {s.classes}, chosen on {len(s.val_y):,} validation "
                f"images, {verb} ({m['test_errors']} → {m['test_errors_shifted']}); on the classes missing from the "
                f"transfer set, {m['errors_on_missing']} → {m['errors_on_missing_shifted']} errors of "
                f"{m['missing_test_images']}. The best shift on the test set itself would have been "
                f"{m['oracle_shift_on_test']:+.1f} ({m['oracle_test_errors']} errors).")
        if fast:
            text += " (Fast mode: a weak teacher and a tiny transfer set; do not read the sizes of these numbers.)"
        out.append(text)
    return out


def _pm(values: Sequence[float], percent: bool = True, digits: int = 1) -> str:
    """Mean ± seed spread of ``values`` (:func:`labkd.stats.pm_values`): percent, or plain numbers."""
    return stats.pm_values(values) if percent else stats.pm_values(values, scale=1, digits=digits, unit="")


def overfitting_summary(rows: Sequence[Mapping]) -> list[dict]:
    """Per arm (mean ± std over seeds): final train and test accuracy, the early-stopping epoch,
    the early-stopped test accuracy and the gap (early-stopped minus final, in points)."""
    if not rows:
        raise ValueError("rows is empty: run small_data_runs first")
    out = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        out.append({
            "arm": arm, "training images": f"{mine[0]['n_train']:,}", "seeds": len(mine),
            "final train acc": _pm([r["train_acc"] for r in mine]),
            "final test acc": _pm([r["test_acc"] for r in mine]),
            "early-stop epoch (best val)": _pm([r["stop_epoch"] for r in mine], percent=False,
                                               digits=1 if len(mine) > 1 else 0) + f" of {mine[0]['epochs']}",
            "early-stopped test acc": _pm([r["stopped_test_acc"] for r in mine]),
            "gain from early stopping (points)": stats.pm_values([100 * r["gap"] for r in mine], scale=1, unit=""),
            "test loss: lowest → final": f"{_pm([r['best_test_loss'] for r in mine], percent=False, digits=3)} → "
                                         f"{_pm([r['test_loss'] for r in mine], percent=False, digits=3)}",
        })
    return out


def arm_values(rows: Sequence[Mapping], arm: str, key: str) -> list[float]:
    values = [float(r[key]) for r in rows if r["arm"] == arm]
    if not values:
        raise ValueError(f"no rows for arm {arm!r}; arms are {sorted({r['arm'] for r in rows})}")
    return values


def regularizer_verdicts(rows: Sequence[Mapping]) -> list[str]:
    """Sentences computed from the runs: does each arm need early stopping (is its gap beyond
    two standard errors?), and how much of the full-data accuracy do soft targets recover?"""
    out = []
    n = len(arm_values(rows, HARD, "gap"))
    for arm in (HARD, SOFT):
        gaps = [100 * g for g in arm_values(rows, arm, "gap")]
        (m, s), (_, se) = stats.mean_std(gaps), stats.mean_se(gaps)
        sig = n >= 2 and (abs(m) > stats.SE_MULTIPLE * se if se > 0 else m != 0)
        if n < 2:
            out.append(f"{arm}: early stopping would gain {m:+.2f} points of test accuracy (one seed: no claim).")
        elif sig:
            out.append(f"{arm}: early stopping gains {m:.2f} ± {s:.2f} points over the final epoch — more than "
                       f"twice the standard error ({se:.2f}) over {n} seeds, so this model needs early stopping.")
        else:
            out.append(f"{arm}: early stopping gains {m:.2f} ± {s:.2f} points — within twice the standard error "
                       f"({se:.2f}) over {n} seeds, so training to the end costs nothing measurable.")
    for arm in (HARD, SOFT):
        lowest, final = np.mean(arm_values(rows, arm, "best_test_loss")), np.mean(arm_values(rows, arm, "test_loss"))
        epoch = np.mean(arm_values(rows, arm, "best_loss_epoch"))
        if math.isfinite(lowest) and lowest > 0:
            out.append(f"{arm}: test loss lowest {lowest:.3f} (around epoch {epoch:.0f}), final {final:.3f} "
                       f"({final / lowest - 1:+.0%}) — " + ("it grows as the model becomes over-confident"
                                                            if final > 1.2 * lowest else "no marked rise")
                       + (" (one seed)." if n < 2 else f" (mean of {n} seeds)."))
    result = stats.compare(arm_values(rows, SOFT, "test_acc"), arm_values(rows, HARD, "test_acc"), SOFT, HARD)
    out.append("Final epoch: " + result["verdict"])
    if any(r["arm"] == FULL for r in rows):
        hard, soft = np.mean(arm_values(rows, HARD, "test_acc")), np.mean(arm_values(rows, SOFT, "test_acc"))
        full = np.mean(arm_values(rows, FULL, "test_acc"))
        if full > hard:
            share = (soft - hard) / (full - hard)
            paper = (PAPER["speech"]["soft targets, 3%"][1] - PAPER["speech"]["hard targets, 3%"][1]) / (
                PAPER["speech"]["hard targets, 100%"][1] - PAPER["speech"]["hard targets, 3%"][1])
            out.append(f"Of the {100 * (full - hard):.2f} points that all the data adds to hard targets "
                       f"({hard:.2%} → {full:.2%}), soft targets on the small set recover {share:.0%} "
                       f"(paper, speech: {paper:.0%})" + (" — one seed: no claim." if n < 2 else "."))
        else:
            out.append(f"All the data did not beat the small set with hard targets here ({full:.2%} vs {hard:.2%}); "
                       f"the reference is not informative in this run.")
    return out


def regularizer_table(rows: Sequence[Mapping]) -> list[dict]:
    """This run's final train/test accuracy per arm beside the paper's speech numbers (Table 5)."""
    out = []
    for line in overfitting_summary(rows):
        paper = PAPER["speech"].get(f"{line['arm']}, 3%" if line["arm"] != FULL else "hard targets, 100%")
        out.append({"arm": line["arm"], "training images": line["training images"],
                    "train acc": line["final train acc"], "test acc": line["final test acc"],
                    "early-stopped test acc": line["early-stopped test acc"],
                    "paper (speech, 3% / 100%): train / test frame acc": f"{paper[0]:.1%} / {paper[1]:.1%}" if paper else ""})
    return out


def record_comparison(numbers: Mapping, all_classes_errors: int | None = None, seeds: Sequence[int] | None = None) -> list[dict]:
    """Record this lesson's "paper versus labkd" rows (:func:`labkd.results.compare`) from the
    :func:`key_numbers` of the run: the missing-3 and only-7-and-8 transfer sets before and after
    the bias shift, and the 3 % experiment (train / test accuracy per arm)."""
    from labkd import results

    n = numbers
    rows = []
    if all_classes_errors is not None:
        rows.append(results.compare("784-800-800-10 distilled at T = 20 on all classes: test errors",
                                    all_classes_errors, PAPER["all_classes_errors"], seeds=seeds))
    rows.append(results.compare(
        "transfer set without 3s: test errors (on the 1,010 test 3s)",
        f"{n['no3_test_errors']} ({n['no3_test_errors_on_missing']})",
        f"{PAPER['no3_errors']} ({PAPER['no3_errors_on_3s']})", seeds=seeds))
    rows.append(results.compare(
        "… after raising the bias of 3 (shift chosen on validation)",
        f"{n['no3_test_errors_shifted']} ({n['no3_test_errors_on_missing_shifted']}), shift {n['no3_shift']:+.1f}",
        f"{PAPER['no3_errors_shifted']} ({PAPER['no3_errors_on_3s_shifted']}), shift +{PAPER['no3_shift']} (chosen on test)",
        seeds=seeds))
    rows.append(results.compare(
        "transfer set of only 7s and 8s: test error rate, before → after the bias shift",
        f"{n['only78_test_error_rate']:.1%} → {n['only78_test_error_rate_shifted']:.1%} (shift {n['only78_shift']:+.1f})",
        f"{PAPER['only78_error_rate']:.1%} → {PAPER['only78_error_rate_shifted']:.1%} (shift {PAPER['only78_shift']})",
        seeds=seeds))
    for prefix, arm in (("small_hard", "hard targets, 3%"), ("small_soft", "soft targets, 3%"),
                        ("full_hard", "hard targets, 100%")):
        if f"{prefix}_test_acc" in n:
            paper_train, paper_test = PAPER["speech"][arm]
            rows.append(results.compare(
                f"{arm} of the training set: train / test accuracy",
                f"{n[f'{prefix}_train_acc']:.1%} / {n[f'{prefix}_test_acc']:.1%}",
                f"{paper_train:.1%} / {paper_test:.1%} (speech frames)", seeds=n.get("small_seeds")))
    return rows


def key_numbers(missing: ShiftStudy, only: ShiftStudy, rows: Sequence[Mapping]) -> dict:
    """The numbers the README's "paper vs labkd" table needs, flat, for :func:`labkd.results.record`:
    ``no3_*`` (errors overall and on the missing class before/after the shift, the shift),
    ``only78_*`` (error rates before/after, the shift) and ``small_hard_*``, ``small_soft_*``,
    ``full_hard_*`` (mean over seeds of train/test accuracy, early-stopped test accuracy, the gain
    from early stopping, final and lowest test loss), plus the seeds and set sizes."""
    m, o = missing.summary(), only.summary()
    out = {
        "no3_missing_classes": missing.missing, "no3_test_errors": m["test_errors"],
        "no3_test_errors_on_missing": m["errors_on_missing"], "no3_missing_test_images": m["missing_test_images"],
        "no3_shift": m["shift"], "no3_test_errors_shifted": m["test_errors_shifted"],
        "no3_test_errors_on_missing_shifted": m["errors_on_missing_shifted"],
        "only78_kept_classes": only.classes, "only78_test_error_rate": float(o["test_error_rate"]),
        "only78_test_error_rate_shifted": float(o["test_error_rate_shifted"]), "only78_shift": o["shift"],
        "small_seeds": sorted({int(r["seed"]) for r in rows if r["arm"] in (HARD, SOFT)}),
        "small_n_train": next(r["n_train"] for r in rows if r["arm"] == HARD),
        "small_epochs": next(r["epochs"] for r in rows if r["arm"] == HARD),
    }
    columns = ("train_acc", "test_acc", "stopped_test_acc", "gap", "test_loss", "best_test_loss")
    for prefix, arm in (("small_hard", HARD), ("small_soft", SOFT), ("full_hard", FULL)):
        if any(r["arm"] == arm for r in rows):
            for stat in columns:
                name = "early_stop_gain" if stat == "gap" else stat
                out[f"{prefix}_{name}"] = float(np.mean(arm_values(rows, arm, stat)))
                if stat in ("test_acc", "gap"):
                    out[f"{prefix}_{name}_std"] = stats.mean_std(arm_values(rows, arm, stat))[1]
    return out
