"""The index of a ``labkd run`` (:mod:`labkd.runner`): ``index.html`` with one row per notebook, the
claims table ("shown?" column), the paper-versus-labkd comparisons, time totals, and
``results.json`` / ``results.md`` beside it; earlier runs of the other notebooks are kept.

>>> write_index(with_earlier_runs(results, output), output)      # -> output / "index.html"
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from labkd.paths import atomic_write_text
from labkd.results import CLAIMS, COMPARISONS
from labkd.runner import RunResult


def with_earlier_runs(results: Sequence[RunResult], output_dir: Path) -> list[RunResult]:
    """``results`` plus the notebooks of earlier runs into ``output_dir`` that this run did not
    repeat (same mode, executed copy still there), in name order: running one lesson again does
    not drop the others from the index and the results table."""
    try:
        earlier = json.loads((Path(output_dir) / "index.json").read_text()).get("notebooks", [])
    except (OSError, ValueError, AttributeError):
        return list(results)
    names = {r.name for r in results}
    modes = {r.mode for r in results}
    kept = list(results)
    fields = set(RunResult.__dataclass_fields__)
    for item in earlier if isinstance(earlier, list) else []:
        try:
            old = RunResult(**{k: v for k, v in item.items() if k in fields})
        except TypeError:
            continue
        if old.name in names or old.mode not in modes or not old.executed or not Path(old.executed).is_file():
            continue
        for key in ("source", "executed", "html"):
            value = getattr(old, key)
            setattr(old, key, None if value is None else Path(value))
        kept.append(old)
    return sorted(kept, key=lambda r: r.name)


def write_index(results: Sequence[RunResult], output_dir: Path) -> Path:
    """Write ``index.html`` (and ``index.json``) summarising a run; return the HTML path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "ok": sum(r.ok for r in results),
        "failed": sum(not r.ok for r in results),
        "totals": time_totals(results),
        "notebooks": [r.to_json() for r in results],
    }
    atomic_write_text(output_dir / "index.json", json.dumps(summary, indent=2, default=str) + "\n")
    claims = ("\n" + claims_markdown(results)) if collect_claims(results) else ""
    atomic_write_text(output_dir / "results.md", comparison_markdown(results) + claims)
    atomic_write_text(output_dir / "results.json", json.dumps(
        {"claims": collect_claims(results), "notebooks": {r.name: r.results for r in results if r.results}},
        indent=2, default=str) + "\n")
    page = output_dir / "index.html"
    atomic_write_text(page, render_index(results, output_dir))
    return page


def comparison_markdown(results: Sequence[RunResult]) -> str:
    """The "paper versus labkd" rows every notebook recorded (:func:`labkd.results.compare`), as
    one markdown table: what the README's Results section is pasted from."""
    lines = ["| notebook | what we measured | labkd | paper | seeds | time |", "| --- | --- | --- | --- | --- | --- |"]
    for result in results:
        for row in (result.results or {}).get(COMPARISONS, []) or []:
            seeds = row.get("seeds")
            seeds = ", ".join(str(s) for s in seeds) if isinstance(seeds, (list, tuple)) else ("" if seeds is None else str(seeds))
            seconds = row.get("seconds")
            time_text = "" if seconds is None else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
            cells = [result.name, row.get("what", ""), _cell(row.get("labkd")), _cell(row.get("paper")),
                     seeds, time_text]
            lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    if len(lines) == 2:
        lines.append("| (no notebook recorded a comparison) | | | | | |")
    return "\n".join(lines) + "\n"


def time_totals(results: Sequence[RunResult]) -> dict[str, float]:
    """The course end to end: the notebooks' summed wall time, and how much of it trained models
    versus loaded them from the cache (what each notebook's ``notebook.finish()`` recorded)."""
    def total(key: str) -> float:
        return sum(float((r.results or {}).get(key) or 0) for r in results)

    return {"notebooks": len(results), "notebook_seconds": round(sum(r.duration for r in results), 1),
            "training_seconds": round(total("training_seconds"), 1), "models_trained": int(total("models_trained")),
            "loading_seconds": round(total("loading_seconds"), 1), "models_loaded": int(total("models_loaded"))}


def collect_claims(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Every claim the notebooks recorded (:func:`labkd.results.record_claim`), each with its
    notebook's name and mode: ``{"notebook", "claim", "delta", "se", "seeds", "shown", ...}``."""
    out = []
    for result in results:
        for row in (result.results or {}).get(CLAIMS, []) or []:
            if isinstance(row, Mapping):
                out.append({"notebook": result.name, "mode": result.mode, **row})
    return out


def claims_markdown(results: Sequence[RunResult]) -> str:
    """The claims as a markdown table with a "shown?" column (the README's Results section):
    shown = the paper's sign and |Δ| > 2 SE on at least 5 fresh paired seeds (:mod:`labkd.stats`)."""
    lines = ["| notebook | claim | Δ ± SE | seeds | shown? | time |", "| --- | --- | --- | --- | --- | --- |"]
    for row in collect_claims(results):
        scale = row.get("scale") or 100.0
        unit = row.get("unit") or ""
        delta, se = row.get("delta"), row.get("se")
        diff = "—" if delta is None else f"{delta * scale:+.2f}" + ("" if se is None else f" ± {se * scale:.2f}") + f" {unit}"
        seeds = ", ".join(str(s) for s in row.get("seeds") or [])
        seconds = row.get("seconds")
        time_text = "" if seconds is None else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
        cells = [row["notebook"], row.get("claim", ""), diff.strip(), seeds, "yes" if row.get("shown") else "no", time_text]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    if len(lines) == 2:
        lines.append("| (no notebook recorded a claim) | | | | | |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return "—" if value is None else _format_value(value)


def render_index(results: Sequence[RunResult], output_dir: Path) -> str:
    """The HTML of the index page; links are relative to ``output_dir``."""
    rows = "\n".join(_index_row(r, Path(output_dir)) for r in results)
    failed = sum(not r.ok for r in results)
    headline = f"{len(results) - failed} ok, {failed} failed" if results else "no notebooks were run"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>labkd reports</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: .35rem .6rem; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
.ok {{ color: #17702a; font-weight: bold; }}
.failed {{ color: #b3261e; font-weight: bold; }}
table.results td, table.results th {{ border: none; padding: 0 .6rem 0 0; background: none; }}
.error {{ font-family: monospace; white-space: pre-wrap; max-width: 40rem; }}
</style>
</head>
<body>
<h1>labkd reports</h1>
<p>{html.escape(headline)} &middot; written {html.escape(stamp)}</p>
<p>{html.escape(_totals_line(results))}</p>
<table class="runs">
<thead><tr><th>notebook</th><th>status</th><th>duration (s)</th><th>files</th><th>results</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
{_comparison_html(results)}
{_claims_html(results)}
</body>
</html>
"""


def _comparison_html(results: Sequence[RunResult]) -> str:
    rows = [(r.name, row) for r in results for row in (r.results or {}).get(COMPARISONS, []) or []]
    if not rows:
        return ""
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            name, row.get("what", ""), _cell(row.get("labkd")), _cell(row.get("paper")),
            ", ".join(map(str, row["seeds"])) if isinstance(row.get("seeds"), list) else _cell(row.get("seeds")),
            _cell(None if row.get("seconds") is None else round(row["seconds"])))) + "</tr>"
        for name, row in rows)
    return ("<h2>Paper versus labkd</h2>\n<table class=\"runs\"><thead><tr><th>notebook</th><th>what we measured</th>"
            f"<th>labkd</th><th>paper</th><th>seeds</th><th>time (s)</th></tr></thead><tbody>{body}</tbody></table>")


def _totals_line(results: Sequence[RunResult]) -> str:
    t = time_totals(results)
    return (f"{t['notebooks']} notebooks, {t['notebook_seconds'] / 60:.1f} min of notebook time in all: "
            f"{t['training_seconds'] / 60:.1f} min training {t['models_trained']} models, "
            f"{t['models_loaded']} models loaded from the cache in {t['loading_seconds']:.1f} s")


def _claims_html(results: Sequence[RunResult]) -> str:
    claims = collect_claims(results)
    if not claims:
        return ""
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            row["notebook"], row.get("claim", ""), row.get("verdict", ""), "yes" if row.get("shown") else "no")) + "</tr>"
        for row in claims)
    return ("<h2>Claims (shown = the paper's sign and |&Delta;| &gt; 2 SE on &ge; 5 fresh paired seeds)</h2>\n"
            "<table class=\"runs\"><thead><tr><th>notebook</th><th>claim</th><th>measured</th><th>shown?</th></tr>"
            f"</thead><tbody>{body}</tbody></table>")


def _index_row(result: RunResult, output_dir: Path) -> str:
    links = []
    for label, target in (("HTML", result.html), ("ipynb", result.executed)):
        if target is not None:
            links.append(f'<a href="{html.escape(_relative(target, output_dir))}">{label}</a>')
    status = f'<span class="{html.escape(result.status)}">{html.escape(result.status)}</span>'
    if not result.ok:
        where = "" if result.failed_cell is None else f"cell {result.failed_cell}: "
        status += f'<div class="error">{html.escape(where + (result.error or ""))}</div>'
    if result.html_error:
        status += f'<div class="error">no HTML: {html.escape(result.html_error)}</div>'
    return (
        f"<tr><td>{html.escape(result.name)}<br><small>{html.escape(result.mode)}</small></td><td>{status}</td>"
        f"<td>{result.duration:.1f}</td><td>{' &middot; '.join(links) or '&ndash;'}</td>"
        f"<td>{_results_html(result)}</td></tr>"
    )


def _results_html(result: RunResult) -> str:
    if result.results_error:
        return f'<span class="error">{html.escape(result.results_error)}</span>'
    if not result.results:
        return "&ndash;"
    rows = "".join(
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(_format_value(value))}</td></tr>"
        for key, value in flatten_results(result.results).items() if key not in (COMPARISONS, CLAIMS)
    )
    return f'<table class="results">{rows}</table>'


def flatten_results(results: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted keys: ``{"kd": {"acc": 0.9}}`` -> ``{"kd.acc": 0.9}``."""
    flat: dict[str, Any] = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_results(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


def _relative(target: Path, base: Path) -> str:
    try:
        return Path(target).resolve().relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return Path(target).resolve().as_uri()
