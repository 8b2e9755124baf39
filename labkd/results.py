"""Record a notebook's key results so ``labkd run`` can list them in the report index.

>>> record(teacher_errors=71, student_errors=112)
>>> compare("teacher test errors", labkd=98, paper=67, seeds=[0], seconds=512)

``compare`` rows ("paper versus labkd") are collected by ``labkd run`` into ``results.md``, the
table the README's Results section is pasted from.

Values are merged into the JSON file named by ``LABKD_RESULTS_FILE`` (set by ``labkd run``);
outside a run, they are only kept in memory (``recorded()``), so notebooks call it freely.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from labkd.paths import atomic_write_text

RESULTS_ENV = "LABKD_RESULTS_FILE"
COMPARISONS = "paper_vs_labkd"
CLAIMS = "claims"
_recorded: dict[str, Any] = {}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return value


def record(**values: Any) -> dict[str, Any]:
    """Add ``values`` to this notebook's results (and to the results file, atomically)."""
    _recorded.update({k: _jsonable(v) for k, v in values.items()})
    target = os.environ.get(RESULTS_ENV, "").strip()
    if target:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            existing = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            existing = {}
        existing.update(_recorded)
        atomic_write_text(path, json.dumps(existing, indent=2, sort_keys=True))
    return dict(_recorded)


def compare(what: str, labkd: Any, paper: Any, seeds: Any = None, seconds: float | None = None) -> dict[str, Any]:
    """Record one "paper versus labkd" row: a measurement of this run beside the paper's figure.

    ``labkd`` and ``paper`` are numbers or short strings ("98 ± 4", "206 (133 on 3s)");
    ``seeds`` the seeds behind the number; ``seconds`` the CPU time it took. A row with the same
    ``what`` replaces the earlier one, so re-running a cell does not duplicate it.
    """
    if not isinstance(what, str) or not what.strip():
        raise ValueError(f"what must be a non-empty description, got {what!r}")
    if seconds is not None and not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"seconds must be a finite number >= 0 or None, got {seconds!r}")
    row = {"what": what, "labkd": labkd, "paper": paper, "seeds": seeds, "seconds": seconds}
    rows = [r for r in _recorded.get(COMPARISONS, []) if r.get("what") != what] + [_jsonable(row)]
    record(**{COMPARISONS: rows})
    return row


def record_claim(claim: Any, seconds: float | None = None) -> dict[str, Any]:
    """Record one judged claim (:func:`labkd.stats.claim`): ``labkd run`` collects every claim
    into ``reports/results.json`` and the "shown?" column of ``reports/results.md``. A claim with
    the same text replaces the earlier one."""
    from labkd.stats import Claim

    if not isinstance(claim, Claim):
        raise TypeError(f"claim must be a labkd.stats.Claim (from labkd.stats.claim), got {type(claim).__name__}")
    if seconds is not None and not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"seconds must be a finite number >= 0 or None, got {seconds!r}")
    row = {**claim.to_json(), "seconds": seconds}
    rows = [r for r in _recorded.get(CLAIMS, []) if r.get("claim") != claim.claim] + [_jsonable(row)]
    record(**{CLAIMS: rows})
    return row


def recorded() -> dict[str, Any]:
    """Everything recorded so far in this process."""
    return dict(_recorded)
