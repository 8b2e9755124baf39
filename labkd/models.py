"""Teachers and students: MLPs, small CNNs and a small ResNet family.

Every model is a chain of named blocks followed by a linear head, so any block's output can be
read without copying the model (FitNets hints, relation losses):

>>> model = build_model("cnn", channels=(16, 16, 32, 32), seed=0)
>>> logits, features = model.forward_features(x)     # x (N, 1, 28, 28)
>>> model.feature_names                               # ['conv1', 'conv2', 'conv3', 'conv4']
>>> num_parameters(model), serialized_size(model)
"""

from __future__ import annotations

import io
import numbers
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class BlockModel(nn.Module):
    """Named blocks applied in order, then ``head`` maps the last block's output to logits."""

    def __init__(self, blocks: OrderedDict[str, nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict(blocks)
        self.head = head
        self.spec: dict = {}

    @property
    def feature_names(self) -> list[str]:
        """Names of the blocks whose outputs ``forward_features`` returns."""
        return list(self.blocks.keys())

    def forward(self, x: Tensor) -> Tensor:
        """x (N, C, H, W) -> logits (N, num_classes)."""
        for block in self.blocks.values():
            x = block(x)
        return self.head(x)

    def forward_features(self, x: Tensor, upto: str | None = None) -> tuple[Tensor | None, dict[str, Tensor]]:
        """Logits and every block's output ``{name: (N, ...)}``.

        With ``upto`` the pass stops after that block and the logits are ``None``
        (FitNets stage 1 trains only the layers up to the guided one).
        """
        if upto is not None:
            check_feature_name(self, upto, "upto")
        features: dict[str, Tensor] = {}
        for name, block in self.blocks.items():
            x = block(x)
            features[name] = x
            if name == upto:
                return None, features
        return self.head(x), features

    def feature_shape(self, name: str) -> tuple[int, ...]:
        """Shape of one example's ``name`` feature, e.g. (32, 14, 14)."""
        check_feature_name(self, name, "name")
        shape = tuple(self.spec["input_shape"])
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        with torch.no_grad():
            _, features = self.forward_features(torch.zeros(1, *shape, device=device), upto=name)
        self.train(was_training)
        return tuple(features[name].shape[1:])


def check_feature_name(model: nn.Module, name: str, argument: str) -> None:
    names = getattr(model, "feature_names", None)
    if names is None:
        raise TypeError(f"{type(model).__name__} does not expose features; build it with labkd.build_model")
    if name not in names:
        raise ValueError(f"{argument}={name!r} is not a layer of this model; expected one of {names}")


# --------------------------------------------------------------------------------------------
# Architectures


def keep_mask(x: Tensor, p: float) -> Tensor:
    """A boolean mask shaped like ``x``, each entry True with probability ``1 - p`` (to 1/65536).

    Draws 64 random bits per four entries and compares 16-bit lanes with a threshold: a quarter
    of the generator calls of ``rand_like`` and ~2.7x faster than it on CPU (``bernoulli_`` is
    slower still: single-threaded). Seeded by the global generator like every torch sampler.
    """
    n = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    lanes = words.view(torch.int16)[:n].view(x.shape)  # uniform on [-32768, 32767]
    return lanes >= int(round(p * 65536)) - 32768


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a faster mask (:func:`keep_mask`).

    Same semantics: in training each unit is zeroed with probability p and the kept ones scaled
    by 1/(1-p); identity in eval. PyTorch's own mask took 40% of a Hinton-teacher training step
    on 2 cores; this one takes ~5% (see ``benchmarks/README.md``).
    """

    def forward(self, x: Tensor) -> Tensor:  # x: any shape
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x * 0
        return x * (keep_mask(x, self.p).to(x.dtype) * (1.0 / (1.0 - self.p)))


def mlp(
    input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (800, 800),
    dropout: float = 0.0, input_dropout: float = 0.0,
) -> BlockModel:
    """Fully connected net: ``hidden`` ReLU layers (features ``fc1``, ``fc2``, ...).

    Hinton et al.'s MNIST teacher is ``hidden=(1200, 1200), dropout=0.5, input_dropout=0.2``;
    their student is ``hidden=(800, 800)`` with no dropout.
    """
    _check_probability(dropout, "dropout")
    _check_probability(input_dropout, "input_dropout")
    hidden = _check_sizes(hidden, "hidden", "hidden must list positive layer widths")
    width = 1
    for d in input_shape:
        width *= int(d)
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    for i, h in enumerate(hidden, start=1):
        layers: list[nn.Module] = []
        if i == 1:
            layers.append(nn.Flatten())
        if (input_dropout if i == 1 else dropout) > 0:
            layers.append(Dropout(input_dropout if i == 1 else dropout))
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        blocks[f"fc{i}"] = nn.Sequential(*layers)
        width = int(h)
    head = nn.Sequential(Dropout(dropout), nn.Linear(width, num_classes)) if dropout > 0 else nn.Linear(width, num_classes)
    return BlockModel(blocks, head)


def cnn(
    input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (32, 64),
    pool_after: Sequence[int] | None = None, kernel_size: int = 3, batch_norm: bool = True, head: str = "avg",
) -> BlockModel:
    """Conv-BN-ReLU layers (features ``conv1``...), 2x2 max-pooling after the layers in
    ``pool_after`` (1-based; default: after a third and two thirds of the layers, so most
    layers run on 14x14 or 7x7 maps and a CPU trains them quickly), global average pooling
    and a linear head. Wide and shallow: ``channels=(64, 128)``; deep and thin:
    ``channels=(16, 16, 16, 32, 32, 32)``. ``batch_norm=False``: plain Conv(+bias)-ReLU layers
    with PyTorch's default initialisation (the hard-to-train deep students of FitNets, lesson 03).
    ``head="flatten"``: a linear layer on the whole last feature map instead of global average
    pooling, which keeps *where* a feature was seen (lesson 08's specialist).
    """
    if head not in ("avg", "flatten"):
        raise ValueError(f"head must be 'avg' (global average pooling) or 'flatten', got {head!r}")
    if not isinstance(batch_norm, bool):
        raise TypeError(f"batch_norm must be True or False, got {batch_norm!r}")
    channels = _check_sizes(channels, "channels", "channels must list positive channel counts")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size <= 0 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer (3, 5, ...), got {kernel_size!r}")
    if pool_after is not None:
        pool_after = _check_sizes(pool_after, "pool_after", "pool_after must list layer numbers")
    n = len(channels)
    first = max(1, n // 3)
    pools = set(pool_after) if pool_after is not None else ({first, max(first + 1, 2 * n // 3)} if n > 1 else {1})
    if any(not 1 <= p <= n for p in pools):
        raise ValueError(f"pool_after must name layers 1..{n}, got {sorted(pools)}")
    if min(int(s) for s in input_shape[1:]) < 2 ** len(pools):
        raise ValueError(f"{len(pools)} poolings need images of at least {2 ** len(pools)}x{2 ** len(pools)} pixels, "
                         f"got {tuple(input_shape)}; pool after fewer layers (pool_after=...)")
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    c_in = int(input_shape[0])
    for i, c in enumerate(channels, start=1):
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, int(c), kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(int(c)), nn.ReLU(),
        ] if batch_norm else [nn.Conv2d(c_in, int(c), kernel_size, padding=kernel_size // 2), nn.ReLU()]
        if i in pools:
            layers.append(nn.MaxPool2d(2))
        blocks[f"conv{i}"] = nn.Sequential(*layers)
        c_in = int(c)
    if head == "flatten":
        h, w = int(input_shape[1]), int(input_shape[2])
        for _ in pools:
            h, w = h // 2, w // 2
        return BlockModel(blocks, nn.Sequential(nn.Flatten(), nn.Linear(c_in * h * w, num_classes)))
    return BlockModel(blocks, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


RESNET_DEPTHS = {"simple": 1, "medium": 2, "deep": 3}


def resnet(
    input_shape: Sequence[int], num_classes: int, depth: str = "simple", width: int = 16,
) -> BlockModel:
    """A CIFAR-style ResNet for 28x28 inputs: a stem and three stages of basic blocks with
    ``width``, 2x and 4x channels (features ``stem``, ``stage1``..``stage3``).
    ``depth`` "simple", "medium", "deep" = 1, 2, 3 blocks per stage (8, 14, 20 layers)."""
    if depth not in RESNET_DEPTHS:
        raise ValueError(f"depth={depth!r} is unknown; expected one of {list(RESNET_DEPTHS)}")
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    n = RESNET_DEPTHS[depth]
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    blocks["stem"] = nn.Sequential(
        nn.Conv2d(int(input_shape[0]), width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
    )
    c_in = width
    for s, c in enumerate((width, 2 * width, 4 * width), start=1):
        stage = [BasicBlock(c_in if i == 0 else c, c, 2 if (i == 0 and s > 1) else 1) for i in range(n)]
        blocks[f"stage{s}"] = nn.Sequential(*stage)
        c_in = c
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
    return BlockModel(blocks, head)


ARCHITECTURES = {"mlp": mlp, "cnn": cnn, "resnet": resnet}

#: Named configurations used across the course.
PRESETS: dict[str, dict] = {
    "hinton_teacher": {"arch": "mlp", "hidden": (1200, 1200), "dropout": 0.5, "input_dropout": 0.2},
    "hinton_student": {"arch": "mlp", "hidden": (800, 800)},
    "small_student": {"arch": "mlp", "hidden": (30, 30)},
    "fitnet_teacher": {"arch": "cnn", "channels": (64, 128)},
    "fitnet_student": {"arch": "cnn", "channels": (16, 16, 16, 32, 32, 32)},
    "resnet_simple": {"arch": "resnet", "depth": "simple"},
    "resnet_medium": {"arch": "resnet", "depth": "medium"},
    "resnet_deep": {"arch": "resnet", "depth": "deep"},
}


def build_model(
    arch: str, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, seed: int = 0,
    **options,
) -> BlockModel:
    """Build a model by architecture (``mlp``, ``cnn``, ``resnet``) or preset name.

    The initial weights depend only on ``seed`` (the global RNG is left untouched), so two
    students built with the same seed start identical. ``model.spec`` records everything
    needed to rebuild it (the model cache hashes it).
    """
    if arch in PRESETS:
        preset = dict(PRESETS[arch])
        arch = preset.pop("arch")
        options = {**preset, **options}
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown model {arch!r}; expected one of {sorted(ARCHITECTURES) + sorted(PRESETS)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
        raise TypeError(f"seed must be a non-negative integer, got {seed!r}")
    if (isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or len(input_shape) != 3
            or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s <= 0 for s in input_shape)):
        raise ValueError(f"input_shape must be (channels, height, width) of positive integers, e.g. "
                         f"data.input_shape, got {input_shape!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = ARCHITECTURES[arch](tuple(input_shape), num_classes, **options)
        except TypeError as error:
            raise TypeError(f"bad option for model {arch!r}: {error}") from None
    model.spec = {
        "arch": arch, "input_shape": list(input_shape), "num_classes": num_classes, "seed": seed,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in sorted(options.items())},
    }
    return model


def rebuild(spec: dict) -> BlockModel:
    """A fresh model (same initial weights) from a ``model.spec`` dict."""
    options = {k: v for k, v in spec.items() if k not in ("arch", "input_shape", "num_classes", "seed")}
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return build_model(spec["arch"], spec["input_shape"], spec["num_classes"], spec["seed"], **options)


def num_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (packed quantized weights are counted by ``serialized_size``)."""
    return sum(p.numel() for p in model.parameters())


def serialized_size(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the size a deployed model takes on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def describe(model: nn.Module) -> str:
    """One line: architecture, parameters and size, e.g. ``mlp (1200, 1200): 2.4M params, 9.5 MB``."""
    spec = getattr(model, "spec", {})
    shape = spec.get("hidden") or spec.get("channels") or spec.get("depth") or ""
    return (f"{spec.get('arch', type(model).__name__)} {tuple(shape) if isinstance(shape, list) else shape}: "
            f"{num_parameters(model) / 1e6:.2f}M params, {serialized_size(model) / 1e6:.2f} MB")


def _check_probability(value: float, argument: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{argument} must be a probability in [0, 1), got {value!r}")


def _check_sizes(values: object, argument: str, message: str) -> tuple[int, ...]:
    """A non-empty list or tuple of positive integers (not a string, not floats such as 2.7)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{message}, such as (30, 30); got {values!r} ({type(values).__name__})")
    if not values or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0 for v in values):
        raise ValueError(f"{message} (positive integers), got {values!r}")
    return tuple(int(v) for v in values)
