"""A disk cache of trained models, keyed by a hash of everything that made them.

The key covers the model spec, the data spec, the training config (seed included), the
teacher's own key and the labkd version, so a teacher trained in one notebook is found again by
the next, and any change retrains. Files are written atomically (temporary file, then rename);
a corrupt, truncated or incompatible file is reported with a warning and treated as missing.
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

from labkd import __version__
from labkd.paths import cache_dir

SUFFIX = ".pt"
FORMAT = 3  # 2: rand_like dropout masks and fused optimisers; 3: training always on one thread (labkd.threads)
KEY_PATTERN = re.compile(r"[0-9a-f]{20}")


class CacheWarning(UserWarning):
    """A cache file could not be used and will be replaced."""


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
    """The stored entry for ``key``, or None when absent or unusable (with a :class:`CacheWarning`)."""
    path = path_for(key)
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(entry, dict) or entry.get("format") != FORMAT or "state_dict" not in entry:
            raise ValueError("not a labkd cache entry of this format")
    except Exception as error:  # truncated zip, pickle error, wrong format: retrain instead
        reason = (str(error).strip().splitlines() or [""])[0]
        warnings.warn(f"model cache file {path} is unusable ({type(error).__name__}: {reason}); "
                      f"it will be retrained and replaced", CacheWarning, stacklevel=2)
        return None
    return entry


def save(key: str, entry: dict) -> Path:
    """Store ``entry`` (a dict with ``state_dict``) atomically under ``key``."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    entry = {**entry, "format": FORMAT, "labkd": __version__, "key": key, "saved": time.time()}
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(entry, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path_for(key))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path_for(key)


@dataclass
class Entry:
    key: str
    description: str
    size: int
    modified: float
    path: Path


def list_entries() -> list[Entry]:
    """Every cached model, newest first."""
    folder = cache_dir()
    if not folder.is_dir():
        return []
    entries = []
    for path in folder.glob(f"*{SUFFIX}"):
        if not KEY_PATTERN.fullmatch(path.stem):  # not ours: never list or delete it
            continue
        stat = path.stat()
        meta_path = path.with_suffix(".json")
        try:
            description = json.loads(meta_path.read_text()).get("description", "") if meta_path.is_file() else ""
        except (OSError, ValueError):
            description = ""
        entries.append(Entry(path.stem, description, stat.st_size, stat.st_mtime, path))
    return sorted(entries, key=lambda e: e.modified, reverse=True)


def write_description(key: str, description: str) -> None:
    """A small JSON beside the entry so ``labkd cache list`` can say what it is."""
    meta = path_for(key).with_suffix(".json")
    tmp = meta.with_name(f".{meta.name}.tmp")
    tmp.write_text(json.dumps({"description": description}))
    os.replace(tmp, meta)


def clear() -> int:
    """Delete every cached model; returns how many were removed."""
    removed = 0
    for entry in list_entries():
        entry.path.unlink(missing_ok=True)
        entry.path.with_suffix(".json").unlink(missing_ok=True)
        removed += 1
    return removed
