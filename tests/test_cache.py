"""The on-disk model cache (labkd.cache): keys, atomic writes, corrupt files, listing, clearing.

Every test gets its own empty cache folder through ``LABKD_CACHE``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from labkd import cache
from labkd.cache import CacheWarning

from support import no_cache_warnings

pytestmark = pytest.mark.usefixtures("cache_folder")


def entry(value: float = 1.0) -> dict:
    return {"state_dict": {"w": torch.full((3, 2), value)}, "history": [{"epoch": 1, "loss": value}], "seconds": 2.5}


# --- keys -----------------------------------------------------------------------------------


def test_key_is_stable_across_dict_ordering():
    a = cache.make_key({"model": {"arch": "mlp", "hidden": [8, 8]}, "train": {"lr": 0.1, "epochs": 2}})
    b = cache.make_key({"train": {"epochs": 2, "lr": 0.1}, "model": {"hidden": [8, 8], "arch": "mlp"}})
    assert a == b
    assert len(a) == 20 and all(ch in "0123456789abcdef" for ch in a)


def test_key_changes_with_any_value():
    base = {"model": {"arch": "mlp", "hidden": [8, 8]}, "train": {"lr": 0.1, "seed": 0}}
    key = cache.make_key(base)
    assert cache.make_key({**base, "train": {"lr": 0.1, "seed": 1}}) != key
    assert cache.make_key({**base, "model": {"arch": "mlp", "hidden": [8, 9]}}) != key
    assert cache.make_key({**base, "teacher": "abc"}) != key
    assert cache.make_key({**base, "train": {"lr": 0.1, "seed": 0}}) == key


def test_key_covers_the_labkd_version(monkeypatch):
    key = cache.make_key({"a": 1})
    monkeypatch.setattr(cache, "__version__", "99.0")
    assert cache.make_key({"a": 1}) != key


def test_tensor_fingerprint():
    a = torch.arange(6.0).reshape(2, 3)
    assert cache.tensor_fingerprint(a) == cache.tensor_fingerprint(a.clone())
    assert cache.tensor_fingerprint(a) != cache.tensor_fingerprint(a + 1e-3)
    assert cache.tensor_fingerprint(a) == cache.tensor_fingerprint(a.t().t())
    assert cache.tensor_fingerprint(a[:, :2]) == cache.tensor_fingerprint(a[:, :2].contiguous())


# --- save and load --------------------------------------------------------------------------


def test_save_then_load_round_trips(cache_folder):
    path = cache.save("k1", entry(3.0))
    assert path == cache_folder / "k1.pt" and path.is_file()
    with no_cache_warnings():
        loaded = cache.load("k1")
    assert torch.equal(loaded["state_dict"]["w"], torch.full((3, 2), 3.0))
    assert loaded["history"] == [{"epoch": 1, "loss": 3.0}] and loaded["seconds"] == 2.5
    assert loaded["key"] == "k1" and loaded["format"] == cache.FORMAT


def test_load_of_a_missing_key_is_none_without_warning():
    with no_cache_warnings():
        assert cache.load("nothing") is None


def test_save_leaves_no_temporary_files(cache_folder):
    cache.save("k1", entry())
    cache.save("k1", entry(2.0))  # overwrite
    cache.write_description("k1", "a model")
    assert sorted(p.name for p in cache_folder.iterdir()) == ["k1.json", "k1.pt"]


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary_file(cache_folder, monkeypatch):
    cache.save("k1", entry(1.0))
    good = (cache_folder / "k1.pt").read_bytes()

    def broken_save(obj, stream, *args, **kwargs):
        stream.write(b"half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(cache.torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        cache.save("k1", entry(2.0))
    monkeypatch.undo()
    monkeypatch.setenv("LABKD_CACHE", str(cache_folder))
    assert (cache_folder / "k1.pt").read_bytes() == good
    assert sorted(p.name for p in cache_folder.iterdir()) == ["k1.pt"]
    with no_cache_warnings():
        assert torch.equal(cache.load("k1")["state_dict"]["w"], torch.full((3, 2), 1.0))


def test_interrupted_save_keeps_the_old_file(cache_folder, monkeypatch):
    cache.save("k1", entry(1.0))
    good = (cache_folder / "k1.pt").read_bytes()

    def interrupted(obj, stream, *args, **kwargs):
        stream.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.save("k1", entry(2.0))
    assert (cache_folder / "k1.pt").read_bytes() == good
    assert [p.name for p in cache_folder.iterdir()] == ["k1.pt"]


# --- corrupt files --------------------------------------------------------------------------


def corrupt(path: Path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(os.urandom(4096))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "wrong format":
        torch.save({"weights": torch.zeros(2)}, path)
    elif how == "old format":
        torch.save({"format": cache.FORMAT + 99, "state_dict": {}}, path)
    elif how == "a pickled object":
        torch.save(Path("/etc"), path)  # not loadable with weights_only=True


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "wrong format", "old format", "a pickled object"])
def test_unusable_file_is_reported_and_treated_as_missing(cache_folder, how):
    cache.save("k1", entry())
    corrupt(cache_folder / "k1.pt", how)
    with pytest.warns(CacheWarning, match=r"(?s)k1\.pt is unusable .* retrained and replaced"):
        assert cache.load("k1") is None
    # saving again replaces it with a good file
    cache.save("k1", entry(5.0))
    with no_cache_warnings():
        assert torch.equal(cache.load("k1")["state_dict"]["w"], torch.full((3, 2), 5.0))


# --- listing and clearing -------------------------------------------------------------------


def test_list_entries_newest_first_with_descriptions(cache_folder):
    assert cache.list_entries() == []  # the folder does not even exist yet
    older, newer = cache.make_key({"n": 1}), cache.make_key({"n": 2})
    cache.save(older, entry())
    cache.save(newer, entry())
    cache.write_description(newer, "student T=4")
    os.utime(cache_folder / f"{older}.pt", (1_000_000, 1_000_000))
    entries = cache.list_entries()
    assert [e.key for e in entries] == [newer, older]
    assert entries[0].description == "student T=4" and entries[1].description == ""
    assert entries[0].size == (cache_folder / f"{newer}.pt").stat().st_size > 0
    assert entries[0].path == cache_folder / f"{newer}.pt"


def test_list_entries_survives_a_broken_description(cache_folder):
    key = cache.make_key({"n": 1})
    cache.save(key, entry())
    (cache_folder / f"{key}.json").write_text("{not json")
    assert [e.description for e in cache.list_entries()] == [""]


def test_clear_removes_entries_and_descriptions(cache_folder):
    for n in range(3):
        key = cache.make_key({"n": n})
        cache.save(key, entry())
        cache.write_description(key, f"model {n}")
    assert len(cache.list_entries()) == 3
    assert cache.clear() == 3
    assert cache.list_entries() == []
    assert list(cache_folder.iterdir()) == []
    assert cache.clear() == 0


def test_clear_keeps_files_that_are_not_labkd_entries(cache_folder):
    """LABKD_CACHE may point at a folder that holds other things; only labkd's entries go."""
    key = cache.make_key({"model": "x"})
    cache.save(key, entry())
    cache_folder.joinpath("my_own_model.pt").write_bytes(b"precious")
    assert cache.clear() == 1
    assert cache_folder.joinpath("my_own_model.pt").read_bytes() == b"precious"
