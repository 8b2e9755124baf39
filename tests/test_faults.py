"""Faults a careless user or a shared machine produces (issue 12), each with its documented outcome.

- the model cache: damaged bytes, a renamed or copied entry, non-finite weights, another dataset's
  model, an unwritable cache (before training: an error naming LABKD_CACHE; after: a warning and
  the model), two processes writing the same key at once, file permissions;
- training that diverges: stopped at the first non-finite loss, named, never cached;
- damaged dataset files: refused with the file named, checked once per file;
- bad inputs: wrong types and sizes, unused options, shape mismatches, empty or non-finite batches;
- the command line: one line and exit 1 or 2, never a traceback;
- widgets: out-of-range values rejected, a NaN undone.

Tiny MLPs on the 8x8 digits, each test in its own cache folder.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from labkd import cache, cli, feature_losses, losses
from labkd import data as datasets
from labkd.cache import CacheNotWritableError, CacheWarning, NonFiniteWeightsError
from labkd.data import Split, load_data
from labkd.experiments import train_model
from labkd.models import build_model
from labkd.train import TrainConfig, TrainingDivergedError, default_device, fit

from support import no_cache_warnings, same_weights

CONFIG = TrainConfig(epochs=1, batch_size=64, seed=0)
SMALL = {"hidden": (16,)}
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("cache_folder")


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


# ============================================================================================
# 1. Cache integrity


def test_damaged_bytes_inside_a_stored_tensor_are_detected_and_the_model_retrained(digits, cache_folder, fit_calls):
    first = train_model("mlp", digits, CONFIG, **SMALL)
    path = cache_folder / f"{first.key}.pt"
    raw = bytearray(path.read_bytes())
    weight = first.model.state_dict()["blocks.fc1.1.weight"].numpy().tobytes()
    at = bytes(raw).find(weight)
    assert at > 0, "the tensor's bytes are stored verbatim in the file"
    raw[at + 64:at + 72] = b"\x00\x00\xc0\x7f" * 2  # two NaNs inside the weights; the zip still opens
    path.write_bytes(bytes(raw))
    assert torch.load(path, weights_only=True)["state_dict"] is not None  # torch alone does not notice

    with pytest.warns(CacheWarning, match=rf"(?s){first.key}\.pt is unusable .*checksum.*retrained and replaced"):
        again = train_model("mlp", digits, CONFIG, **SMALL)
    assert not again.cached and len(fit_calls) == 2
    assert same_weights(again.model, first.model), "the same seed retrains the same model, bit for bit"
    with no_cache_warnings():
        third = train_model("mlp", digits, CONFIG, **SMALL)
    assert third.cached and same_weights(third.model, first.model)


def test_a_renamed_entry_is_not_served_under_another_key(digits, cache_folder):
    a = train_model("mlp", digits, CONFIG, **SMALL)
    b = train_model("mlp", digits, CONFIG.replace(seed=1), **SMALL)
    shutil.copyfile(cache_folder / f"{b.key}.pt", cache_folder / f"{a.key}.pt")  # same architecture, other model
    with pytest.warns(CacheWarning, match=rf"{a.key}\.pt is unusable .*holds the model of key '{b.key}'.*renamed"):
        again = train_model("mlp", digits, CONFIG, **SMALL)
    assert not again.cached and same_weights(again.model, a.model)


def test_non_finite_weights_are_never_saved_nor_loaded(cache_folder):
    bad = {"state_dict": {"w": torch.tensor([1.0, float("nan")])}, "history": [], "seconds": 0.0}
    with pytest.raises(NonFiniteWeightsError, match=r"non-finite weights in state_dict\.w"):
        cache.save("k1", bad)
    assert not (cache_folder / "k1.pt").exists()
    # a file that holds NaN weights under a valid key and checksum (written by an older labkd)
    cache.save("k1", {"state_dict": {"w": torch.ones(2)}, "history": [], "seconds": 0.0})
    entry = torch.load(cache_folder / "k1.pt", weights_only=True)
    entry["state_dict"]["w"][1] = float("inf")
    entry["checksum"] = cache.checksum(entry)
    torch.save(entry, cache_folder / "k1.pt")
    with pytest.warns(CacheWarning, match="non-finite weights"):
        assert cache.load("k1") is None


def test_the_key_covers_the_data_contents(digits, fit_calls):
    shuffled_labels = digits.train.y[torch.randperm(len(digits.train), generator=torch.Generator().manual_seed(0))]
    other = dataclasses.replace(digits, train=Split(digits.train.x, shuffled_labels))
    assert other.spec == digits.spec and other.fingerprint() != digits.fingerprint()
    a = train_model("mlp", digits, CONFIG, **SMALL)
    b = train_model("mlp", other, CONFIG, **SMALL)
    assert a.key != b.key and not b.cached and len(fit_calls) == 2
    assert train_model("mlp", digits, CONFIG, **SMALL).cached


def test_the_fingerprint_is_computed_once_per_tensor_and_follows_in_place_changes(digits, monkeypatch):
    data = digits.subset(n_train=300)
    first = data.fingerprint()
    hashed = []
    real_sha256 = datasets.hashlib.sha256
    monkeypatch.setattr(datasets.hashlib, "sha256", lambda *a: hashed.append(1) or real_sha256(*a))
    assert data.fingerprint() == first and len(hashed) == 1  # only the combining hash: tensors are known
    other = digits.subset(n_train=200)  # shares the validation and test tensors
    hashed.clear()
    other.fingerprint()
    assert len(hashed) == 1 + 2  # the combining hash and the new training images and labels
    data.train.y[0] = (int(data.train.y[0]) + 1) % 10  # changed in place: the tensor's version moves
    assert data.fingerprint() != first


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_cache_files_get_the_umask_permissions(cache_folder, umask):
    old = os.umask(umask)
    try:
        cache.save("k1", {"state_dict": {"w": torch.ones(2)}})
        cache.write_description("k1", "a model")
    finally:
        os.umask(old)
    for name in ("k1.pt", "k1.json"):
        assert stat.S_IMODE((cache_folder / name).stat().st_mode) == 0o666 & ~umask


# ============================================================================================
# 2. Divergence


def test_a_diverging_run_stops_at_the_first_non_finite_loss_and_is_not_cached(digits, cache_folder):
    config = CONFIG.replace(weight_decay=1e10)  # finite, allowed, and explodes the weights
    with pytest.raises(TrainingDivergedError, match=r"diverged at epoch 1, step \d+ of \d+.*weight_decay=1e\+10"):
        train_model("mlp", digits, config, **SMALL)
    assert not list(cache_folder.glob("*.pt"))


def test_a_distillation_run_that_explodes_is_named_divergence_not_a_bad_argument(digits):
    teacher = build_model("mlp", digits.input_shape, 10, hidden=(16,), seed=1)
    student = build_model("mlp", digits.input_shape, 10, hidden=(16,))
    config = CONFIG.replace(loss="distillation", weight_decay=1e10)
    # the student's logits explode before the loss turns NaN: the loss's own check names them,
    # and fit reports that as divergence (with the temperature among the suspects), not as a bad argument
    with pytest.raises(TrainingDivergedError, match=r"diverged at epoch 1, step \d+ .*student_logits.*temperature=4"):
        fit(student, digits, config, teacher=teacher, progress=False)


@pytest.mark.parametrize("changes, pattern", [
    ({"weight_decay": float("inf")}, r"weight_decay must be >= 0 and finite"),
    ({"lr": 1e30}, r"lr=1e\+30 is beyond 10"),
    ({"lr": 1e6}, r"lr=1000000.0 is beyond 10"),
    ({"optimizer": "adam", "lr": 1e3}, r"lr=1000.0 is beyond 1"),
    ({"temperature": 1e-40}, r"temperature=1e-40 is outside the usable range 1e-06 to 10000"),
    ({"temperature": 1e300}, r"temperature=1e\+300 is outside the usable range"),
])
def test_configs_that_can_only_diverge_are_rejected(changes, pattern):
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**changes)


# ============================================================================================
# 3. Never lose work


def test_an_unwritable_cache_fails_before_training(digits, cache_folder, monkeypatch, fit_calls):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cache.tempfile, "mkstemp", refuse)  # what a read-only folder does (even to root)
    with pytest.raises(CacheNotWritableError, match=r"LABKD_CACHE\) is not writable .*Permission denied"):
        train_model("mlp", digits, CONFIG, **SMALL)
    assert fit_calls == []
    monkeypatch.undo()
    monkeypatch.setenv("LABKD_CACHE", str(cache_folder))
    assert train_model("mlp", digits, CONFIG, use_cache=False, **SMALL).history  # use_cache=False still trains


def test_a_cache_path_that_is_a_file_fails_before_training(digits, tmp_path, monkeypatch, fit_calls):
    target = tmp_path / "a_file"
    target.write_text("x")
    monkeypatch.setenv("LABKD_CACHE", str(target))
    with pytest.raises(CacheNotWritableError, match="LABKD_CACHE"):
        train_model("mlp", digits, CONFIG, **SMALL)
    assert fit_calls == []


def test_a_folder_at_the_entry_path_fails_before_training(digits, cache_folder, fit_calls):
    first = train_model("mlp", digits, CONFIG, **SMALL)
    path = cache_folder / f"{first.key}.pt"
    path.unlink()
    path.mkdir()
    with pytest.raises(CacheNotWritableError, match=rf"{first.key}\.pt .* is not a file"):
        train_model("mlp", digits, CONFIG, **SMALL)
    assert len(fit_calls) == 1


def test_a_failed_save_after_training_warns_and_returns_the_model(digits, cache_folder, monkeypatch):
    def full_disk(key, entry):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "save", full_disk)
    with pytest.warns(CacheWarning, match=r"could not be saved .*No space left on device.*returned but not cached"):
        trained = train_model("mlp", digits, CONFIG, **SMALL)
    assert trained.history and not trained.cached and trained.final("test_acc") >= 0


def _writer_script(folder: Path, key: str, writer: int, n: int) -> list[str]:
    code = (
        "import sys, torch\n"
        "from labkd import cache\n"
        f"for i in range({n}):\n"
        f"    cache.save({key!r}, {{'state_dict': {{'w': torch.full((64,), float(i))}}, 'history': [], 'seconds': 0.0}})\n"
        f"    cache.write_description({key!r}, 'writer {writer} step ' + str(i))\n"
    )
    return [sys.executable, "-c", code]


def test_two_processes_writing_the_same_key_and_description(cache_folder):
    key = cache.make_key({"concurrency": 1})
    cache_folder.mkdir(parents=True)
    env = {**os.environ, "LABKD_CACHE": str(cache_folder), "OMP_NUM_THREADS": "1"}
    writers = [subprocess.Popen(_writer_script(cache_folder, key, w, 150), env=env, cwd=REPO,
                                stderr=subprocess.PIPE, text=True) for w in (1, 2)]
    reads = 0
    with no_cache_warnings():  # a reader meanwhile sees an old or a new entry, never half of one
        while any(w.poll() is None for w in writers):
            if cache.path_for(key).is_file():
                assert cache.load(key) is not None
                reads += 1
            time.sleep(0.01)
    errors = [w.stderr.read() for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    assert sorted(p.name for p in cache_folder.iterdir()) == [f"{key}.json", f"{key}.pt"]  # no temporary files left
    with no_cache_warnings():
        assert cache.load(key)["state_dict"]["w"][0] == 149.0
    assert cache.list_entries()[0].description.endswith("step 149")


# ============================================================================================
# 4. Damaged dataset files

needs_mnist = pytest.mark.skipif(not all(datasets.verify_files("mnist").values()) if os.environ.get("LABKD_DATA")
                                 else True, reason="needs the intact MNIST files in LABKD_DATA")


@pytest.fixture
def mnist_copy(tmp_path: Path) -> Path:
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in datasets.RAW_FILES:
        shutil.copyfile(datasets.dataset_folder("mnist") / name, raw / name)
    return tmp_path / "data"


@needs_mnist
@pytest.mark.parametrize("name, offset", [("train-labels-idx1-ubyte", 8), ("t10k-images-idx3-ubyte", 5000)])
def test_damaged_dataset_bytes_are_refused_with_the_file_named(mnist_copy, name, offset):
    path = mnist_copy / "MNIST" / "raw" / name
    raw = bytearray(path.read_bytes())
    raw[offset] = (raw[offset] + 1) % 10  # a shifted label or a changed pixel: still a valid IDX file
    path.write_bytes(bytes(raw))
    with pytest.raises(datasets.DatasetCorruptError, match=rf"(?s)corrupt: {name} fails the published MD5.*labkd data"):
        load_data("mnist", root=mnist_copy, download=False)
    fallen = load_data("mnist", root=mnist_copy, download=False, fallback=True)
    assert fallen.name == "digits" and name in fallen.fallback_reason


@needs_mnist
def test_dataset_checksums_are_computed_once_per_file(mnist_copy, monkeypatch):
    hashed = []
    real_md5 = datasets._md5
    monkeypatch.setattr(datasets, "_md5", lambda path: hashed.append(path.name) or real_md5(path))
    datasets._check_checksums("mnist", mnist_copy)
    datasets._check_checksums("mnist", mnist_copy)
    assert sorted(hashed) == sorted(datasets.RAW_FILES)
    label_file = mnist_copy / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    label_file.write_bytes(label_file.read_bytes()[:-1] + b"\x00")  # a new file is checked again
    with pytest.raises(datasets.DatasetCorruptError, match="t10k-labels-idx1-ubyte"):
        datasets._check_checksums("mnist", mnist_copy)


# ============================================================================================
# 5. Inputs


@pytest.mark.parametrize("changes, error, pattern", [
    ({"scale_by_t2": "False"}, TypeError, "scale_by_t2 must be True or False"),
    ({"checkpoints": "no"}, TypeError, "checkpoints must be True or False"),
    ({"lr": True}, ValueError, "lr must be a finite number"),
    ({"seed": "0"}, TypeError, "seed must be a non-negative integer"),
    ({"seed": -1}, TypeError, "seed must be a non-negative integer"),
    ({"momentum": True}, ValueError, "momentum"),
    ({"hint_layer": "fc1"}, ValueError, r"hint_layer='fc1' is only used with loss='hint' or loss='feature_kd'"),
    ({"loss": "distillation", "guided_layer": "fc1"}, ValueError, "guided_layer='fc1' is only used"),
])
def test_train_config_types(changes, error, pattern):
    with pytest.raises(error, match=pattern):
        TrainConfig(**changes)


@pytest.mark.parametrize("arch, options, error, pattern", [
    ("mlp", {"hidden": "64"}, TypeError, "hidden must list positive layer widths"),
    ("mlp", {"hidden": (2.7,)}, ValueError, "hidden must list positive layer widths"),
    ("mlp", {"hidden": (True,)}, ValueError, "hidden must list positive layer widths"),
    ("cnn", {"kernel_size": 0}, ValueError, "kernel_size must be a positive odd integer"),
    ("cnn", {"kernel_size": 2}, ValueError, "kernel_size must be a positive odd integer"),
    ("cnn", {"channels": "16"}, TypeError, "channels must list positive channel counts"),
    ("mlp", {"seed": "0"}, TypeError, "seed must be a non-negative integer"),
    ("mlp", {"input_shape": (28, 28)}, ValueError, r"input_shape must be \(channels, height, width\)"),
    ("cnn", {"input_shape": (1, 2, 2), "channels": (4, 4, 4)}, ValueError, "poolings need images of at least"),
])
def test_model_options_types(arch, options, error, pattern):
    with pytest.raises(error, match=pattern):
        build_model(arch, **options)


def test_a_model_built_for_other_images_is_named_before_training(digits):
    model = build_model("mlp", hidden=(8,))  # (1, 28, 28) by default; digits are 8x8
    with pytest.raises(ValueError, match=r"built for inputs \(1, 28, 28\) but digits has images \(1, 8, 8\)"):
        fit(model, digits, CONFIG, progress=False)
    wide = build_model("mlp", digits.input_shape, 12, hidden=(8,))
    with pytest.raises(ValueError, match="built for 12 classes but digits has 10"):
        fit(wide, digits, CONFIG, progress=False)


def test_jitter_is_bounded_by_the_image_size(digits):
    model = build_model("mlp", digits.input_shape, 10, hidden=(8,))
    with pytest.raises(ValueError, match=r"jitter=50 would shift 8x8 images .* at most 3 pixels"):
        fit(model, digits, CONFIG.replace(jitter=50), progress=False)
    fit(model, digits, CONFIG.replace(jitter=2), progress=False)  # the course's jitter still works


def test_fit_accepts_a_trained_teacher(digits):
    teacher = train_model("mlp", digits, CONFIG, **SMALL)
    student = build_model("mlp", digits.input_shape, 10, hidden=(8,))
    result = fit(student, digits, CONFIG.replace(loss="distillation"), teacher=teacher, progress=False)
    assert len(result.history) == 1


def test_teacher_logits_of_the_wrong_type(digits):
    student = build_model("mlp", digits.input_shape, 10, hidden=(8,))
    with pytest.raises(TypeError, match="teacher_logits must be a torch.Tensor"):
        fit(student, digits, CONFIG.replace(loss="distillation"), teacher_logits=[[0.0] * 10], progress=False)


@pytest.mark.parametrize("argument, value, pattern", [
    ("teacher", "hinton_teacher", "teacher must be a model or a Trained"),
    ("init", {"w": 1}, "init must be a model or a Trained"),
    ("teacher_logits", [[0.0] * 10], "teacher_logits must be a torch.Tensor"),
])
def test_train_model_names_arguments_of_the_wrong_type(digits, argument, value, pattern, fit_calls):
    with pytest.raises(TypeError, match=pattern):
        train_model("mlp", digits, CONFIG.replace(loss="distillation"), **{argument: value}, **SMALL)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        train_model("mlp", digits, {"epochs": 1}, **SMALL)
    assert fit_calls == []


def test_labkd_device_is_named_in_its_error(monkeypatch):
    monkeypatch.setenv("LABKD_DEVICE", "gpu")
    with pytest.raises(ValueError, match=r"LABKD_DEVICE='gpu' is not a device"):
        default_device()


def test_trained_final_lists_its_keys(digits):
    trained = train_model("mlp", digits, CONFIG, **SMALL)
    with pytest.raises(KeyError, match=r"test_accuracy.*'test_acc'.*'val_acc'"):
        trained.final("test_accuracy")


@pytest.mark.parametrize("classes", [3, "3"])
def test_drop_classes_must_be_a_list(digits, classes):
    with pytest.raises(TypeError, match=r"drop_classes must be a list of class ids such as \[3\]"):
        digits.subset(drop_classes=classes)


def _response_losses(s, t, y):
    return {
        "soft_target": lambda: losses.soft_target_loss(s, t, 2.0),
        "distillation": lambda: losses.distillation_loss(s, t, y, 2.0, 0.5),
        "cross_entropy": lambda: losses.cross_entropy_loss(s, y),
        "logit_matching": lambda: losses.logit_matching_loss(s, t),
        "hint": lambda: losses.hint_loss(s, t),
    }


@pytest.mark.parametrize("name", list(_response_losses(None, None, None)))
def test_every_loss_rejects_an_empty_batch(name):
    empty = torch.zeros(0, 10)
    with pytest.raises(ValueError, match=r"empty batch|N >= 1"):
        _response_losses(empty, empty, torch.zeros(0, dtype=torch.long))[name]()


@pytest.mark.parametrize("name", list(_response_losses(None, None, None)))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 3e38])
def test_every_loss_rejects_non_finite_or_overflowing_student_values(name, bad):
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    s[2, 3] = bad
    if name == "hint" and bad == 3e38:
        return  # features are not logits: any finite value is fine
    with pytest.raises(ValueError, match=r"NaN or inf|beyond"):
        _response_losses(s, t, torch.zeros(8, dtype=torch.long))[name]()


@pytest.mark.parametrize("name", ["soft_target", "distillation", "logit_matching", "hint"])
def test_every_loss_detaches_the_teacher(name):
    s = torch.randn(8, 10, requires_grad=True)
    t = torch.randn(8, 10, requires_grad=True)
    _response_losses(s, t, torch.zeros(8, dtype=torch.long))[name]().backward()
    assert s.grad is not None and t.grad is None


@pytest.mark.parametrize("t", [1e-40, 1e300])
def test_losses_state_the_temperature_range(t):
    with pytest.raises(ValueError, match=r"1e-06 to 10000"):
        losses.soft_target_loss(torch.randn(4, 10), torch.randn(4, 10), t)


def test_the_rkd_angle_loss_has_a_checked_batch_limit():
    n = feature_losses.RKD_ANGLE_MAX_BATCH + 1
    with pytest.raises(ValueError, match=rf"at most {n - 1} examples"):
        feature_losses.rkd_angle_loss(torch.randn(n, 4), torch.randn(n, 4))
    assert torch.isfinite(feature_losses.rkd_angle_loss(torch.randn(n - 1, 4), torch.randn(n - 1, 4)))


@pytest.mark.parametrize("feature_loss, batch_size, pattern", [
    ("rkd_distance", 598, "leaves a batch of one image"),  # 1197 = 2 x 598 + 1
    ("rkd_angle", 512, r"batch_size=512 is too large for the RKD angle loss"),
])
def test_relation_losses_check_batches_before_training(digits, feature_loss, batch_size, pattern):
    teacher = build_model("mlp", digits.input_shape, 10, hidden=(16,), seed=1)
    student = build_model("mlp", digits.input_shape, 10, hidden=(8,))
    config = CONFIG.replace(loss="feature_kd", feature_loss=feature_loss, hint_layer="fc1", guided_layer="fc1",
                            batch_size=batch_size)
    with pytest.raises(ValueError, match=pattern):
        fit(student, digits, config, teacher=teacher, progress=False)


# ============================================================================================
# 6. The command line


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cache_list_reports_an_unreadable_cache_not_an_empty_one(capsys, cache_folder, monkeypatch):
    cache.save(cache.make_key({"n": 1}), {"state_dict": {}})

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cache.os, "listdir", refuse)
    code, out, err = run_cli(capsys, "cache", "list")
    assert code == 1 and "(empty)" not in out
    assert one_line(err) and "cannot read the model cache" in err and "Permission denied" in err


def test_cache_clear_on_a_read_only_cache_is_one_line(capsys, cache_folder, monkeypatch):
    cache.save(cache.make_key({"n": 1}), {"state_dict": {}})

    def refuse(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    code, _, err = run_cli(capsys, "cache", "clear")
    assert code == 1 and one_line(err) and err.startswith("labkd cache: error:")


def test_cache_verify_names_a_damaged_entry(capsys, cache_folder):
    good, bad = cache.make_key({"n": 1}), cache.make_key({"n": 2})
    for key in (good, bad):
        cache.save(key, {"state_dict": {"w": torch.ones(4)}})
    shutil.copyfile(cache_folder / f"{good}.pt", cache_folder / f"{bad}.pt")
    code, out, _ = run_cli(capsys, "cache", "verify")
    assert code == 1 and f"{bad}  UNUSABLE" in out and "renamed or copied" in out
    assert not any(line.startswith(good) for line in out.splitlines())  # the good entry is not flagged
    assert "1 of 2 entries ok" in out


def test_run_with_an_unwritable_output_is_a_one_line_usage_error(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "run", "01_soft_targets", "--output", str(blocker / "reports"))
    assert code == 2 and one_line(err) and "--output" in err and "not a writable folder" in err


def test_data_with_an_unreadable_file_is_one_line(capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "train-images-idx3-ubyte")

    monkeypatch.setattr(datasets, "verify_files", refuse)
    monkeypatch.setattr(datasets, "missing_files", lambda name, root=None: [])
    code, _, err = run_cli(capsys, "data")
    assert code == 1 and one_line(err) and "Permission denied" in err


def test_the_console_script_prints_no_traceback(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("x")
    env = {**os.environ, "LABKD_CACHE": str(target)}
    done = subprocess.run([sys.executable, "-m", "labkd", "cache", "list"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
    assert done.returncode == 1 and one_line(done.stderr) and "LABKD_CACHE" in done.stderr


# ============================================================================================
# Widgets


@pytest.fixture
def soft_target_panel(digits):
    from labkd.widgets.soft_targets import SoftTargetPanel

    logits = torch.randn(len(digits.test), 10, generator=torch.Generator().manual_seed(0)) * 3
    return SoftTargetPanel(logits, digits.test, digits.class_names)


def test_widget_setters_reject_out_of_range_values(soft_target_panel):
    with pytest.raises(ValueError, match=r"temperature=100 is outside the slider's range 0\.5 to 20"):
        soft_target_panel.set_temperature(100)
    with pytest.raises(ValueError, match=r"index must be in 0\.\.399, got 999"):
        soft_target_panel.select(999)
    soft_target_panel.set_temperature(2.0)
    soft_target_panel.select(5)
    assert soft_target_panel.temperature.value == pytest.approx(2.0) and soft_target_panel.index == 5


def test_a_nan_set_on_a_control_is_undone_and_reported(soft_target_panel):
    soft_target_panel.set_temperature(3.0)
    soft_target_panel.temperature.value = float("nan")
    assert soft_target_panel.temperature.value == pytest.approx(3.0)
    assert "ignored temperature T = nan" in soft_target_panel.readout.value
    soft_target_panel.set_temperature(5.0)  # the panel keeps working
    assert "T = 5.00" in soft_target_panel.readout.value and "ignored" not in soft_target_panel.readout.value
