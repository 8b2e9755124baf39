"""The shared statistics: paired Δ ± SE and the "shown" verdict every lesson's claims use."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from labkd import results, stats


SEEDS = [100, 101, 102, 103, 104]


def test_paired_difference_and_standard_error_by_hand() -> None:
    p = stats.paired([0.90, 0.92, 0.91, 0.95, 0.93], [0.88, 0.91, 0.90, 0.90, 0.92], SEEDS)
    d = np.array([0.02, 0.01, 0.01, 0.05, 0.01])
    assert p.delta == pytest.approx(d.mean())
    assert p.se == pytest.approx(d.std(ddof=1) / math.sqrt(5))
    assert p.wins == 5 and p.n == 5 and p.seeds == tuple(SEEDS)


def test_pairing_removes_the_shared_seed_effect() -> None:
    """A big per-seed offset shared by both arms cancels in the paired SE (not in an unpaired one)."""
    rng = np.random.default_rng(0)
    offset = rng.normal(0, 0.05, 6)
    control = 0.9 + offset
    treatment = control + 0.01 + rng.normal(0, 0.001, 6)
    p = stats.paired(treatment, control, range(6))
    unpaired_se = math.sqrt(treatment.var(ddof=1) / 6 + control.var(ddof=1) / 6)
    assert p.se < unpaired_se / 10
    assert stats.claim("t beats c", treatment, control, range(6)).shown


@pytest.mark.parametrize("treatment, control, expected, shown, reason", [
    ([0.91, 0.93, 0.90, 0.92, 0.94], [0.85, 0.86, 0.84, 0.88, 0.85], 1, True, "exceeds"),
    ([0.85, 0.86, 0.84, 0.88, 0.85], [0.91, 0.93, 0.90, 0.92, 0.94], 1, False, "opposite sign"),
    ([0.85, 0.86, 0.84, 0.88, 0.85], [0.91, 0.93, 0.90, 0.92, 0.94], -1, True, "exceeds"),
    ([0.85, 0.86, 0.84, 0.88, 0.85], [0.91, 0.93, 0.90, 0.92, 0.94], 0, True, "exceeds"),
    ([0.90, 0.92, 0.88, 0.91, 0.90], [0.91, 0.90, 0.89, 0.90, 0.90], 1, False, "within"),
    ([0.91, 0.93, 0.90, 0.92], [0.85, 0.86, 0.84, 0.88], 1, False, "at least 5"),
])
def test_shown_verdict(treatment, control, expected, shown, reason) -> None:
    c = stats.claim("claim", treatment, control, list(range(len(treatment))), expected=expected)
    assert c.shown is shown
    assert reason in c.verdict
    assert ("SHOWN" if shown else "NOT SHOWN") in c.verdict


def test_verdict_threshold_is_two_standard_errors() -> None:
    assert stats.verdict_of(0.021, 0.01, 5)[0] and not stats.verdict_of(0.019, 0.01, 5)[0]


def test_bad_inputs_name_the_argument() -> None:
    with pytest.raises(ValueError, match="paired seed by seed"):
        stats.paired([1, 2, 3], [1, 2], None)
    with pytest.raises(ValueError, match="seeds has repeats"):
        stats.paired([1, 2], [1, 2], [0, 0])
    with pytest.raises(ValueError, match="treatment holds a NaN"):
        stats.paired([1, float("nan")], [1, 2])
    with pytest.raises(TypeError, match="control must be a sequence"):
        stats.paired([1, 2], "12")
    with pytest.raises(ValueError, match="expected must be"):
        stats.claim("c", [1] * 5, [0] * 5, range(5), expected=2)
    with pytest.raises(ValueError, match="what must name"):
        stats.claim("", [1] * 5, [0] * 5, range(5))


def test_fresh_seeds_refuse_development_seeds() -> None:
    assert stats.fresh_seeds(100, 5, development=[0, 1, 2]) == SEEDS
    with pytest.raises(ValueError, match="fresh seeds"):
        stats.fresh_seeds(1, 5, development=[0, 1, 2])


def test_pm_formats() -> None:
    assert stats.pm(0.97421, 0.0019) == "97.42 ± 0.19 %"
    assert stats.pm(0.97421) == "97.42 %"
    assert stats.pm(133.7, 11.6, scale=1, digits=1, unit="") == "133.7 ± 11.6"
    assert stats.pm_values([0.9, 0.92]) == "91.00 ± 1.41 %"
    assert stats.pm_values([0.9]) == "90.00 %"


def test_same_start_flags_different_starts() -> None:
    lines = stats.same_start({"seed 100": [1.5, 1.5], "seed 101": [1.5, 1.6]})
    assert "(identical)" in lines[0] and "NOT identical" in lines[1]


def test_record_claim_goes_to_the_results_file(tmp_path, monkeypatch) -> None:
    target = tmp_path / "lesson.results.json"
    monkeypatch.setenv(results.RESULTS_ENV, str(target))
    monkeypatch.setattr(results, "_recorded", {})
    c = stats.claim("hints beat KD", [0.91, 0.93, 0.90, 0.92, 0.94], [0.85, 0.86, 0.84, 0.88, 0.85], SEEDS)
    results.record_claim(c, seconds=12.0)
    results.record_claim(c, seconds=13.0)  # same claim again replaces, not duplicates
    stored = json.loads(target.read_text())[results.CLAIMS]
    assert len(stored) == 1
    assert set(stored[0]) >= {"claim", "delta", "se", "seeds", "shown"}
    assert stored[0]["shown"] is True and stored[0]["seeds"] == SEEDS and stored[0]["seconds"] == 13.0
    with pytest.raises(TypeError, match="labkd.stats.Claim"):
        results.record_claim({"claim": "x"})


def test_runner_collects_claims_with_a_shown_column(tmp_path) -> None:
    from labkd.runner import RunResult
    from labkd.runner_index import claims_markdown, collect_claims, write_index

    shown = stats.claim("A beats B", [0.91, 0.93, 0.90, 0.92, 0.94], [0.85, 0.86, 0.84, 0.88, 0.85], SEEDS)
    not_shown = stats.claim("C beats D", [0.90, 0.92, 0.88, 0.91, 0.90], [0.91, 0.90, 0.89, 0.90, 0.90], SEEDS)
    run = RunResult(name="03_x", source=tmp_path / "03_x.ipynb", mode="full", status="ok", duration=1.0,
                    results={results.CLAIMS: [shown.to_json(), not_shown.to_json()]})
    claims = collect_claims([run])
    assert [c["claim"] for c in claims] == ["A beats B", "C beats D"]
    table = claims_markdown([run])
    assert "| shown? |" in table
    assert "| 03_x | A beats B | +6.40 ± " in table and "| yes |" in table and "| no |" in table
    write_index([run], tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert [c["shown"] for c in on_disk["claims"]] == [True, False]


def test_summarize_groups_in_first_seen_order_with_the_seed_spread() -> None:
    rows = [{"arm": "b", "seed": 0, "test_acc": 0.8}, {"arm": "a", "seed": 0, "test_acc": 0.9},
            {"arm": "b", "seed": 1, "test_acc": 0.6}, {"arm": "a", "seed": 1}]  # a row without the metric
    b, a = stats.summarize(rows, ["arm"])
    assert (b["arm"], b["n"], b["values"]) == ("b", 2, [0.8, 0.6])
    assert b["mean"] == pytest.approx(0.7) and b["std"] == pytest.approx(stats.mean_std([0.8, 0.6])[1])
    assert (a["n"], a["std"]) == (1, 0.0)
    with pytest.raises(KeyError, match="colour"):
        stats.summarize(rows, ["colour"])
    with pytest.raises(ValueError, match="empty"):
        stats.summarize([], ["arm"])


def test_compare_uses_the_unpaired_standard_error() -> None:
    a, b = [0.90, 0.92, 0.91], [0.80, 0.81, 0.79]
    result = stats.compare(a, b, "KD", "labels")
    se = (np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 3) ** 0.5
    assert result["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    assert result["standard_error"] == pytest.approx(se)
    assert result["significant"] and result["verdict"].startswith("KD is better by")
    close = stats.compare([0.90, 0.80], [0.85, 0.86])
    assert not close["significant"] and "no clear winner" in close["verdict"]
    one = stats.compare([0.9], [0.8])
    assert math.isnan(one["standard_error"]) and "single seed" in one["verdict"]
    with pytest.raises(ValueError, match="at least one value"):
        stats.compare([], [0.8])
