"""A disk cache of trained models, keyed by a hash of everything that made them.

The key covers the model spec, the data spec and a fingerprint of the data's contents, the
training config (seed included), the teacher's own key and the labkd version, so a teacher
trained in one notebook is found again by the next, and any change retrains.

Trust: every entry stores its own key and a SHA-256 checksum of its contents (weights, history,
checkpoints), both verified on load (:func:`verify`). A corrupt, truncated, renamed or
incompatible file, or one holding non-finite weights, is reported with a :class:`CacheWarning`
naming the file and treated as missing (the caller retrains and replaces it). Non-finite weights
are never saved. Files are written atomically through a temporary file of a unique name (two
processes may share a cache) and get the usual permissions (``0o666`` minus the umask).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from labkd import __version__, clock
from labkd.paths import cache_dir

SUFFIX = ".pt"
FORMAT = 4  # 2: rand_like dropout masks and fused optimisers; 3: training always on one thread (labkd.threads);
#            4: entries store their key and a checksum of their contents (verified on load)
KEY_PATTERN = re.compile(r"[0-9a-f]{20}")


class CacheWarning(UserWarning):
    """A cache file could not be used (it will be replaced), or a trained model could not be saved."""


class CacheNotWritableError(OSError):
    """The cache folder (``LABKD_CACHE``) cannot take new entries; raised before any training."""


class NonFiniteWeightsError(ValueError):
    """An entry to save holds NaN or infinite weights: a diverged model is never cached."""


def make_key(description: dict) -> str:
    """A stable 20-hex-digit key of a JSON-able description (dict order does not matter)."""
    payload = json.dumps({"labkd": __version__, "format": FORMAT, **description}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    """A short hash of tensor contents (to key models trained from given logits or weights)."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def path_for(key: str) -> Path:
    return cache_dir() / f"{key}{SUFFIX}"


def load(key: str) -> dict | None:
    """The stored entry for ``key``, or None when absent or unusable (with a :class:`CacheWarning`
    naming the file: the caller retrains and replaces it)."""
    path = path_for(key)
    if not path.is_file():
        return None
    start = time.perf_counter()
    entry, problem = read(key)
    if problem is not None:
        warnings.warn(f"model cache file {path} is unusable ({problem}); it will be retrained and replaced",
                      CacheWarning, stacklevel=2)
        return None
    clock.add_loading(time.perf_counter() - start)
    return entry


def read(key: str) -> tuple[dict | None, str | None]:
    """``(entry, None)`` for a good file of ``key``, else ``(None, why it is unusable)``; silent
    (``labkd cache verify`` reports with it, :func:`load` warns)."""
    try:
        entry = torch.load(path_for(key), map_location="cpu", weights_only=True)
        problem = verify(key, entry)
    except Exception as error:  # truncated zip, pickle error, unreadable file: retrain instead
        problem = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
    return (entry, None) if problem is None else (None, problem)


def verify(key: str, entry: object) -> str | None:
    """Why ``entry`` (as loaded from the file of ``key``) must not be used, or None if it is good:
    not an entry of this format, the entry of another key (a renamed or copied file), contents
    that do not match their checksum (damaged bytes), or non-finite weights."""
    if not isinstance(entry, dict) or "state_dict" not in entry:
        return "not a labkd cache entry"
    if entry.get("format") != FORMAT:
        return f"cache format {entry.get('format')!r}, this labkd reads format {FORMAT}"
    if entry.get("key") != key:
        return f"it holds the model of key {entry.get('key')!r}, not {key!r}: a renamed or copied file"
    if entry.get("checksum") != checksum(entry):
        return "its contents do not match their checksum: the file is damaged"
    bad = non_finite_tensors(entry)
    if bad:
        return f"non-finite weights in {', '.join(bad[:3])}"
    return None


def checksum(entry: dict) -> str:
    """SHA-256 of everything in ``entry`` except its ``checksum`` field: tensors by dtype, shape
    and bytes; dicts in key order; numbers, strings and None by their ``repr``."""
    digest = hashlib.sha256()
    _digest(digest, {k: v for k, v in entry.items() if k != "checksum"})
    return digest.hexdigest()


def _digest(digest, value: object) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for k in sorted(value, key=repr):
            _digest(digest, k)
            _digest(digest, value[k])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _digest(digest, item)
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())


def non_finite_tensors(entry: dict) -> list[str]:
    """Names of the floating-point tensors of ``entry`` (weights, regressor, checkpoints) that hold
    NaN or inf."""
    bad: list[str] = []

    def walk(value: object, name: str) -> None:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                bad.append(name)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{name}[{i}]")

    walk({k: v for k, v in entry.items() if k not in ("history", "checksum")}, "")
    return bad


def save(key: str, entry: dict) -> Path:
    """Store ``entry`` (a dict with ``state_dict``) atomically under ``key``, with its key and a
    checksum. Raises :class:`NonFiniteWeightsError` (nothing written) if a weight is NaN or inf."""
    bad = non_finite_tensors(entry)
    if bad:
        raise NonFiniteWeightsError(f"not caching model {key}: non-finite weights in {', '.join(bad[:3])} "
                                    f"(training diverged)")
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    entry = {**entry, "format": FORMAT, "labkd": __version__, "key": key, "saved": time.time()}
    entry["checksum"] = checksum(entry)
    _atomic_write(path_for(key), lambda stream: torch.save(entry, stream))
    return path_for(key)


def _atomic_write(path: Path, write) -> None:
    """Call ``write(binary_stream)`` on a temporary file of a unique name beside ``path``, then
    rename it over ``path``: concurrent writers never share a temporary file, and readers see the
    old or the new file, never half of one. The file gets ``0o666`` minus the umask."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
            os.fchmod(stream.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(key: str | None = None) -> Path:
    """Make sure a trained model can be stored, *before* training it: the cache folder exists (or
    can be created) and takes a file, and the entry's own path (for ``key``) is not a folder.
    Raises :class:`CacheNotWritableError` naming ``LABKD_CACHE``; returns the folder."""
    folder = cache_dir()
    hint = ("set LABKD_CACHE to a writable folder (e.g. export LABKD_CACHE=/tmp/labkd-cache), "
            "or pass use_cache=False to train without caching")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-test.", suffix=".tmp")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise CacheNotWritableError(f"the model cache folder {folder} (LABKD_CACHE) is not writable "
                                    f"({type(error).__name__}: {error.strerror or error}); {hint}") from None
    if key is not None and path_for(key).exists() and not path_for(key).is_file():
        raise CacheNotWritableError(f"the model cache entry {path_for(key)} (in LABKD_CACHE) is not a file; "
                                    f"remove it, or {hint}")
    return folder


def lock(key: str):
    """An inter-process lock on one entry (a ``filelock.FileLock`` on ``.<key>.lock`` in the cache
    folder): two processes asking for the same model, e.g. two notebooks of ``labkd run --jobs 2``
    that both need the standard teacher, train it once; the second waits, then loads it.

    A cache folder that cannot take the lock file (read-only, e.g. a shared class cache) gives a
    no-op lock: loading still works, and training there fails early in :func:`check_writable`."""
    import contextlib

    from filelock import FileLock

    if not KEY_PATTERN.fullmatch(str(key)):
        raise ValueError(f"key must be a cache key of 20 hex digits, got {key!r}")
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return contextlib.nullcontext()
    if not os.access(folder, os.W_OK):
        return contextlib.nullcontext()
    return FileLock(str(folder / f".{key}.lock"))


@dataclass
class Entry:
    key: str
    description: str
    size: int
    modified: float
    path: Path


def list_entries() -> list[Entry]:
    """Every cached model, newest first (none when the folder does not exist yet). An unreadable
    cache (no permission, ``LABKD_CACHE`` naming a file) raises ``OSError``, never looks empty."""
    folder = cache_dir()
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise NotADirectoryError(f"LABKD_CACHE={str(folder)!r} is not a folder")
    try:
        names = sorted(os.listdir(folder))
    except OSError as error:
        raise type(error)(error.errno, f"cannot read the model cache {folder} (LABKD_CACHE): "
                                       f"{error.strerror or error}") from None
    entries = []
    for name in names:
        path = folder / name
        if not name.endswith(SUFFIX) or not KEY_PATTERN.fullmatch(path.stem):  # not ours: never list or delete it
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed by another process meanwhile
            continue
        meta_path = path.with_suffix(".json")
        try:
            description = json.loads(meta_path.read_text()).get("description", "") if meta_path.is_file() else ""
        except (OSError, ValueError, AttributeError):
            description = ""
        entries.append(Entry(path.stem, description, stat.st_size, stat.st_mtime, path))
    return sorted(entries, key=lambda e: e.modified, reverse=True)


def write_description(key: str, description: str) -> None:
    """A small JSON beside the entry so ``labkd cache list`` can say what it is (written atomically
    through a unique temporary name, so two processes may describe the same key at once)."""
    text = json.dumps({"description": description}).encode()
    _atomic_write(path_for(key).with_suffix(".json"), lambda stream: stream.write(text))


def clear() -> int:
    """Delete every cached model; returns how many were removed."""
    removed = 0
    for entry in list_entries():
        entry.path.unlink(missing_ok=True)
        entry.path.with_suffix(".json").unlink(missing_ok=True)
        removed += 1
    return removed
