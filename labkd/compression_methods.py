r"""The ways lesson 12 (:mod:`labkd.compression`) makes a trained network small, and how it measures
them: magnitude pruning (:func:`prune_magnitude`, one-shot, batch-norm statistics re-estimated by
:func:`recalibrate_batchnorm`), PyTorch's dynamic int8 (:func:`quantize_int8`), simulated k-bit
weights (:func:`quantize_weights`), their stored sizes (:func:`stored_size`: CSR for pruned
matrices, packed codes for k-bit weights) and CPU latency (:func:`latency_ms`).

>>> small = compress(model, "prune", 0.9)           # a pruned copy; the model is untouched
>>> measure(small, data)                            # test accuracy, sizes, nonzeros, latency
>>> combine(model, sparsity=0.5, number_format="4-bit")
"""

from __future__ import annotations

import copy
import io
import math
import statistics
import time
import warnings

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from labkd import metrics
from labkd.checks import check_positive_int
from labkd.data import Data
from labkd.models import num_parameters, serialized_size

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
