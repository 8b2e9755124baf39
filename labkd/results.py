"""Record a notebook's key results so ``labkd run`` can list them in the report index.

>>> record(teacher_errors=71, student_errors=112)

Values are merged into the JSON file named by ``LABKD_RESULTS_FILE`` (set by ``labkd run``);
outside a run, they are only kept in memory (``recorded()``), so notebooks call it freely.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

RESULTS_ENV = "LABKD_RESULTS_FILE"
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
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(existing, indent=2, sort_keys=True))
        os.replace(tmp, path)
    return dict(_recorded)


def recorded() -> dict[str, Any]:
    """Everything recorded so far in this process."""
    return dict(_recorded)
