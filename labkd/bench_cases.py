"""What ``labkd bench`` (:mod:`labkd.bench`) times and how: the training FLOPs of a model and the
machine's matmul peak, the training cases (``fit`` on in-memory tensors, the tutorial's
``DataLoader``), and the latency of every widget panel's ``benchmark_cases()``.

>>> training_flops_per_sample(build_model("hinton_teacher"))      # {"macs", "executed", "six_mac"}
>>> latency, errors = widget_latency(repeats=20)                    # {"module.case": {"median_ms", "p95_ms"}}
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import pkgutil
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from labkd.bench import BenchSettings

#: Normalisation of the usual MNIST recipe (PyTorch examples): mean and std of the training pixels.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


# --------------------------------------------------------------------------------------------
# FLOPs and the machine


def linear_macs(model: nn.Module) -> tuple[int, int]:
    """Multiply-accumulates per example of ``model``'s ``nn.Linear`` layers: (total, first layer).

    784-1200-1200-10: (784·1200 + 1200·1200 + 1200·10, 784·1200) = (2,392,800, 940,800).
    """
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layers to count FLOPs for")
    macs = [m.in_features * m.out_features for m in layers]
    return sum(macs), macs[0]


def training_flops_per_sample(model: nn.Module) -> dict[str, int]:
    """FLOPs of one training example through an MLP (linear layers only; 1 MAC = 2 FLOPs).

    Forward 2·MACs; backward 4·MACs (gradient of the input and of the weights), except the first
    layer, whose input is the data and needs no gradient: ``executed = 6·MACs - 2·MACs_first``.
    ``six_mac`` is the usual ``6·MACs`` rule, which counts that unexecuted product too.
    """
    macs, first = linear_macs(model)
    return {"macs": macs, "executed": 6 * macs - 2 * first, "six_mac": 6 * macs}


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """CPU model, cores, torch version and threads, BLAS, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": torch.backends.mkl.is_available(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def matmul_peak(size: int = 2048, repeats: int = 8) -> dict[str, float]:
    """Best float32 GFLOP/s of ``repeats`` (size x size) @ (size x size) products, after two warm-ups.

    Uses torch's default thread count; one product is 2·size³ FLOPs.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats <= 0:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    out = torch.empty(size, size)
    for _ in range(2):
        torch.mm(a, b, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - start)
    flops = 2.0 * size ** 3
    return {
        "gflops": flops / min(times) / 1e9,
        "median_gflops": flops / statistics.median(times) / 1e9,
        "size": size,
        "repeats": repeats,
        "best_seconds": min(times),
    }


# --------------------------------------------------------------------------------------------
# Training cases


@dataclass
class CaseTiming:
    """One case's timed rounds: samples and seconds per round, steps and batch size."""

    name: str
    batch_size: int
    steps: int = 0
    samples: list[int] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)
    cpu_seconds: list[float] = dataclasses.field(default_factory=list)

    def add(self, samples: int, seconds: float, cpu_seconds: float) -> None:
        self.samples.append(samples)
        self.seconds.append(seconds)
        self.cpu_seconds.append(cpu_seconds)

    @property
    def cpu_share(self) -> float:
        """CPU time this process got per second and per core its torch threads could use: near 1
        when the machine was ours, lower when other processes took cores (DataLoader workers are
        not counted)."""
        cores = max(1, min(torch.get_num_threads(), _usable_cores()))
        return sum(self.cpu_seconds) / max(sum(self.seconds), 1e-12) / cores

    @property
    def rates(self) -> list[float]:
        return [n / s for n, s in zip(self.samples, self.seconds)]

    @property
    def best(self) -> float:
        """Samples per second of the fastest round."""
        return max(self.rates)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    def to_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "steps_per_round": self.steps, "rounds": len(self.seconds),
                "best_samples_per_s": self.best, "median_samples_per_s": self.median,
                "seconds": [round(s, 4) for s in self.seconds], "cpu_share": round(self.cpu_share, 3)}


class FitCase:
    """A labkd training case timed through ``labkd.train.fit`` (one epoch per round).

    ``prepare`` warms up (a ``warmup_steps``-step fit), then sizes the training subset so that one
    epoch takes about ``seconds_per_case``. ``run_round`` times one epoch of ``fit``.
    """

    def __init__(self, name: str, data: Any, model: nn.Module, config: Any,
                 teacher: nn.Module | None = None) -> None:
        self.name, self.data, self.model, self.config, self.teacher = name, data, model, config, teacher
        self.timing = CaseTiming(name, config.batch_size)
        self.subset = None
        self.teacher_logits = None
        self.teacher_logits_seconds = 0.0

    def _subset(self, steps: int, n_eval: int, seed: int) -> Any:
        n = min(steps * self.config.batch_size, len(self.data.train))
        return self.data.subset(n_train=n, n_val=min(n_eval, len(self.data.val)),
                                n_test=min(n_eval, len(self.data.test)), seed=seed)

    def _logits(self, subset: Any) -> torch.Tensor | None:
        from labkd.metrics import predict_logits

        if self.teacher is None:
            return None
        start = time.perf_counter()
        logits = predict_logits(self.teacher, subset.train.x)
        self.teacher_logits_seconds = time.perf_counter() - start
        return logits

    def _fit(self, subset: Any, logits: torch.Tensor | None) -> float:
        from labkd.train import fit

        result = fit(self.model, subset, self.config, teacher_logits=logits, progress=False, device="cpu")
        return result.seconds

    def prepare(self, settings: BenchSettings) -> None:
        warm = self._subset(settings.warmup_steps, settings.n_eval, seed=1)
        seconds = self._fit(warm, self._logits(warm))
        per_step = seconds / max(1, math.ceil(len(warm.train) / self.config.batch_size))
        max_steps = min(settings.max_steps, len(self.data.train) // self.config.batch_size)
        steps = int(settings.seconds_per_case / max(per_step, 1e-9))
        self.timing.steps = max(min(settings.min_steps, max_steps), min(steps, max_steps))
        self.subset = self._subset(self.timing.steps, settings.n_eval, seed=2)
        self.teacher_logits = self._logits(self.subset)

    def run_round(self) -> None:
        cpu = time.process_time()
        seconds = self._fit(self.subset, self.teacher_logits)
        self.timing.add(len(self.subset.train), seconds, time.process_time() - cpu)


class DataLoaderCase:
    """The PyTorch-tutorial pipeline: torchvision MNIST + ``Compose([ToTensor(), Normalize()])``
    + ``DataLoader(batch_size, shuffle=True, num_workers)``, and the tutorial's loop
    (``.to(device)``, ``zero_grad``, forward, cross-entropy, backward, ``step``, ``loss.item()``)
    with labkd's optimiser (SGD + Nesterov, as ``fit``), so only the input pipeline differs.

    Each round starts a new epoch iterator (the workers start, as every tutorial epoch does),
    discards ``dataloader_warmup_batches`` batches untimed (worker start-up is not counted), then
    times batches until ``seconds_per_case`` has passed (at least ``min_steps``).
    """

    def __init__(self, root: str, model: nn.Module, config: Any, batch_size: int, workers: int) -> None:
        import torchvision.datasets as datasets
        import torchvision.transforms as transforms

        from labkd.train import make_optimizer

        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
        self.dataset = datasets.MNIST(root=root, train=True, download=False, transform=transform)
        self.loader = torch.utils.data.DataLoader(self.dataset, batch_size=batch_size, shuffle=True,
                                                  num_workers=workers)
        self.model = model
        self.optimizer = make_optimizer(list(model.parameters()), config)
        self.criterion = nn.CrossEntropyLoss()
        self.timing = CaseTiming("dataloader", batch_size)
        self.workers = workers
        self.running_loss = 0.0

    def prepare(self, settings: BenchSettings) -> None:
        self.timing.steps = settings.min_steps  # the minimum; rounds run on the clock

    def run_round(self, settings: BenchSettings) -> None:
        device = torch.device("cpu")
        model, optimizer, criterion = self.model, self.optimizer, self.criterion
        model.to(device).train()
        iterator = iter(self.loader)
        available = len(self.loader) - 1  # the last batch may be short
        warmup = min(settings.dataloader_warmup_batches, max(0, available - settings.min_steps))
        samples = steps = 0
        # the clock starts once the warm-up batches are done, so it covers every timed batch's fetch
        start, cpu = time.perf_counter(), time.process_time()
        try:
            for i, (inputs, labels) in enumerate(iterator):
                inputs, labels = inputs.to(device), labels.to(device)
                optimizer.zero_grad()
                outputs = model(inputs)
                loss = criterion(outputs, labels)
                loss.backward()
                optimizer.step()
                self.running_loss += loss.item()
                if i == warmup - 1:
                    start, cpu = time.perf_counter(), time.process_time()
                if i >= warmup:
                    samples += len(labels)
                    steps += 1
                    done = time.perf_counter() - start >= settings.seconds_per_case and steps >= settings.min_steps
                    if done or i + 1 >= available:
                        break
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        finally:
            del iterator  # shuts the workers down before the next case runs
        self.timing.add(samples, seconds, cpu)
        self.timing.steps = max(self.timing.steps, steps)


# --------------------------------------------------------------------------------------------
# Widgets


def widget_modules() -> list[tuple[str, ModuleType | Exception]]:
    """Every ``labkd.widgets.<name>`` module, imported (or the exception its import raised)."""
    import labkd.widgets as package

    found: list[tuple[str, ModuleType | Exception]] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        name = f"labkd.widgets.{info.name}"
        try:
            found.append((name, importlib.import_module(name)))
        except Exception as error:  # a panel under construction must not stop the benchmark
            found.append((name, error))
    return found


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between the sorted values."""
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q!r}")
    position = (len(xs) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(xs) - 1)
    return xs[low] + (xs[high] - xs[low]) * (position - low)


def time_callable(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Call ``fn`` once to warm up, then ``repeats`` times: median, p95 and max in milliseconds."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return {"median": statistics.median(times), "p95": percentile(times, 95), "max": max(times), "n": repeats}


def widget_latency(repeats: int = 15,
                   modules: Iterable[tuple[str, ModuleType | Exception]] | None = None,
                   ) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Time every ``benchmark_cases()`` callable of the widget modules.

    Returns ``({"<module>.<case>": {"median", "p95", "max", "n", "setup_ms"}}, {name: error})``;
    modules without the hook are skipped, ones that fail (import, setup or a call) are listed in
    the second dict instead of stopping the benchmark.
    """
    latency: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    for name, module in (widget_modules() if modules is None else modules):
        short = name.rsplit(".", 1)[-1]
        if isinstance(module, Exception):
            errors[short] = f"import failed: {type(module).__name__}: {module}"
            continue
        hook = getattr(module, "benchmark_cases", None)
        if hook is None:
            continue
        start = time.perf_counter()
        try:
            cases = dict(hook())
        except Exception as error:
            errors[short] = f"benchmark_cases() failed: {type(error).__name__}: {error}"
            continue
        setup_ms = (time.perf_counter() - start) * 1000
        for case, fn in cases.items():
            try:
                stats = time_callable(fn, repeats)
            except Exception as error:
                errors[f"{short}.{case}"] = f"{type(error).__name__}: {error}"
                continue
            latency[f"{short}.{case}"] = {**stats, "setup_ms": setup_ms}
    return latency, errors
