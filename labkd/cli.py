"""The ``labkd`` command: check the data, run the notebooks, manage the model cache, benchmark.

    labkd data [--download] [--root DIR]
    labkd run [NOTEBOOK ...] [--fast] [--solutions] [--output DIR] [--param KEY=VALUE ...]
    labkd warm [--jobs N]
    labkd cache list|clear|verify
    labkd cache export|import FILE [--only PATTERN] [--replace]
    labkd bench [--quick] [--json]

Exit codes: 0 success, 1 something failed (a notebook, a download, a checksum, an unreadable or
unwritable folder), 2 a usage error. Every error is one line on stderr (``labkd <command>: error:
...``), never a traceback; set ``LABKD_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake the user can fix (bad argument, bad environment variable): one line, exit 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labkd`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or argparse's own usage error (code 2)
        return int(exit_.code or 0)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"labkd {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"labkd {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an unreadable cache, a read-only folder, a full disk: one line, exit 1
        if _env("LABKD_DEBUG"):
            raise
        print(f"labkd {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_FAILED


def _one_line(error: BaseException) -> str:
    """The error as one line; the exception type is kept for errors other than ours."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (UsageError, OSError, ValueError)):
        return text
    return f"{type(error).__name__}: {text}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labkd", description="labkd: a notebook lab for knowledge distillation."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = commands.add_parser("data", help="show the data folder and check the dataset files")
    data.add_argument("--download", action="store_true", help="download MNIST and Fashion-MNIST if missing")
    data.add_argument("--root", type=Path, metavar="DIR", help="data folder (default: LABKD_DATA or <repo>/data)")
    data.set_defaults(handler=cmd_data)

    run = commands.add_parser("run", help="execute notebooks into HTML reports")
    run.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                     help="paths or names such as 01_soft_targets (default: every notebooks/[0-9]*.ipynb)")
    run.add_argument("--fast", action="store_true", help="pass fast=True: small data, few epochs")
    run.add_argument("--solutions", action="store_true", help="pass solutions=True: fill in the exercises")
    run.add_argument("--output", type=Path, metavar="DIR", help="report folder (default: LABKD_REPORTS or <repo>/reports)")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="extra papermill parameter, e.g. --param seed=1 (repeatable)")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="limit per cell (default: none)")
    run.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="run N notebooks at once, one CPU thread each (default 1; 2 suits a 2-core laptop); "
                          "in full mode each notebook trains its grids in cores/N processes (LABKD_WORKERS wins)")
    run.set_defaults(handler=cmd_run)

    warm = commands.add_parser("warm", help="train every model the course needs (full mode), without reports")
    warm.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help="only these notebooks (default: all)")
    warm.add_argument("--jobs", type=int, default=1, metavar="N",
                      help="notebooks at once (default 1; 2 on 2 cores); each trains its grids in cores/N processes")
    warm.add_argument("--no-progress", action="store_true", help="no progress bar")
    warm.set_defaults(handler=cmd_warm)

    cache = commands.add_parser("cache", help="list, verify or clear the trained-model cache")
    cache.add_argument("action", choices=["list", "clear", "verify", "export", "import"],
                       help="verify: check every entry's key and checksum; export FILE / import FILE: hand "
                            "trained models to another machine in one archive")
    cache.add_argument("archive", nargs="?", type=Path, metavar="FILE", help="the archive of export/import")
    cache.add_argument("--only", metavar="PATTERN",
                       help="export/import only entries whose description or key matches this glob, e.g. '*mnist*'")
    cache.add_argument("--replace", action="store_true",
                       help="import: also replace valid entries already in the cache (default: keep them)")
    cache.set_defaults(handler=cmd_cache)

    bench = commands.add_parser("bench", help="time training on this machine")
    bench.add_argument("--quick", action="store_true", help="a short benchmark")
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.set_defaults(handler=cmd_bench)
    return parser


# --------------------------------------------------------------------------------------------
# labkd data


def cmd_data(args: argparse.Namespace) -> int:
    from labkd import data as datasets

    root = _data_root(args.root, create=args.download)
    source = "--root" if args.root is not None else ("LABKD_DATA" if _env("LABKD_DATA") else "default")
    print(f"data folder: {root}  ({source})")
    status = EXIT_OK
    for name in datasets.TORCHVISION_DATASETS:
        if args.download and datasets.missing_files(name, root):
            print(f"{name}: downloading ...")
            try:
                datasets.load_data(name, root=root, download=True)
            except datasets.DatasetNotFoundError as error:
                print(f"{name}: download failed: {error}")
                status = EXIT_FAILED
        status = max(status, _report_dataset(datasets, name, root))
    print("digits: always available (scikit-learn's 8x8 digits, bundled, works offline)")
    return status


def _report_dataset(datasets: Any, name: str, root: Path) -> int:
    """Print one dataset's state; EXIT_FAILED when a present file fails its checksum."""
    folder = datasets.dataset_folder(name, root)
    missing = datasets.missing_files(name, root)
    if len(missing) == len(datasets.RAW_FILES):
        print(f"{name}: missing in {folder}: {', '.join(missing)}; "
              f"run `labkd data --download` or use dataset='digits'")
        return EXIT_OK
    checks = datasets.verify_files(name, root)
    corrupt = [f for f, ok in checks.items() if not ok and f not in missing]
    parts = [f"present in {folder}" if not missing else f"incomplete in {folder}, missing {', '.join(missing)}"]
    parts.append(f"checksum FAILED for {', '.join(corrupt)}" if corrupt else "checksums ok")
    print(f"{name}: {'; '.join(parts)}")
    return EXIT_FAILED if corrupt else EXIT_OK


def _data_root(root: Path | None, create: bool) -> Path:
    from labkd.paths import data_dir

    if root is None:
        try:
            return data_dir()
        except FileNotFoundError as error:
            raise UsageError(str(error)) from None
    root = root.expanduser().resolve()
    if create:
        root.mkdir(parents=True, exist_ok=True)
    if not root.is_dir():
        raise UsageError(f"--root {str(root)!r} is not an existing folder; expected the folder that holds MNIST/raw")
    return root


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


# --------------------------------------------------------------------------------------------
# labkd run


def cmd_run(args: argparse.Namespace) -> int:
    from labkd import runner, runner_index
    from labkd.paths import reports_dir

    try:
        parameters = runner.parse_parameters(args.param)
        paths = runner.resolve_notebooks(args.notebooks)
    except ValueError as error:  # NotebookNotFoundError is a ValueError
        raise UsageError(str(error)) from None
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    output = (args.output if args.output is not None else reports_dir()).expanduser().resolve()
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {str(output)!r} is a file; expected a folder for the reports")
    _check_writable_folder(output, "--output" if args.output is not None else "LABKD_REPORTS")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be a positive number of notebooks run at once, got {args.jobs}")

    start = time.perf_counter()
    results = runner.run_notebooks(
        paths, output, fast=args.fast, solutions=args.solutions, parameters=parameters,
        kernel_name=args.kernel, timeout=args.timeout, progress=not args.no_progress, jobs=args.jobs,
    )
    wall = time.perf_counter() - start
    index = runner_index.write_index(runner_index.with_earlier_runs(results, output), output)
    failed, totals = _print_runs(results, args.no_progress)
    print(f"{len(results) - len(failed)} ok, {len(failed)} failed in {wall / 60:.1f} min wall time "
          f"(--jobs {args.jobs}); training {totals['training_seconds'] / 60:.1f} min for {totals['models_trained']} "
          f"models, {totals['models_loaded']} loaded from the cache; report: {index}")
    return EXIT_FAILED if failed else EXIT_OK


def _print_runs(results: list, no_progress: bool) -> tuple[list, dict]:
    """Print one line per notebook (the progress bar already did, unless ``no_progress``); return
    the failed runs and the time totals."""
    from labkd import runner_index

    if no_progress:
        for result in results:
            print(result.describe())
    return [r for r in results if not r.ok], runner_index.time_totals(results)


def cmd_warm(args: argparse.Namespace) -> int:
    """Run the notebooks in full mode into a scratch folder (no HTML) so that every model they
    train lands in the cache; an interrupted warm-up keeps every model finished so far."""
    import shutil
    import tempfile

    from labkd import runner
    from labkd.cache import check_writable

    try:
        paths = runner.resolve_notebooks(args.notebooks)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.jobs < 1:
        raise UsageError(f"--jobs must be a positive number of notebooks run at once, got {args.jobs}")
    folder = check_writable()
    scratch = Path(tempfile.mkdtemp(prefix="labkd-warm-"))
    start = time.perf_counter()
    try:
        results = runner.run_notebooks(paths, scratch, fast=False, progress=not args.no_progress,
                                       jobs=args.jobs, html=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    failed, totals = _print_runs(results, args.no_progress)
    print(f"warmed the model cache {folder} in {(time.perf_counter() - start) / 60:.1f} min (--jobs {args.jobs}): "
          f"{totals['models_trained']} models trained, {totals['models_loaded']} already cached; "
          f"{len(failed)} notebook(s) failed")
    return EXIT_FAILED if failed else EXIT_OK


# --------------------------------------------------------------------------------------------
# labkd cache / labkd bench


def cmd_cache(args: argparse.Namespace) -> int:
    cache = _optional_module("labkd.cache", "the model cache")
    if cache is None:
        return EXIT_FAILED
    folder = _cache_folder()
    if args.action in ("export", "import"):
        return _cache_archive(args, folder)
    if args.archive is not None or args.only is not None or args.replace:
        raise UsageError(f"FILE, --only and --replace go with 'export' or 'import', not {args.action!r}")
    if args.action == "clear":
        removed = cache.clear()
        print(f"removed {removed} cached model{'s' if removed != 1 else ''} from {folder}")
        return EXIT_OK
    if args.action == "verify":
        return _verify_cache(cache, folder)
    entries = list(cache.list_entries())
    print(f"model cache: {folder}")
    if not entries:
        print("(empty)")
        return EXIT_OK
    total = 0
    for entry in entries:
        size = int(_field(entry, "size", "size_bytes", default=0) or 0)
        total += size
        modified = _format_time(_field(entry, "modified", "mtime", "modified_time", default=None))
        key = _field(entry, "key", default="?")
        description = _field(entry, "description", default="")
        print(f"{key}  {_format_size(size):>9}  {modified}  {description}")
    print(f"{len(entries)} entr{'ies' if len(entries) != 1 else 'y'}, {_format_size(total)}")
    return EXIT_OK


def _cache_archive(args: argparse.Namespace, folder: Path) -> int:
    """``labkd cache export FILE`` / ``labkd cache import FILE``: one archive of trained models."""
    from labkd import cache_archive

    if args.archive is None:
        raise UsageError(f"'labkd cache {args.action}' needs the archive FILE, e.g. labkd cache {args.action} models.tar")
    if args.action == "export":
        if args.replace:
            raise UsageError("--replace goes with 'import', not 'export'")
        manifest = cache_archive.export_cache(args.archive, only=args.only)
        size = args.archive.stat().st_size
        print(f"exported {len(manifest['entries'])} cached model(s) from {folder} to {args.archive} "
              f"({_format_size(size)})")
        return EXIT_OK
    report = cache_archive.import_cache(args.archive, replace=args.replace, only=args.only)
    print(f"imported {args.archive} into {folder}: {report.summary()}")
    return EXIT_FAILED if report.skipped else EXIT_OK


def _verify_cache(cache: Any, folder: Path) -> int:
    """Read every entry and check its key and checksum; EXIT_FAILED if one is unusable."""
    entries = list(cache.list_entries())
    bad = 0
    for entry in entries:
        _, problem = cache.read(entry.key)
        if problem is not None:
            bad += 1
            print(f"{entry.key}  UNUSABLE: {problem} (it will be retrained; `labkd cache clear` removes all)")
    print(f"model cache: {folder}: {len(entries) - bad} of {len(entries)} entries ok")
    return EXIT_FAILED if bad else EXIT_OK


def _check_writable_folder(folder: Path, argument: str) -> None:
    """Create ``folder`` and write a probe file there, before any notebook runs."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-test.")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise UsageError(f"{argument} {str(folder)!r} is not a writable folder "
                         f"({type(error).__name__}: {error.strerror or error})") from None


def cmd_bench(args: argparse.Namespace) -> int:
    bench = _optional_module("labkd.bench", "the benchmark")
    if bench is None:
        return EXIT_FAILED
    return int(bench.main(quick=args.quick, as_json=args.json) or 0)


def _optional_module(name: str, what: str) -> Any:
    """Import ``name``; None (and a one-line message) if that module itself does not exist."""
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        print(f"labkd: {what} is not available in this version ({name} is missing)", file=sys.stderr)
        return None


def _cache_folder() -> Path:
    from labkd.paths import cache_dir

    return cache_dir()


def _field(entry: Any, *names: str, default: Any) -> Any:
    """Read the first of ``names`` from a dict or an object."""
    for name in names:
        if isinstance(entry, dict) and name in entry:
            return entry[name]
        if not isinstance(entry, dict) and hasattr(entry, name):
            return getattr(entry, name)
    return default


def _format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _format_time(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        value = _dt.datetime.fromtimestamp(value)
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)
