"""Train independent runs in several processes at once, so that a grid of small models uses every core.

Training runs on one thread (:mod:`labkd.threads`: one seed names one model), so a notebook that
trains its runs one after another keeps one core busy. :func:`train_runs` trains the runs that are
not in the model cache yet in ``workers`` processes, each on one thread, and stores them in the
cache; the caller then calls :func:`labkd.experiments.train_model` as usual and loads them. The
weights are the same bit for bit whatever the number of workers (each run is the same one-thread
training), so the cache keys do not mention it.

>>> runs = [Run("mlp", config.replace(seed=s), teacher=teacher, hidden=(800, 800)) for s in (100, 101, 102)]
>>> train_runs(data, runs, workers=2)                 # two processes, results in the cache
>>> students = [run.train(data) for run in runs]      # loaded from the cache

The number of workers defaults to the ``LABKD_WORKERS`` environment variable (1 when unset:
a notebook trains in its own process, as it always did); ``labkd run`` sets it to the machine's
cores divided by the notebooks it runs at once.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from labkd import cache
from labkd.data import Data
from labkd.experiments import Trained, model_key, train_model
from labkd.progress import progress_bar
from labkd.train import TrainConfig, TrainingDivergedError

#: The environment variable that sets the default number of training processes.
WORKERS_ENV = "LABKD_WORKERS"


@dataclass(frozen=True, eq=False)
class Run:
    """One :func:`~labkd.experiments.train_model` call: ``arch``, ``config``, the teacher it learns
    from (``None``: labels only; a ``Trained`` is kept as its model, which carries its cache key)
    or its precomputed ``teacher_logits`` (N, classes), a label for the cache, and the model
    options (``hidden=...``). Two runs are the same model when their :meth:`key` is (``==`` is
    identity: comparing tensors field by field has no single truth value)."""

    arch: str
    config: TrainConfig
    teacher: nn.Module | None = None
    teacher_logits: Tensor | None = None
    label: str = ""
    options: Mapping = field(default_factory=dict)

    def __init__(self, arch: str, config: TrainConfig, *, teacher: nn.Module | Trained | None = None,
                 teacher_logits: Tensor | None = None, label: str = "", **options) -> None:
        if not isinstance(arch, str) or not arch:
            raise TypeError(f"arch must be an architecture name (a non-empty str), got {arch!r}")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a labkd.TrainConfig, got {type(config).__name__}")
        if teacher is not None and not isinstance(teacher, (nn.Module, Trained)):
            raise TypeError(f"teacher must be a trained model (labkd Trained or nn.Module) or None, "
                            f"got {type(teacher).__name__}")
        object.__setattr__(self, "arch", arch)
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "teacher", teacher.model if isinstance(teacher, Trained) else teacher)
        object.__setattr__(self, "teacher_logits", teacher_logits)
        object.__setattr__(self, "label", str(label))
        object.__setattr__(self, "options", dict(options))

    def key(self, data: Data) -> str:
        """The cache key of this run's model on ``data``."""
        return model_key(self.arch, data, self.config, teacher=self.teacher, teacher_logits=self.teacher_logits,
                         **self.options)

    def train(self, data: Data, progress: bool | None = False) -> Trained:
        """Train it here (or load it from the cache)."""
        return train_model(self.arch, data, self.config, teacher=self.teacher, teacher_logits=self.teacher_logits,
                           progress=progress, label=self.label, **self.options)


def check_workers(workers: object) -> int:
    """``workers`` as a positive int, or a ``ValueError`` that names it."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive whole number of training processes, got {workers!r}")
    return workers


def default_workers() -> int:
    """Training processes from ``LABKD_WORKERS`` (1 when unset or empty)."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if not value:
        return 1
    try:
        workers = int(value)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ValueError(f"{WORKERS_ENV} must be a positive whole number of training processes, got {value!r}")
    return workers


def pending(data: Data, runs: Sequence[Run]) -> list[Run]:
    """The runs whose models are not in the cache yet (in order, each once)."""
    out, seen = [], set()
    for run in runs:
        key = run.key(data)
        if key not in seen and not cache.path_for(key).exists():
            seen.add(key)
            out.append(run)
    return out


def _todo(data: Data, runs: Sequence[Run], workers: int | None) -> tuple[int, list[Run]]:
    """Checked ``workers`` (default :func:`default_workers`) and the pending runs (none looked up
    with one worker: a key costs a model build, and the caller trains the runs itself anyway)."""
    workers = default_workers() if workers is None else check_workers(workers)
    if not isinstance(data, Data):
        raise TypeError(f"data must be a labkd Data (from load_data), got {type(data).__name__}")
    runs = list(runs)
    for run in runs:
        if not isinstance(run, Run):
            raise TypeError(f"runs must hold labkd.parallel.Run items, got {type(run).__name__}")
    return workers, (pending(data, runs) if workers > 1 else [])


def _pool(data: Data, processes: int):
    """``processes`` spawned workers holding ``data`` (spawned: no forked copies of torch's thread pools)."""
    import multiprocessing

    cache.check_writable()
    return multiprocessing.get_context("spawn").Pool(processes, initializer=_start_worker, initargs=(data,))


def _stopped(error: Exception, processes: int, left: int) -> None:
    warnings.warn(f"training in {processes} processes stopped ({type(error).__name__}: {error}); the "
                  f"{left} runs left train in this process instead", RuntimeWarning, stacklevel=3)


def train_runs(data: Data, runs: Sequence[Run], workers: int | None = None, progress: bool | None = None) -> int:
    """Train the ``runs`` not yet in the model cache in ``workers`` processes (default
    :func:`default_workers`) and store them there; return how many were trained here.

    With one worker, or fewer than two runs to train, nothing happens (0): the caller's own
    ``train_model`` calls train them as usual. A run that diverges is left out of the cache (the
    caller's call meets the divergence itself and reports it). Any other failure (a run's error,
    a process that cannot start) stops the workers with a ``RuntimeWarning``: the caller's own
    calls then train the rest, and raise the run's error where it belongs. A script (not a
    notebook) that calls this must guard its top level with ``if __name__ == "__main__":``, as
    every use of spawned processes must.
    """
    workers, todo = _todo(data, runs, workers)
    if workers == 1 or len(todo) < 2:
        return 0
    processes = min(workers, len(todo))
    bar = progress_bar(len(todo), f"training in {processes} processes", progress=progress, leave=False)
    trained = 0
    try:
        with _pool(data, processes) as pool:
            for outcome in pool.imap_unordered(_train, todo):
                trained += outcome == "trained"
                bar.update(1)
            pool.close()
            pool.join()
    except Exception as error:  # noqa: BLE001  (the caller's own calls train what is missing, or raise)
        _stopped(error, processes, len(todo) - trained)
    finally:
        bar.close()
    return trained


@contextlib.contextmanager
def background(data: Data, runs: Sequence[Run], workers: int | None = None) -> Iterator[None]:
    """Train the ``runs`` not yet cached in ``workers - 1`` other processes while the block does
    the work that cannot be split into runs (chains of runs, FitNets' stages) in this one; the
    block's end waits for them. With one worker (the default unless ``LABKD_WORKERS`` says
    otherwise) the block runs alone and the caller trains the runs afterwards, as usual.

    >>> with background(data, baselines):              # the baselines train in another process
    ...     chains = [train_chain(seed) for seed in seeds]
    >>> rows = [run.train(data) for run in baselines]   # loaded from the cache

    If the block raises, the other processes are stopped; a failed run is left to the caller
    (a ``RuntimeWarning``, as in :func:`train_runs`).
    """
    workers, todo = _todo(data, runs, workers)
    if workers == 1 or not todo:
        yield
        return
    processes = min(workers - 1, len(todo))
    pool = _pool(data, processes)
    try:
        result = pool.map_async(_train, todo)
        yield
        try:
            result.get()
        except Exception as error:  # noqa: BLE001  (the caller's own calls train what is missing, or raise)
            _stopped(error, processes, sum(not cache.path_for(run.key(data)).exists() for run in todo))
        pool.close()
        pool.join()
    finally:
        pool.terminate()


_DATA: Data | None = None


def _start_worker(data: Data) -> None:
    """A worker process's set-up: one thread, the shared data, no progress bars."""
    global _DATA
    torch.set_num_threads(1)
    os.environ["LABKD_PROGRESS"] = "0"
    _DATA = data


def _train(run: Run) -> str:
    """Train one run in a worker: ``"trained"``, ``"cached"`` (another process made it meanwhile)
    or ``"diverged"``."""
    try:
        result = run.train(_DATA)
    except TrainingDivergedError:
        return "diverged"
    return "cached" if result.cached else "trained"
