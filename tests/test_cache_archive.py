"""Handing trained models to a class: ``labkd cache export/import``, and one training per key
when several processes ask for the same model at once (the cache's per-key lock)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

from labkd import cache, cache_archive
from labkd.cli import main
from labkd.experiments import train_model
from labkd.train import TrainConfig

CONFIG = TrainConfig(epochs=2, batch_size=64, lr=0.05)


def _use_cache(monkeypatch, folder: Path) -> Path:
    monkeypatch.setenv("LABKD_CACHE", str(folder))
    return folder


def _train_two(digits) -> list:
    return [train_model("mlp", digits, CONFIG.replace(seed=s), hidden=(16,), progress=False) for s in (0, 1)]


def test_export_then_import_gives_the_same_models_back(digits, tmp_path, monkeypatch) -> None:
    _use_cache(monkeypatch, tmp_path / "teacher-laptop")
    trained = _train_two(digits)
    manifest = cache_archive.export_cache(tmp_path / "course.tar")
    assert sorted(e["key"] for e in manifest["entries"]) == sorted(t.key for t in trained)

    _use_cache(monkeypatch, tmp_path / "student-laptop")
    report = cache_archive.import_cache(tmp_path / "course.tar")
    assert sorted(report.added) == sorted(t.key for t in trained) and not report.skipped
    for original, seed in zip(trained, (0, 1)):
        again = train_model("mlp", digits, CONFIG.replace(seed=seed), hidden=(16,), progress=False)
        assert again.cached and again.key == original.key
        for name, value in original.model.state_dict().items():
            assert torch.equal(value, again.model.state_dict()[name]), name
    assert [e.description for e in cache.list_entries()] != ["", ""], "descriptions travel with the models"

    second = cache_archive.import_cache(tmp_path / "course.tar")  # the same again: kept, not rewritten
    assert sorted(second.kept) == sorted(t.key for t in trained) and not second.added and not second.replaced
    forced = cache_archive.import_cache(tmp_path / "course.tar", replace=True)
    assert sorted(forced.replaced) == sorted(t.key for t in trained)


def _rewrite(archive: Path, target: Path, change) -> None:
    """Copy ``archive`` to ``target`` with ``change(name, bytes) -> bytes`` applied to each member."""
    with tarfile.open(archive) as src, tarfile.open(target, "w") as dst:
        for member in src.getmembers():
            data = change(member.name, src.extractfile(member).read())
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))


def test_a_damaged_member_is_reported_and_skipped(digits, tmp_path, monkeypatch) -> None:
    _use_cache(monkeypatch, tmp_path / "a")
    good, bad = _train_two(digits)
    cache_archive.export_cache(tmp_path / "course.tar")

    def flip(name: str, data: bytes) -> bytes:
        if name == f"{bad.key}.pt":
            middle = len(data) // 2
            return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
        return data

    _rewrite(tmp_path / "course.tar", tmp_path / "damaged.tar", flip)
    _use_cache(monkeypatch, tmp_path / "b")
    report = cache_archive.import_cache(tmp_path / "damaged.tar")
    assert report.added == [good.key]
    assert "damaged" in report.skipped[bad.key]
    assert not cache.path_for(bad.key).exists()


def test_a_renamed_entry_with_a_matching_manifest_is_still_refused(digits, tmp_path, monkeypatch) -> None:
    """The manifest's SHA-256 can be recomputed by whoever edits an archive; the entry's own stored
    key cannot be faked without breaking its checksum."""
    _use_cache(monkeypatch, tmp_path / "a")
    first, second = _train_two(digits)
    cache_archive.export_cache(tmp_path / "course.tar")
    with tarfile.open(tmp_path / "course.tar") as tar:
        other = tar.extractfile(f"{second.key}.pt").read()
        manifest = json.loads(tar.extractfile("manifest.json").read())
    import hashlib

    for item in manifest["entries"]:
        if item["key"] == first.key:
            item["sha256"] = hashlib.sha256(other).hexdigest()

    def swap(name: str, data: bytes) -> bytes:
        if name == f"{first.key}.pt":
            return other
        return json.dumps(manifest).encode() if name == "manifest.json" else data

    _rewrite(tmp_path / "course.tar", tmp_path / "renamed.tar", swap)
    _use_cache(monkeypatch, tmp_path / "b")
    report = cache_archive.import_cache(tmp_path / "renamed.tar")
    assert report.added == [second.key]
    assert "renamed or copied" in report.skipped[first.key]


def test_only_exports_matching_entries(digits, tmp_path, monkeypatch) -> None:
    _use_cache(monkeypatch, tmp_path / "a")
    first, _ = _train_two(digits)
    cache.write_description(first.key, "lesson 04 teacher 512-512")
    manifest = cache_archive.export_cache(tmp_path / "one.tar", only="*LESSON 04*")
    assert [e["key"] for e in manifest["entries"]] == [first.key]
    with pytest.raises(ValueError, match="no cached model matches only='nothing'"):
        cache_archive.export_cache(tmp_path / "none.tar", only="nothing")


def test_bad_archives_and_arguments_are_named(tmp_path, monkeypatch) -> None:
    _use_cache(monkeypatch, tmp_path / "cache")
    (tmp_path / "junk.tar").write_bytes(b"not a tar file at all")
    with pytest.raises(cache_archive.ArchiveError, match="not a readable tar archive"):
        cache_archive.import_cache(tmp_path / "junk.tar")
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    with pytest.raises(cache_archive.ArchiveError, match="manifest.json"):
        cache_archive.import_cache(tmp_path / "empty.tar")
    with pytest.raises(FileNotFoundError, match="no archive at"):
        cache_archive.import_cache(tmp_path / "missing.tar")
    with pytest.raises(ValueError, match="the model cache is empty"):
        cache_archive.export_cache(tmp_path / "x.tar")
    with pytest.raises(TypeError, match="replace must be True or False"):
        cache_archive.import_cache(tmp_path / "junk.tar", replace="no")


def test_cli_export_import_one_line_errors(digits, tmp_path, monkeypatch, capsys) -> None:
    _use_cache(monkeypatch, tmp_path / "a")
    _train_two(digits)
    assert main(["cache", "export", str(tmp_path / "c.tar")]) == 0
    assert "exported 2 cached model(s)" in capsys.readouterr().out
    _use_cache(monkeypatch, tmp_path / "b")
    assert main(["cache", "import", str(tmp_path / "c.tar")]) == 0
    assert "added 2" in capsys.readouterr().out
    assert main(["cache", "export"]) == 2
    err = capsys.readouterr().err
    assert "needs the archive FILE" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "junk.tar").write_bytes(b"junk")
    assert main(["cache", "import", str(tmp_path / "junk.tar")]) == 1
    err = capsys.readouterr().err
    assert "not a readable tar archive" in err and "Traceback" not in err
    assert main(["cache", "list", "--replace"]) == 2


WORKER = """
import os, sys, time
from pathlib import Path
from labkd.data import load_data
from labkd.experiments import train_model
from labkd.train import TrainConfig
data = load_data("digits", val_size=200)
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.01)
trained = train_model("mlp", data, TrainConfig(epochs=40, batch_size=32, seed=7), hidden=(64,), progress=False)
print("cached" if trained.cached else "trained", trained.key)
"""


@pytest.mark.slow
def test_two_processes_asking_for_the_same_model_train_it_once(tmp_path) -> None:
    env = {**os.environ, "LABKD_CACHE": str(tmp_path / "shared-cache"), "OMP_NUM_THREADS": "1"}
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(go)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(0.5)
    go.touch()  # both start asking at the same moment (each waits for the file after its imports)
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    words = sorted(out.split()[0] for out, _ in outputs)
    keys = {out.split()[1] for out, _ in outputs}
    assert words == ["cached", "trained"], words
    assert len(keys) == 1


def test_lock_is_a_no_op_where_the_cache_cannot_be_written_and_checks_the_key(tmp_path, monkeypatch) -> None:
    """A folder that cannot take a lock file (here: LABKD_CACHE below a plain file; a read-only
    class cache behaves alike for non-root users) gives a no-op lock, so loading still works."""
    (tmp_path / "a-file").write_text("x")
    _use_cache(monkeypatch, tmp_path / "a-file" / "cache")
    with pytest.raises(ValueError, match="key must be a cache key"):
        cache.lock("../../etc/passwd")
    with cache.lock("0" * 20):
        pass
    assert not (tmp_path / "a-file" / "cache").exists()
