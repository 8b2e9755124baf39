r"""Distillation beside the other ways to make a network small: quantization and pruning.

Lesson 12 repeats the MNIST comparison of the model-compression surveys (Cheng et al. 2017,
https://arxiv.org/abs/1710.09282; Choudhary et al. 2020, https://doi.org/10.1007/s10462-020-09816-7):
three families of baselines (MLP, CNN, small ResNet) of three sizes each, then

- **int8**: PyTorch's dynamic int8 quantization (:func:`quantize_int8`). It replaces
  ``nn.Linear`` layers only; convolutions stay float32, so it shrinks MLPs about fourfold and
  leaves CNNs and ResNets (whose only Linear layer is the small head) almost unchanged;
- **k-bit weights**: uniform per-channel quantization of every conv and linear weight to
  ``bits`` bits (:func:`quantize_weights`), *simulated*: the model computes in float32 with the
  rounded weights, and its size is that of the packed codes (:func:`packed_size`);
- **magnitude pruning**: the smallest ``sparsity`` fraction of weights, by absolute value, set
  to zero (:func:`prune_magnitude`, ``torch.nn.utils.prune``), one-shot, without retraining
  (batch-norm statistics are re-estimated afterwards: :func:`recalibrate_batchnorm`);
- **distillation**: small MLP students trained from the standard teacher (:func:`distil_students`);
- and the combinations ``distil+int8``, ``distil+prune``.

Sizes are measured by serialising, never computed from a formula alone:

- ``dense_bytes``: ``torch.save(model.state_dict())`` (:func:`labkd.models.serialized_size`).
  Zeros take as much room as any other float, so a pruned model's dense file does not shrink;
- ``stored_bytes``: the same, in the model's compact encoding: pruned weight matrices as CSR
  (float32 values, 16-bit column indices; :func:`sparse_size`), k-bit weights as packed codes
  plus one scale per output channel (:func:`packed_size`), int8 models as PyTorch stores them.
  This is what the lesson's plot shows;
- ``nonzero``: parameters that are not exactly zero (packed int8 weights counted too).

Latency is measured, not estimated (:func:`latency_ms`): the median over several runs of one
forward pass on a batch of test images, with a fixed number of torch threads.

>>> models = train_baselines(transfer, fast=fast, seed=0)
>>> students = distil_students(transfer, teacher, fast=fast, seed=0)
>>> rows = compression_study(data, models, students, teacher)      # one tidy row per variant
"""

from __future__ import annotations

import copy
import io
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from labkd import metrics, stats
from labkd.checks import check_positive_int
from labkd.data import Data
from labkd.experiments import Trained, train_model
from labkd.models import num_parameters, serialized_size
from labkd.progress import RunProgress
from labkd.recipes import Recipes
from labkd.train import TrainConfig

# --------------------------------------------------------------------------------------------
# The models

#: The baselines: name -> (family, architecture, options). Three sizes per family, chosen so that
#: everything trains in a few minutes on two CPU cores (see the lesson's parameters cell).
MODELS: dict[str, tuple[str, str, dict]] = {
    "MLP 32×2": ("MLP", "mlp", {"hidden": (32, 32)}),
    "MLP 128×2": ("MLP", "mlp", {"hidden": (128, 128)}),
    "MLP 512×2": ("MLP", "mlp", {"hidden": (512, 512)}),
    "CNN 8-16-32": ("CNN", "cnn", {"channels": (8, 16, 32)}),
    "CNN 16-32-64": ("CNN", "cnn", {"channels": (16, 32, 64)}),
    "CNN 32-64-128": ("CNN", "cnn", {"channels": (32, 64, 128)}),
    "ResNet-8": ("ResNet", "resnet", {"depth": "simple", "width": 8}),
    "ResNet-14": ("ResNet", "resnet", {"depth": "medium", "width": 8}),
    "ResNet-20": ("ResNet", "resnet", {"depth": "deep", "width": 8}),
}
FAMILIES = ("MLP", "CNN", "ResNet")
#: Students distilled from the teacher: the MLP baselines' sizes (same seed, same initial weights).
STUDENTS = ("MLP 32×2", "MLP 128×2", "MLP 512×2")

#: Epochs per family in full mode (fast mode: 2, see :data:`RECIPES`). Conv nets see fewer epochs: each costs more.
EPOCHS = {"mlp": 10, "cnn": 3, "resnet": 2}
#: Learning rates: 0.02 for MLPs (lessons 01-05: 0.05 can make distilled MLP students diverge;
#: the MLP baselines use the same rate so that a student and its baseline differ only in the
#: loss), 0.05 for the batch-normalised conv nets.
LEARNING_RATES = {"mlp": 0.02, "cnn": 0.05, "resnet": 0.05}
TEMPERATURE = 4.0
ALPHA = 0.9
#: The recipes, as data: the labels-only recipe of each family (SGD + Nesterov, cosine schedule, no
#: augmentation; :data:`EPOCHS` epochs of batches of 128 at :data:`LEARNING_RATES`) and the MLP
#: students' (the MLP recipe with Hinton's loss, T = 4, alpha = 0.9). Fast mode: 2 epochs of
#: batches of 32, so that a 1,000-image transfer set still gives 60 steps. ``RECIPES("cnn", fast, seed=s)``.
_LABELS = {arch: TrainConfig(epochs=EPOCHS[arch], batch_size=128, lr=LEARNING_RATES[arch]) for arch in EPOCHS}
RECIPES = Recipes(_LABELS | {"student": _LABELS["mlp"].replace(loss="distillation", temperature=TEMPERATURE, alpha=ALPHA)},
                  fast={name: {"epochs": 2, "batch_size": 32} for name in (*EPOCHS, "student")})

#: Compression methods, their "strength" and what it means (the lesson's drop-down).
METHODS: dict[str, str] = {
    "float32": "the trained model itself, float32",
    "int8": "dynamic int8 quantization (torch): nn.Linear layers only",
    "kbit": "k-bit weights, every conv and linear layer (simulated, packed size)",
    "prune": "magnitude pruning to a sparsity, one-shot (no retraining)",
    "distil": "an MLP student distilled from the teacher",
    "distil+int8": "a distilled student, then dynamic int8",
    "distil+prune": "a distilled student, then magnitude pruning",
}
#: Which quantity each method's "strength" is.
STRENGTH = {"float32": None, "int8": None, "kbit": "bits", "prune": "sparsity", "distil": "student",
            "distil+int8": "student", "distil+prune": "sparsity"}
SIZE_MEASURES = {"stored_bytes": "stored size (compact encoding), bytes",
                 "dense_bytes": "dense file (torch.save), bytes", "nonzero": "nonzero parameters"}


def check_method(method: object) -> str:
    """``method`` if it is one of :data:`METHODS`, else a ValueError naming them."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown; expected one of {list(METHODS)}")
    return method  # type: ignore[return-value]


def check_sparsity(sparsity: object) -> float:
    """A sparsity (fraction of weights set to zero) in [0, 1)."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.floating)) or math.isnan(sparsity) \
            or not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be a fraction in [0, 1) (0.9 zeroes 90% of the weights), got {sparsity!r}")
    return float(sparsity)


def check_bits(bits: object) -> int:
    """Bits per weight for :func:`quantize_weights`: an integer from 2 to 8."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= int(bits) <= 8:
        raise ValueError(f"bits must be an integer from 2 to 8, got {bits!r}")
    return int(bits)


#: Training images every model of the lesson learns from (full mode, fast mode).
TRANSFER_SIZE = {False: 12000, True: 1000}


def transfer_set(data: Data, fast: bool, seed: int = 0) -> Data:
    """The lesson's training set: a seeded subset of :data:`TRANSFER_SIZE` images (all of
    ``data.train`` when it is smaller). Validation and test splits are unchanged."""
    n = TRANSFER_SIZE[bool(fast)]
    return data if n >= len(data.train) else data.subset(n_train=n, seed=seed)


def _check_names(names: Iterable[str] | None, allowed: Sequence[str], argument: str) -> list[str]:
    out = list(allowed if names is None else names)
    unknown = [n for n in out if n not in allowed]
    if unknown or not out:
        raise ValueError(f"{argument} must name some of {list(allowed)}, got {out!r}")
    return out


def train_baselines(data: Data, fast: bool, seed: int = 0, names: Iterable[str] | None = None,
                    progress: bool | None = None) -> dict[str, Trained]:
    """Train each baseline of :data:`MODELS` (or just ``names``) on labels, cached. -> {name: Trained}."""
    chosen = _check_names(names, list(MODELS), "names")
    tracker = RunProgress(len(chosen), "baselines", progress)
    out = {}
    for name in chosen:
        _, arch, options = MODELS[name]
        out[name] = train_model(arch, data, RECIPES(arch, fast, seed=seed), progress=False,
                                label=f"lesson 12 baseline {name} seed={seed} on {data.name}", **options)
        tracker.step(name)
    tracker.close()
    return out


def distil_students(data: Data, teacher: Trained | nn.Module, fast: bool, seed: int = 0,
                    names: Iterable[str] | None = None, progress: bool | None = None) -> dict[str, Trained]:
    """Distil each MLP size of :data:`STUDENTS` from ``teacher`` (:data:`RECIPES` ``"student"``), cached.

    A student starts from the same weights as the baseline of its size and seed."""
    chosen = _check_names(names, list(STUDENTS), "names")
    tracker = RunProgress(len(chosen), "students", progress)
    out = {}
    for name in chosen:
        _, arch, options = MODELS[name]
        out[name] = train_model(arch, data, RECIPES("student", fast, seed=seed), teacher=teacher, progress=False,
                                label=f"lesson 12 distilled {name} seed={seed} on {data.name}", **options)
        tracker.step(name)
    tracker.close()
    return out


# --------------------------------------------------------------------------------------------
# Compression


def compressible_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs whose ``weight`` pruning and k-bit quantization act on:
    every ``nn.Conv2d`` and ``nn.Linear`` (biases and batch-norm parameters are left alone)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to compress")
    return layers


def _fresh_copy(model: nn.Module) -> nn.Module:
    out = copy.deepcopy(model).cpu().eval()
    if hasattr(out, "cache_key"):
        del out.cache_key  # a compressed copy is not the cached model any more
    return out


def prune_magnitude(model: nn.Module, sparsity: float, scope: str = "global") -> nn.Module:
    """A copy of ``model`` with the ``sparsity`` fraction of its conv/linear weights of smallest
    absolute value set to zero (``torch.nn.utils.prune``; the mask is then made permanent with
    ``prune.remove``, so the copy is an ordinary model with zeros in it).

    ``scope="global"`` ranks all those weights together (layers with small weights lose more);
    ``scope="layer"`` prunes each layer to the same sparsity. No retraining.
    """
    sparsity = check_sparsity(sparsity)
    if scope not in ("global", "layer"):
        raise ValueError(f"scope={scope!r} is unknown; expected 'global' or 'layer'")
    out = _fresh_copy(model)
    layers = compressible_layers(out)
    if sparsity == 0:
        return out
    if scope == "global":
        prune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=prune.L1Unstructured,
                                  amount=sparsity)
    else:
        for _, m in layers:
            prune.l1_unstructured(m, "weight", amount=sparsity)
    for _, m in layers:
        prune.remove(m, "weight")
    return out


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero entries among the conv/linear weights."""
    weights = [m.weight.detach() for _, m in compressible_layers(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: Tensor, batch_size: int = 500) -> nn.Module:
    """Re-estimate every batch-norm layer's running mean and variance on images x (N, C, H, W),
    in place, and return the model. No gradient step: the weights do not change.

    Pruning or rounding the weights shifts each layer's output statistics, and batch norm in
    eval mode keeps normalising with the *old* ones; this one pass over a few thousand training
    images fixes that (a standard, cheap step after compressing a batch-normalised net)."""
    check_positive_int(batch_size, "batch_size")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    if len(x) == 0:
        raise ValueError("x is empty: give some training images to re-estimate the batch-norm statistics")
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over all the batches
        m.train()  # only the batch-norm layers: dropout, if any, stays off
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size].cpu())
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
        m.eval()
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by PyTorch's dynamic int8 Linear:
    int8 weights (one scale per tensor), activations quantized on the fly at each call.

    Convolutions are *not* quantized by dynamic quantization (they need static quantization with
    calibration data), so for CNNs and ResNets only the final Linear head changes. Runs on CPU.
    """
    out = _fresh_copy(model)
    with warnings.catch_warnings():
        # torch >= 2.10 deprecates torch.ao.quantization in favour of the separate torchao package
        # (not a labkd dependency). In torch 2.14 the eager dynamic path still works and is what we
        # measure, so we silence exactly these two warnings here and nowhere else.
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor.*deprecated", category=UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(out, {nn.Linear}, dtype=torch.qint8)


def quantize_tensor(weight: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """Symmetric uniform quantization with one scale per output channel (row).

    weight (out, ...) -> (codes, scale): integer codes in [-(2^(bits-1) - 1), 2^(bits-1) - 1]
    of the same shape (int8) and ``scale`` (out,) float32, so that ``codes * scale`` (broadcast
    over the rows) approximates ``weight``. 2 bits gives the three levels {-s, 0, s}.
    """
    bits = check_bits(bits)
    levels = 2 ** (bits - 1) - 1
    rows = weight.detach().float().reshape(weight.shape[0], -1)
    scale = rows.abs().amax(dim=1) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.clamp(torch.round(rows / scale[:, None]), -levels, levels).to(torch.int8)
    return codes.reshape(weight.shape), scale


def quantize_weights(model: nn.Module, bits: int) -> nn.Module:
    """A copy of ``model`` whose conv/linear weights are rounded to ``bits``-bit codes times a
    per-channel scale (:func:`quantize_tensor`), stored back as float32: it computes exactly
    what a k-bit model would, in float32, so it is not faster. ``model.quantized_bits`` records
    ``bits`` for :func:`packed_size`."""
    bits = check_bits(bits)
    out = _fresh_copy(model)
    with torch.no_grad():
        for _, m in compressible_layers(out):
            codes, scale = quantize_tensor(m.weight, bits)
            shape = (-1,) + (1,) * (m.weight.dim() - 1)
            m.weight.copy_(codes.float() * scale.reshape(shape))
    out.quantized_bits = bits
    return out


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """Pack signed ``bits``-bit codes (any shape) into a flat uint8 tensor, ``ceil(n * bits / 8)`` bytes."""
    bits = check_bits(bits)
    offset = 2 ** (bits - 1) - 1
    unsigned = (codes.reshape(-1).to(torch.int16) + offset).to(torch.uint8).numpy()
    planes = np.unpackbits(unsigned[:, None], axis=1)[:, 8 - bits:]  # (n, bits), most significant first
    return torch.from_numpy(np.packbits(planes.reshape(-1)))


def _nbytes(obj: object) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def packed_size(model: nn.Module, bits: int | None = None) -> int:
    """Bytes of ``torch.save`` of the model with each conv/linear weight stored as packed
    ``bits``-bit codes (:func:`pack_codes`) plus a float32 scale per output channel; everything
    else (biases, batch norm) float32. ``bits`` defaults to ``model.quantized_bits``."""
    bits = check_bits(bits if bits is not None else getattr(model, "quantized_bits", None))
    weights = {f"{n}.weight" for n, _ in compressible_layers(model)}
    state = {}
    for name, tensor in model.state_dict().items():
        if name in weights:
            codes, scale = quantize_tensor(tensor, bits)
            state[name] = {"codes": pack_codes(codes, bits), "scale": scale, "shape": tuple(tensor.shape)}
        else:
            state[name] = tensor
    return _nbytes(state)


def sparse_size(model: nn.Module) -> int:
    """Bytes of ``torch.save`` of the model with each conv/linear weight that has enough zeros
    stored in CSR form (rows = output channels): float32 nonzero values, int16 column indices
    (int32 for rows longer than 32,767) and int32 row pointers. A weight stays dense when that
    would not be smaller: CSR costs 6 bytes per nonzero against 4 bytes per dense entry, so it
    only pays above about one-third sparsity."""
    weights = {f"{n}.weight" for n, _ in compressible_layers(model)}
    state = {}
    for name, tensor in model.state_dict().items():
        if name in weights and tensor.is_floating_point():
            matrix = tensor.detach().reshape(tensor.shape[0], -1)
            nnz = int((matrix != 0).sum())
            index_bytes = 2 if matrix.shape[1] <= 32767 else 4
            if nnz * (4 + index_bytes) + 4 * (matrix.shape[0] + 1) < matrix.numel() * 4:
                where = matrix.nonzero()  # (nnz, 2), row-major: the CSR order
                counts = torch.bincount(where[:, 0], minlength=matrix.shape[0])
                state[name] = {"values": matrix[where[:, 0], where[:, 1]].float(),
                               "columns": where[:, 1].to(torch.int16 if index_bytes == 2 else torch.int32),
                               "rows": torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int32),
                               "shape": tuple(tensor.shape)}
                continue
        state[name] = tensor
    return _nbytes(state)


def nonzero_parameters(model: nn.Module) -> int:
    """Parameters that are not exactly zero, counting the packed weights of int8 layers."""
    count = sum(int((p != 0).sum()) for p in model.parameters())
    for m in model.modules():
        packed = getattr(m, "_packed_params", None)
        if packed is not None and hasattr(m, "weight") and callable(m.weight):
            weight, bias = m.weight(), m.bias()
            count += int((weight.int_repr() != 0).sum()) + (0 if bias is None else int((bias != 0).sum()))
    return count


def stored_size(model: nn.Module) -> int:
    """The compact size :data:`SIZE_MEASURES` calls ``stored_bytes``: :func:`packed_size` for a
    k-bit model, the smaller of :func:`sparse_size` and the dense file otherwise."""
    if getattr(model, "quantized_bits", None) is not None:
        return packed_size(model)
    dense = serialized_size(model)
    try:
        return min(dense, sparse_size(model))
    except ValueError:  # nothing to encode sparsely (e.g. a fully int8 MLP)
        return dense


# --------------------------------------------------------------------------------------------
# Measurements


@torch.no_grad()
@torch.no_grad()
def latency_ms(model: nn.Module, x: Tensor, runs: int = 5, warmup: int = 1, threads: int = 1) -> float:
    """Median wall time in milliseconds of ``model(x)`` (one batch, CPU, eval mode) over ``runs``
    timed calls after ``warmup`` untimed ones, with torch limited to ``threads`` threads
    (restored afterwards). x (B, C, H, W)."""
    check_positive_int(runs, "runs")
    check_positive_int(threads, "threads")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    model.eval()
    x = x.cpu()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(before)
    return statistics.median(times)


def measure(model: nn.Module, data: Data, latency_batch: Tensor | None = None, runs: int = 5,
            threads: int = 1) -> dict:
    """Test accuracy, parameters (trainable, nonzero), sizes and latency of one model variant.

    Returns ``test_acc``, ``params``, ``nonzero``, ``sparsity`` (of the conv/linear weights,
    float layers only), ``dense_bytes``, ``stored_bytes`` and ``latency_ms`` (None without
    ``latency_batch``)."""
    logits = metrics.predict_logits(model, data.test.x)
    float_layers = [m for _, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return {
        "test_acc": float((logits.argmax(1) == data.test.y.cpu()).float().mean()),
        "params": num_parameters(model),
        "nonzero": nonzero_parameters(model),
        "sparsity": weight_sparsity(model) if float_layers else 0.0,
        "dense_bytes": serialized_size(model),
        "stored_bytes": stored_size(model),
        "latency_ms": None if latency_batch is None else latency_ms(model, latency_batch, runs=runs, threads=threads),
    }


def compress(model: nn.Module, method: str, strength: float | int | None = None,
             calibration: Tensor | None = None) -> nn.Module:
    """Apply one method to a trained model: ``float32`` (a copy), ``int8``, ``kbit`` (strength =
    bits) or ``prune`` (strength = sparsity). The ``distil*`` methods are compressions of a
    distilled student: ``distil`` = float32, ``distil+int8`` = int8, ``distil+prune`` = prune.
    With ``calibration`` images (N, C, H, W), pruned and k-bit models get their batch-norm
    statistics re-estimated (:func:`recalibrate_batchnorm`)."""
    base = check_method(method).removeprefix("distil+")
    if base in ("float32", "distil"):
        return _fresh_copy(model)
    if base == "int8":
        return quantize_int8(model)
    if base == "kbit":
        out = quantize_weights(model, check_bits(strength))
    else:
        out = prune_magnitude(model, check_sparsity(strength))
    return out if calibration is None else recalibrate_batchnorm(out, calibration)


# --------------------------------------------------------------------------------------------
# The study


def _model(obj: Trained | nn.Module) -> nn.Module:
    return obj.model if isinstance(obj, Trained) else obj


def compression_study(
    data: Data, baselines: Mapping[str, Trained], students: Mapping[str, Trained],
    teacher: Trained | nn.Module | None = None, sparsities: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
    bits: Sequence[int] = (8, 4, 2), latency_batch_size: int = 256, runs: int = 5, threads: int = 1,
    calibration_images: int = 2000, progress: bool | None = None, on_run: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Every compression of every model, measured on ``data.test``: one tidy row per variant.

    Rows: ``model`` (the uncompressed model's name), ``family`` ("MLP", "CNN", "ResNet",
    "student", "teacher"), ``method``, ``strength`` (bits, sparsity, student name or None),
    ``label`` (one line for hover text), ``parent`` (the label of the model it was compressed
    from, for arrows), plus everything :func:`measure` returns. Baselines get ``float32``,
    ``int8``, ``kbit`` at each of ``bits`` and ``prune`` at each of ``sparsities``; students get
    ``distil``, ``distil+int8`` and ``distil+prune``. Latency: a batch of the first
    ``latency_batch_size`` test images, median of ``runs`` runs, ``threads`` torch threads.
    Pruned and k-bit models re-estimate their batch-norm statistics on the first
    ``calibration_images`` training images (0: not at all).
    """
    sparsities = [check_sparsity(s) for s in sparsities]
    bits = [check_bits(b) for b in bits]
    check_positive_int(latency_batch_size, "latency_batch_size")
    if not baselines and not students:
        raise ValueError("give at least one trained baseline or student to compress")
    for name in students:
        if name not in MODELS:
            raise ValueError(f"student {name!r} is not one of the lesson's models {list(MODELS)}")
    if isinstance(calibration_images, bool) or not isinstance(calibration_images, int) or calibration_images < 0:
        raise ValueError(f"calibration_images must be a non-negative integer, got {calibration_images!r}")
    calibration = data.train.x[:calibration_images] if calibration_images else None
    batch = data.test.x[:latency_batch_size]
    jobs: list[tuple[str, str, str, float | int | str | None, nn.Module, str | None]] = []
    if teacher is not None:
        jobs.append(("teacher", "teacher", "float32", None, _model(teacher), None))
    for name, trained in baselines.items():
        family = MODELS[name][0] if name in MODELS else "other"
        parent = f"{name} · float32"
        jobs.append((name, family, "float32", None, _model(trained), None))
        jobs.append((name, family, "int8", None, _model(trained), parent))
        jobs += [(name, family, "kbit", b, _model(trained), parent) for b in bits]
        jobs += [(name, family, "prune", s, _model(trained), parent) for s in sparsities]
    for name, trained in students.items():
        parent = f"{name} · distil"
        twin = f"{name} · float32" if name in baselines else None  # the labels-only model of its size
        jobs.append((name, "student", "distil", name, _model(trained), twin))
        jobs.append((name, "student", "distil+int8", name, _model(trained), parent))
        jobs += [(name, "student", "distil+prune", s, _model(trained), parent) for s in sparsities]
    tracker = RunProgress(len(jobs), "measuring", progress)
    rows = []
    for i, (name, family, method, strength, model, parent) in enumerate(jobs, start=1):
        variant = compress(model, method, strength if STRENGTH[method] in ("bits", "sparsity") else None, calibration)
        label = f"{name} · {method}" + ("" if strength is None or STRENGTH[method] == "student"
                                        else f" {strength:g} bits" if method == "kbit" else f" {strength:.0%}")
        rows.append({"model": name, "family": family, "method": method, "strength": strength, "label": label,
                     "parent": parent, **measure(variant, data, batch, runs=runs, threads=threads)})
        tracker.step(label)
        if on_run is not None:
            on_run(i, len(jobs))
    tracker.close()
    return rows


def seed_rows(data: Data, baselines: Mapping[str, Trained], students: Mapping[str, Trained], seed: int) -> list[dict]:
    """Test accuracy of labels-only and distilled students of one seed (for the spread over seeds):
    rows ``model``, ``method`` ("float32" or "distil"), ``seed``, ``test_acc``."""
    rows = []
    for method, group in (("float32", baselines), ("distil", students)):
        for name, trained in group.items():
            acc = float((metrics.predict_logits(_model(trained), data.test.x).argmax(1) == data.test.y.cpu()).float().mean())
            rows.append({"model": name, "method": method, "seed": seed, "test_acc": acc})
    return rows


# --------------------------------------------------------------------------------------------
# Reading the results


def select(rows: Sequence[Mapping], method: str, strength: float | int | str | None = None) -> list[Mapping]:
    """The rows of one method at one strength (all strengths when ``strength`` is None).

    Unknown methods, and strengths the study did not measure, are errors that list what exists."""
    check_method(method)
    mine = [r for r in rows if r["method"] == method]
    if strength is None or STRENGTH[method] is None:
        return mine
    available = sorted({r["strength"] for r in mine}, key=str)
    if method in ("prune", "distil+prune"):
        check_sparsity(strength)
        hits = [r for r in mine if abs(float(r["strength"]) - float(strength)) < 1e-9]
    elif method == "kbit":
        check_bits(strength)
        hits = [r for r in mine if r["strength"] == int(strength)]
    else:
        hits = [r for r in mine if r["strength"] == strength]
    if not hits:
        raise ValueError(f"{method} was not measured at {STRENGTH[method]}={strength!r}; measured: {available}")
    return hits


def strengths(rows: Sequence[Mapping], method: str) -> list:
    """The strengths measured for ``method``, in increasing compression (students smallest last)."""
    check_method(method)
    values = list(dict.fromkeys(r["strength"] for r in rows if r["method"] == method))
    if STRENGTH[method] == "bits":
        return sorted(values, reverse=True)
    if STRENGTH[method] == "sparsity":
        return sorted(values)
    if STRENGTH[method] == "student":
        return sorted(values, key=lambda n: -MODELS[n][2]["hidden"][0] if n in MODELS else 0)
    return values


def summary_table(rows: Sequence[Mapping], methods: Sequence[str] | None = None) -> list[dict]:
    """One line per (model, method, strength): accuracy, sizes, compression ratio (stored bytes
    of the float32 parent over this variant's) and latency, formatted for a table."""
    parents = {r["label"]: r for r in rows}
    lines = []
    for r in rows:
        if methods is not None and r["method"] not in methods:
            continue
        ref = parents.get(f"{r['model']} · float32") or r
        lines.append({
            "variant": r["label"], "test acc": f"{r['test_acc']:.2%}",
            "Δ acc vs float32 (points)": f"{(r['test_acc'] - ref['test_acc']) * 100:+.2f}",
            "dense file": _kb(r["dense_bytes"]), "stored": _kb(r["stored_bytes"]),
            "smaller by": f"{ref['stored_bytes'] / r['stored_bytes']:.1f}×",
            "nonzero params": f"{r['nonzero']:,}",
            "latency (ms/batch)": "" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}",
        })
    return lines


def _kb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def findings(rows: Sequence[Mapping], seed_results: Sequence[Mapping] = (), tolerance: float = 0.01) -> list[str]:
    """Sentences for "What we found", computed from the rows (nothing typed by hand):
    int8 and k-bit size ratios and accuracy changes per family, the largest sparsity that stays
    within ``tolerance`` of the dense accuracy, and distilled students against their labels-only
    baselines (against the spread over seeds when ``seed_results`` has several seeds)."""
    out = []
    by_label = {r["label"]: r for r in rows}
    for family in FAMILIES:
        pairs = [(by_label[r["parent"]], r) for r in rows if r["family"] == family and r["method"] == "int8"]
        if pairs:
            ratios = [p["stored_bytes"] / r["stored_bytes"] for p, r in pairs]
            deltas = [(r["test_acc"] - p["test_acc"]) * 100 for p, r in pairs]
            out.append(f"{family}: dynamic int8 made the files {min(ratios):.2f}–{max(ratios):.2f}× smaller, "
                       f"accuracy changed by {min(deltas):+.2f} to {max(deltas):+.2f} points.")
    for name in dict.fromkeys(r["model"] for r in rows if r["method"] == "prune"):
        dense = by_label[f"{name} · float32"]
        ok = [r for r in rows if r["model"] == name and r["method"] == "prune"
              and r["test_acc"] >= dense["test_acc"] - tolerance]
        best = max(ok, key=lambda r: r["strength"]) if ok else None
        points = f"{tolerance * 100:g} point{'s' if tolerance != 0.01 else ''}"
        out.append(f"{name}: " + (f"pruned to {best['strength']:.0%} sparsity losing at most {points} of accuracy "
                                  f"({best['test_acc']:.2%} vs {dense['test_acc']:.2%}), stored "
                                  f"{dense['stored_bytes'] / best['stored_bytes']:.1f}× smaller, dense file unchanged."
                                  if best else f"every sparsity tried lost more than {points} of accuracy."))
    seeds = sorted({r["seed"] for r in seed_results})
    for name in dict.fromkeys(r["model"] for r in seed_results if r["method"] == "distil"):
        kd = [r["test_acc"] for r in seed_results if r["model"] == name and r["method"] == "distil"]
        base = [r["test_acc"] for r in seed_results if r["model"] == name and r["method"] == "float32"]
        if base:
            out.append(f"{name} over {len(seeds)} seed(s): " + stats.compare(kd, base, "distilled", "labels only")["verdict"])
    return out


def student_seed_rows(data: Data, teacher: Trained | nn.Module, fast: bool, seeds: Sequence[int],
                      progress: bool | None = None) -> list[dict]:
    """For each seed: the MLP baselines of :data:`STUDENTS` sizes and the students distilled from
    ``teacher`` (same seed, same initial weights; cached, so the study's seed is reused), as
    :func:`seed_rows` rows. One teacher for every seed: the spread is the students' own."""
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or any(
            isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be distinct non-negative integers, got {seeds!r}")
    rows = []
    for seed in seeds:
        base = train_baselines(data, fast, int(seed), names=STUDENTS, progress=progress)
        students = distil_students(data, teacher, fast, int(seed), progress=progress)
        rows += seed_rows(data, base, students, int(seed))
    return rows


def model_table(baselines: Mapping[str, Trained], students: Mapping[str, Trained] | None = None,
                teacher: Trained | None = None) -> list[dict]:
    """One line per trained model: family, parameters, dense file size, epochs, test accuracy."""
    items = ([("teacher", "teacher (hinton_teacher)", teacher)] if teacher is not None else [])
    items += [(MODELS[n][0], n, t) for n, t in baselines.items()]
    items += [("student", f"{n} (distilled)", t) for n, t in (students or {}).items()]
    return [{"family": family, "model": name, "parameters": f"{num_parameters(t.model):,}",
             "dense file": _kb(serialized_size(t.model)), "epochs": len(t.history),
             "test acc": f"{t.final('test_acc'):.2%}"} for family, name, t in items]


def describe_layers(model: nn.Module) -> list[str]:
    """One line per conv/linear layer (float or quantized): its name and type, e.g.
    ``head.2: DynamicQuantizedLinear``; shows which layers a method changed."""
    out = []
    for name, m in model.named_modules():
        quantized = "quantized" in type(m).__module__ and callable(getattr(m, "weight", None))
        if isinstance(m, (nn.Conv2d, nn.Linear)) or quantized:
            out.append(f"{name}: {type(m).__name__} ({'int8, dynamic' if quantized else 'float32'})")
    return out


def pareto_front(rows: Sequence[Mapping], size: str = "stored_bytes") -> list[Mapping]:
    """The variants no other variant beats on both ``size`` (smaller) and accuracy (higher),
    smallest first."""
    if size not in SIZE_MEASURES:
        raise ValueError(f"size={size!r} is unknown; expected one of {list(SIZE_MEASURES)}")
    ordered = sorted(rows, key=lambda r: (r[size], -r["test_acc"]))
    front, best = [], -1.0
    for r in ordered:
        if r["test_acc"] > best:
            front.append(r)
            best = r["test_acc"]
    return front


def best_under_budgets(rows: Sequence[Mapping], budgets: Sequence[int], size: str = "stored_bytes") -> list[dict]:
    """For each size budget (bytes): the most accurate variant that fits, and the most accurate
    uncompressed baseline that fits (for comparison)."""
    out = []
    for budget in budgets:
        check_positive_int(budget, "each budget")
        fits = [r for r in rows if r[size] <= budget]
        plain = [r for r in fits if r["method"] == "float32" and r["family"] != "teacher"]
        best = max(fits, key=lambda r: r["test_acc"]) if fits else None
        base = max(plain, key=lambda r: r["test_acc"]) if plain else None
        out.append({"budget": _kb(budget), "best variant": best["label"] if best else "nothing fits",
                    "its accuracy": f"{best['test_acc']:.2%}" if best else "",
                    "its size": _kb(best[size]) if best else "",
                    "best uncompressed baseline": base["label"] if base else "nothing fits",
                    "baseline accuracy": f"{base['test_acc']:.2%}" if base else ""})
    return out


#: Published MNIST numbers to set beside ours (typed from the papers, with the source).
PAPER_RESULTS = (
    {"source": "Han et al. 2016, Deep Compression (ICLR)", "model": "LeNet-300-100 (MLP)",
     "method": "prune to 8% of weights + retrain, trained quantization, Huffman",
     "accuracy": "98.42% (baseline 98.36%)",
     "size": "1070 kB → 27 kB (40×)"},
    {"source": "Han et al. 2016, Deep Compression (ICLR)", "model": "LeNet-5 (CNN)",
     "method": "prune to 8% of weights + retrain, trained quantization, Huffman",
     "accuracy": "99.26% (baseline 99.20%)",
     "size": "1720 kB → 44 kB (39×)"},
    {"source": "Hinton et al. 2015, Distilling the Knowledge", "model": "784-800-800-10 MLP student",
     "method": "distilled from a 1200-1200 teacher (T = 20)", "accuracy": "74 test errors (146 labels only)",
     "size": "same size, more accurate"},
)


def same_start(baselines: Mapping[str, Trained], students: Mapping[str, Trained]) -> list[str]:
    """Proof of a fair comparison (:func:`labkd.stats.same_start`): for each student, the norm of
    its first layer *before* training and that of the labels-only baseline of its size (equal:
    same initial weights)."""
    missing = [name for name in students if name not in baselines]
    if missing:
        raise ValueError(f"no labels-only baseline named {missing[0]!r} to compare the student with")
    return stats.same_start({name: [metrics.first_layer_norm(baselines[name]), metrics.first_layer_norm(student)]
                             for name, student in students.items()}, what="first-layer norm")


# --------------------------------------------------------------------------------------------
# A combination the student chooses (lesson 12's second panel)

#: Number formats of :func:`combine`: name -> bits of the k-bit simulation (None: float32 or int8).
FORMATS = {"float32": None, "int8 (dynamic)": None, "8-bit": 8, "4-bit": 4, "2-bit": 2}


def combine(model: nn.Module, sparsity: float = 0.0, number_format: str = "float32",
            calibration: Tensor | None = None) -> nn.Module:
    """Prune ``model`` to ``sparsity`` (0: not at all), then store it in ``number_format`` (a key
    of :data:`FORMATS`): the pipeline order of Han et al. (2016). With ``calibration`` images the
    batch-norm statistics are re-estimated after each step that changes the weights."""
    sparsity = check_sparsity(sparsity)
    if number_format not in FORMATS:
        raise ValueError(f"number_format={number_format!r} is unknown; expected one of {list(FORMATS)}")
    out = prune_magnitude(model, sparsity) if sparsity > 0 else _fresh_copy(model)
    if sparsity > 0 and calibration is not None:
        out = recalibrate_batchnorm(out, calibration)
    if number_format == "int8 (dynamic)":
        return quantize_int8(out)
    bits = FORMATS[number_format]
    if bits is None:
        return out
    out = quantize_weights(out, bits)
    return out if calibration is None else recalibrate_batchnorm(out, calibration)
