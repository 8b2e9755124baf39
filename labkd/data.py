"""Datasets as in-memory tensors, seeded splits, subsets, batches and batched jitter.

A dataset is read from disk once per process and kept as normalised float tensors of shape
(N, 1, H, W); batches are slices of those tensors, so an epoch costs no Python per sample.

>>> data = load_data("mnist")                       # 55k train / 5k val / 10k test
>>> small = data.subset(n_train=2000, drop_classes=[3])
>>> for x, y, idx in batches(small.train, 128, seed=0, jitter=2):
...     ...
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from labkd.paths import data_dir

#: The datasets labkd knows, with the folder torchvision reads them from.
TORCHVISION_DATASETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
DATASET_NAMES = (*TORCHVISION_DATASETS, "digits")

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: MD5 of the uncompressed IDX files, as published.
RAW_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "digits": [str(d) for d in range(10)],
    "fashion_mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset files are missing and could not be downloaded."""


class DatasetCorruptError(DatasetNotFoundError):
    """The dataset files are present but fail their published checksum (damaged bytes)."""


@dataclass
class Split:
    """One part of a dataset: images ``x`` (N, 1, H, W) float32, normalised, and labels ``y`` (N,)."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} rows but y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))

    def take(self, index: Tensor) -> Split:
        """The rows at ``index`` (a LongTensor or bool mask)."""
        return Split(self.x[index], self.y[index])

    def class_counts(self, num_classes: int) -> Tensor:
        """Images per class, shape (num_classes,)."""
        return torch.bincount(self.y.cpu(), minlength=num_classes)


@dataclass
class Data:
    """A dataset ready for training: train/val/test splits plus what describes them.

    ``spec`` is a plain dict that identifies the data exactly (name, split, subset); the model
    cache hashes it. ``fallback_reason`` is set when the lab fell back to the bundled digits.
    """

    name: str
    train: Split
    val: Split
    test: Split
    class_names: list[str]
    mean: float
    std: float
    spec: dict = field(default_factory=dict)
    fallback_reason: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]

    @property
    def background(self) -> float:
        """The normalised value of a blank (zero) pixel; jitter pads with it."""
        return -self.mean / self.std

    @property
    def device(self) -> torch.device:
        return self.train.x.device

    def fingerprint(self) -> str:
        """A short hash of the contents (every split's images and labels, the class names): the
        model cache keys on it, so the same ``spec`` with other images or labels (shuffled labels,
        a damaged file) never finds the other data's models. Each tensor is hashed once (about
        half a second for all of MNIST; subsets share the validation and test tensors) and again
        only if it is changed in place."""
        digest = hashlib.sha256(repr(list(self.class_names)).encode())
        for t in (self.train.x, self.train.y, self.val.x, self.val.y, self.test.x, self.test.y):
            digest.update(_tensor_digest(t))
        return digest.hexdigest()[:20]

    def to(self, device: torch.device | str) -> Data:
        return dataclasses.replace(
            self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device)
        )

    def subset(
        self,
        n_train: int | None = None,
        keep_classes: Sequence[int] | None = None,
        drop_classes: Sequence[int] | None = None,
        n_val: int | None = None,
        n_test: int | None = None,
        seed: int = 0,
    ) -> Data:
        """A smaller copy: class filters apply to the training (transfer) split only,
        then the first ``n_train`` of a seeded permutation are kept. ``n_val`` and ``n_test``
        shorten the evaluation splits (for fast mode) without changing their class mix.

        >>> no_threes = data.subset(drop_classes=[3])       # Hinton's "transfer set with no 3s"
        >>> sevens_eights = data.subset(keep_classes=[7, 8])
        """
        if keep_classes is not None and drop_classes is not None:
            raise ValueError("give keep_classes or drop_classes, not both")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise TypeError(f"seed must be a non-negative integer, got {seed!r}")
        train = self.train
        if keep_classes is not None or drop_classes is not None:
            chosen = _check_classes(
                keep_classes if keep_classes is not None else drop_classes,
                self.num_classes,
                "keep_classes" if keep_classes is not None else "drop_classes",
            )
            member = torch.isin(train.y, torch.tensor(chosen, device=train.y.device))
            mask = member if keep_classes is not None else ~member
            if not bool(mask.any()):
                raise ValueError(
                    f"the class filter (keep_classes={keep_classes}, drop_classes={drop_classes}) "
                    f"leaves no training images; keep at least one of classes 0..{self.num_classes - 1}"
                )
            train = train.take(mask)
        train = _first_n(train, n_train, "n_train", seed)
        val = _first_n(self.val, n_val, "n_val", seed)
        test = _first_n(self.test, n_test, "n_test", seed)
        spec = dict(self.spec)
        spec["subset"] = {
            "n_train": n_train, "keep_classes": _sorted_or_none(keep_classes),
            "drop_classes": _sorted_or_none(drop_classes), "n_val": n_val, "n_test": n_test,
            "seed": seed, "previous": self.spec.get("subset"),
        }
        return dataclasses.replace(self, train=train, val=val, test=test, spec=spec)


#: SHA-256 of each live tensor's contents, by ``id``: (weak reference, version counter, digest).
_TENSOR_DIGESTS: dict[int, tuple[weakref.ref, int, bytes]] = {}


def _tensor_digest(t: Tensor) -> bytes:
    key = id(t)
    known = _TENSOR_DIGESTS.get(key)
    if known is not None and known[0]() is t and known[1] == t._version:
        return known[2]
    flat = t.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{flat.dtype}{tuple(flat.shape)}".encode())
    digest.update(memoryview(flat.reshape(-1).view(torch.uint8).numpy()))
    forget = weakref.ref(t, lambda _ref, key=key: _TENSOR_DIGESTS.pop(key, None))
    _TENSOR_DIGESTS[key] = (forget, t._version, digest.digest())
    return _TENSOR_DIGESTS[key][2]


def _sorted_or_none(values: Sequence[int] | None) -> list[int] | None:
    return None if values is None else sorted(int(v) for v in values)


def _check_classes(classes: Sequence[int], num_classes: int, argument: str) -> list[int]:
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (Sequence, set, frozenset, Tensor)):
        raise TypeError(f"{argument} must be a list of class ids such as [3], got {classes!r}")
    values = [int(c) if isinstance(c, Tensor) and c.numel() == 1 and not c.is_floating_point() else c
              for c in classes]
    if not values:
        raise ValueError(f"{argument} is empty; name at least one class id in 0..{num_classes - 1}")
    for c in values:
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < num_classes:
            raise ValueError(f"{argument} has {c!r}; class ids are integers 0..{num_classes - 1}")
    return values


def _first_n(split: Split, n: int | None, argument: str, seed: int) -> Split:
    if n is None:
        return split
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"{argument} must be a positive integer, got {n!r}")
    if n > len(split):
        raise ValueError(f"{argument}={n} is larger than the {len(split)} images available")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(split), generator=generator)[:n].sort().values
    return split.take(order.to(split.y.device))


# --------------------------------------------------------------------------------------------
# Loading


def load_data(
    name: str = "mnist",
    root: str | Path | None = None,
    val_size: int | None = None,
    split_seed: int = 0,
    device: torch.device | str = "cpu",
    download: bool = True,
    fallback: bool = False,
) -> Data:
    """Load a dataset as normalised in-memory tensors with a fixed, seeded train/val split.

    Args:
        name: ``"mnist"``, ``"fashion_mnist"`` or ``"digits"`` (scikit-learn's 8x8 digits,
            bundled offline: 1,797 images, split 1,197 / 200 / 400).
        root: folder holding ``MNIST/raw`` etc.; default ``LABKD_DATA`` or ``<repo>/data``.
        val_size: training images held out for validation; default 5,000 (MNIST: 60k -> 55k + 5k),
            200 for digits.
        split_seed: seed of the train/val permutation; the same seed, the same split.
        device: where the tensors live.
        download: try torchvision's download when the files are missing.
        fallback: if the files are missing and cannot be downloaded, return the digits
            dataset instead, with ``fallback_reason`` set (notebooks show it as a banner).
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    if val_size is None:
        val_size = 200 if name == "digits" else 5000
    if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size <= 0:
        raise ValueError(f"val_size must be a positive integer, got {val_size!r}")
    # Resolve the folder now, so a changed LABKD_DATA is honoured by the per-process cache.
    folder = None if name == "digits" else (Path(root).expanduser() if root is not None else data_dir())
    try:
        data = _load_cpu(name, None if folder is None else str(folder.resolve()), val_size, split_seed, download)
    except DatasetNotFoundError as error:
        if not fallback:
            raise
        data = _load_cpu("digits", None, 200, split_seed, False)
        data = dataclasses.replace(data, fallback_reason=str(error))
    return data.to(device) if torch.device(device) != data.device else data


@functools.lru_cache(maxsize=8)
def _load_cpu(name: str, root: str | None, val_size: int, split_seed: int, download: bool) -> Data:
    if name == "digits":
        train_x, train_y, test_x, test_y = _read_digits()
    else:
        folder = Path(root) if root is not None else data_dir()
        train_x, train_y, test_x, test_y = _read_torchvision(name, folder, download)
    if val_size >= len(train_y):
        raise ValueError(f"val_size={val_size} leaves no training images (only {len(train_y)})")
    # Normalise with the training set's statistics (computed on the unsplit training images).
    mean = float(train_x.mean())
    std = float(train_x.std())
    generator = torch.Generator().manual_seed(split_seed)
    order = torch.randperm(len(train_y), generator=generator)
    val_idx, train_idx = order[:val_size].sort().values, order[val_size:].sort().values

    def split(x: Tensor, y: Tensor) -> Split:
        return Split(((x - mean) / std).unsqueeze(1).contiguous(), y.long())

    spec = {"dataset": name, "val_size": val_size, "split_seed": split_seed}
    return Data(
        name=name,
        train=split(train_x[train_idx], train_y[train_idx]),
        val=split(train_x[val_idx], train_y[val_idx]),
        test=split(test_x, test_y),
        class_names=list(CLASS_NAMES[name]),
        mean=mean,
        std=std,
        spec=spec,
    )


def dataset_folder(name: str, root: Path | None = None) -> Path:
    """The ``raw`` folder torchvision reads ``name`` from."""
    return (root if root is not None else data_dir()) / TORCHVISION_DATASETS[name] / "raw"


def missing_files(name: str, root: Path | None = None) -> list[str]:
    """The IDX files of ``name`` that are not on disk (empty when complete)."""
    folder = dataset_folder(name, root)
    return [f for f in RAW_FILES if not (folder / f).is_file()]


def verify_files(name: str, root: Path | None = None) -> dict[str, bool]:
    """MD5 check of each IDX file: ``{file: matches the published checksum}``."""
    folder = dataset_folder(name, root)
    result = {}
    for f in RAW_FILES:
        path = folder / f
        result[f] = path.is_file() and _md5(path) == RAW_MD5[name][f]
    return result


#: Checksums already verified in this process, by (file, size, modification time): a file is
#: hashed once (about 0.2 s for MNIST's four files), not on every load.
_VERIFIED: dict[tuple[str, int, int], bool] = {}


def _file_ok(path: Path, expected: str) -> bool:
    stat = path.stat()
    stamp = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if stamp not in _VERIFIED:
        _VERIFIED[stamp] = _md5(path) == expected
    return _VERIFIED[stamp]


def _check_checksums(name: str, root: Path) -> None:
    """Raise :class:`DatasetCorruptError` naming the IDX files whose MD5 is not the published one
    (flipped pixels or shifted labels would otherwise load silently)."""
    folder = dataset_folder(name, root)
    bad = [f for f in RAW_FILES if not _file_ok(folder / f, RAW_MD5[name][f])]
    if bad:
        raise DatasetCorruptError(
            f"{name} in {folder} is corrupt: {', '.join(bad)} fail{'s' if len(bad) == 1 else ''} the published "
            f"MD5 checksum (damaged or altered bytes). Fix: delete {'it' if len(bad) == 1 else 'them'} and run "
            f"`labkd data --download`, or copy intact files there; `labkd data` checks every file."
        )


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_torchvision(name: str, root: Path, download: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}[name]
    missing = missing_files(name, root)
    if missing and download:
        try:
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
        except Exception as error:  # no network, a proxy, a full disk: explain below
            download_error = f"{type(error).__name__}: {error}"
        else:
            download_error = None
        missing = missing_files(name, root)
    else:
        download_error = None if not missing else "download=False"
    if missing:
        folder = dataset_folder(name, root)
        raise DatasetNotFoundError(
            f"{name} is not in {folder}: missing {', '.join(missing)}. "
            f"The download failed ({download_error}). "
            f"Fix: put the four uncompressed IDX files ({', '.join(RAW_FILES)}) in {folder}, "
            f"or set LABKD_DATA to a folder that holds {TORCHVISION_DATASETS[name]}/raw, "
            f"or use dataset='digits' (small, offline)."
        )
    _check_checksums(name, root)
    try:
        train = cls(str(root), train=True, download=False)
        test = cls(str(root), train=False, download=False)
        tensors = (train.data, train.targets, test.data, test.targets)
    except Exception as error:
        raise DatasetNotFoundError(
            f"{name} in {dataset_folder(name, root)} could not be read ({type(error).__name__}: "
            f"{error}); the IDX files are corrupt or truncated. Delete them and download again, "
            f"or run `labkd data` to see which files fail their checksum."
        ) from error
    _check_idx_shapes(name, root, *tensors)
    return tensors[0].float() / 255.0, tensors[1], tensors[2].float() / 255.0, tensors[3]


def _check_idx_shapes(name: str, root: Path, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor) -> None:
    ok = (
        train_x.ndim == 3 and tuple(train_x.shape[1:]) == (28, 28) and len(train_x) == len(train_y)
        and test_x.ndim == 3 and len(test_x) == len(test_y) and len(train_y) > 0 and len(test_y) > 0
        and int(train_y.max()) < 10 and int(test_y.max()) < 10
    )
    if not ok:
        raise DatasetNotFoundError(
            f"{name} in {dataset_folder(name, root)} has unexpected contents "
            f"(train images {tuple(train_x.shape)}, labels {tuple(train_y.shape)}; "
            f"test images {tuple(test_x.shape)}, labels {tuple(test_y.shape)}); "
            f"expected 28x28 images with one label 0..9 each. The files are corrupt: download them again."
        )


def _read_digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (1797, 8, 8) in [0, 1]
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))
    test_idx, train_idx = order[:400].sort().values, order[400:].sort().values
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


# --------------------------------------------------------------------------------------------
# Batches and augmentation


def batches(
    split: Split,
    batch_size: int,
    shuffle: bool = True,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    jitter: int = 0,
    background: float | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Yield ``(x, y, idx)`` batches: x (B, 1, H, W), y (B,), idx (B,) rows of ``split``.

    Shuffling uses ``generator`` (or a new one seeded with ``seed``), so the order is
    reproducible. ``jitter`` > 0 shifts each image by up to that many pixels (batched).
    Arguments are checked here, before the first batch is asked for.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(jitter, bool) or not isinstance(jitter, int) or jitter < 0:
        raise ValueError(f"jitter must be a non-negative integer (pixels), got {jitter!r}")
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    return _batches(split, batch_size, shuffle, generator, jitter, background, drop_last)


def _batches(
    split: Split, batch_size: int, shuffle: bool, generator: torch.Generator, jitter: int,
    background: float | None, drop_last: bool,
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(split.x.device)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        x = split.x[idx]
        if jitter:
            x = random_shift(x, jitter, generator=generator, fill=background)
        yield x, split.y[idx], idx


def random_shift(
    x: Tensor, max_shift: int = 2, generator: torch.Generator | None = None, fill: float | None = None
) -> Tensor:
    """Shift every image of a batch by its own random (dy, dx) in [-max_shift, max_shift].

    One gather on the whole batch, no Python loop per image. Args: x (N, C, H, W);
    ``fill`` is the value shifted-in pixels take (default: the batch minimum, the background).
    Returns a tensor of the same shape.
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative integer, got {max_shift!r}")
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    if max_shift == 0 or x.shape[0] == 0:
        return x
    n, c, h, w = x.shape
    s = max_shift
    value = float(x.min()) if fill is None else fill
    padded = torch.nn.functional.pad(x, (s, s, s, s), value=value)
    shifts = torch.randint(0, 2 * s + 1, (2, n), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + shifts[0][:, None])  # (N, H)
    cols = (torch.arange(w, device=x.device)[None, :] + shifts[1][:, None])  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def split_fraction(n: int, fraction: float) -> int:
    """``ceil(n * fraction)``, checked: how many images a fraction of a split keeps."""
    if not (0 < fraction <= 1) or math.isnan(fraction):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    return max(1, math.ceil(n * fraction))
