"""Hand a class the trained models in one file: export cache entries to an archive, import them.

>>> export_cache("course-models.tar")                       # every entry, or only="*lesson 04*"
>>> report = import_cache("course-models.tar")              # on each student's laptop
>>> print(report.summary())

An archive is a plain tar file: ``manifest.json`` (format, labkd version, and per entry its key,
description, size and SHA-256) and one ``<key>.pt`` per entry. Export reads every entry back
through :func:`labkd.cache.read` first, so a damaged local entry is reported, not shipped.
Import checks each member against the manifest's SHA-256 and then verifies the entry itself
(:func:`labkd.cache.verify`: its stored key, its checksum, finite weights) before it is renamed
into the cache; a damaged member is reported and skipped. A valid entry already in the cache is
kept (the same key means the same model) unless ``replace=True``; an unusable local entry is
replaced. Nothing is ever extracted by the archive's own paths.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from labkd import __version__, cache

MANIFEST = "manifest.json"
ARCHIVE_FORMAT = 1


class ArchiveError(ValueError):
    """The archive cannot be read at all (not a tar file, no manifest, another format)."""


@dataclass
class ImportReport:
    """What :func:`import_cache` did, entry by entry (keys, with reasons for the skipped)."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"added {len(self.added)}, replaced {len(self.replaced)}, kept {len(self.kept)} "
                 f"(already cached), skipped {len(self.skipped)} (damaged or unusable)"]
        lines += [f"  skipped {key}: {why}" for key, why in self.skipped.items()]
        return "\n".join(lines)


def _matches(entry: cache.Entry, only: str | None) -> bool:
    if only is None:
        return True
    pattern = only.lower()
    return fnmatch.fnmatch(entry.description.lower(), pattern) or fnmatch.fnmatch(entry.key, pattern)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_cache(archive: str | Path, only: str | None = None) -> dict:
    """Write the cache entries (those whose description or key matches the glob ``only``,
    case-insensitive, e.g. ``"*mnist*"``) to ``archive`` atomically. Returns the manifest.

    Raises ``ValueError`` if nothing matches, and names every local entry that is unusable
    (exported entries are verified first)."""
    if only is not None and (not isinstance(only, str) or not only.strip()):
        raise ValueError(f"only must be a non-empty glob pattern such as '*mnist*', got {only!r}")
    archive = Path(archive)
    entries = [e for e in cache.list_entries() if _matches(e, only)]
    if not entries:
        what = "the model cache is empty" if only is None else f"no cached model matches only={only!r}"
        raise ValueError(f"nothing to export: {what} ({cache.cache_dir()})")
    manifest = {"format": ARCHIVE_FORMAT, "cache_format": cache.FORMAT, "labkd": __version__,
                "created": time.strftime("%Y-%m-%d %H:%M:%S"), "entries": []}
    payloads = []
    unusable = []
    for entry in sorted(entries, key=lambda e: e.key):
        _, problem = cache.read(entry.key)
        if problem is not None:
            unusable.append(f"{entry.key} ({problem})")
            continue
        data = entry.path.read_bytes()
        manifest["entries"].append({"key": entry.key, "description": entry.description, "size": len(data),
                                    "sha256": _sha256(data)})
        payloads.append((f"{entry.key}{cache.SUFFIX}", data))
    if unusable:
        raise ValueError(f"not exporting: {len(unusable)} cached model(s) are unusable: {'; '.join(unusable)}; "
                         f"`labkd cache verify` lists them, retrain or remove them first")
    archive.parent.mkdir(parents=True, exist_ok=True)

    def write(stream) -> None:
        with tarfile.open(fileobj=stream, mode="w") as tar:
            for name, data in [(MANIFEST, json.dumps(manifest, indent=2).encode())] + payloads:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
                tar.addfile(info, io.BytesIO(data))

    cache._atomic_write(archive, write)  # the cache's own atomic write: unique temporary name, fsync
    return manifest


def read_manifest(tar: tarfile.TarFile, archive: Path) -> dict:
    try:
        member = tar.getmember(MANIFEST)
        manifest = json.loads(tar.extractfile(member).read())
    except (KeyError, AttributeError, ValueError) as error:
        raise ArchiveError(f"{archive} has no readable {MANIFEST}: not a labkd model archive ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
        raise ArchiveError(f"{archive} is not a labkd model archive of format {ARCHIVE_FORMAT}")
    if manifest.get("cache_format") != cache.FORMAT:
        raise ArchiveError(f"{archive} holds models of cache format {manifest.get('cache_format')!r}; this labkd "
                           f"reads format {cache.FORMAT} (export them again with this version)")
    if not isinstance(manifest.get("entries"), list):
        raise ArchiveError(f"{archive}: its {MANIFEST} lists no entries")
    return manifest


def import_cache(archive: str | Path, replace: bool = False, only: str | None = None) -> ImportReport:
    """Add the models of ``archive`` to the cache (``LABKD_CACHE``); see the module docstring.

    ``replace=True`` overwrites valid local entries of the same key too; ``only`` picks entries
    by a glob on their description or key. Raises :class:`ArchiveError` for an unreadable
    archive and :class:`labkd.cache.CacheNotWritableError` for an unwritable cache."""
    if not isinstance(replace, bool):
        raise TypeError(f"replace must be True or False, got {replace!r}")
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"no archive at {archive}")
    folder = cache.check_writable()
    report = ImportReport()
    try:
        tar = tarfile.open(archive, mode="r")
    except (tarfile.TarError, OSError) as error:
        raise ArchiveError(f"{archive} is not a readable tar archive ({error})") from None
    with tar:
        manifest = read_manifest(tar, archive)
        for item in manifest["entries"]:
            key = str(item.get("key", "")) if isinstance(item, dict) else ""
            if not cache.KEY_PATTERN.fullmatch(key):
                report.skipped[key or "?"] = "not a cache key"
                continue
            if only is not None and not _matches(cache.Entry(key, str(item.get("description", "")), 0, 0, Path()), only):
                continue
            problem = _import_one(tar, item, key, folder, replace, report)
            if problem is not None:
                report.skipped[key] = problem
    return report


def _import_one(tar: tarfile.TarFile, item: dict, key: str, folder: Path, replace: bool,
                report: ImportReport) -> str | None:
    try:
        member = tar.getmember(f"{key}{cache.SUFFIX}")
        data = tar.extractfile(member).read()
    except (KeyError, AttributeError, tarfile.TarError, OSError) as error:
        return f"missing or unreadable in the archive ({type(error).__name__})"
    if _sha256(data) != item.get("sha256"):
        return "its bytes do not match the manifest's SHA-256: the archive is damaged"
    try:
        entry = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:
        return f"unreadable ({type(error).__name__})"
    problem = cache.verify(key, entry)
    if problem is not None:
        return problem
    target = cache.path_for(key)
    existed = target.is_file()
    if existed and not replace and cache.read(key)[1] is None:
        report.kept.append(key)
        return None
    cache._atomic_write(target, lambda stream: stream.write(data))
    description = str(item.get("description", ""))
    if description:
        cache.write_description(key, description)
    (report.replaced if existed else report.added).append(key)
    return None
