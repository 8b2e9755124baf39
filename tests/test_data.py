"""Datasets, splits, subsets, batches and jitter (labkd.data).

MNIST and Fashion-MNIST are read once per process (``load_data`` caches them); everything that
can be shown on the bundled 8x8 digits is, so the file stays fast.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from labkd import data as D
from labkd.data import DatasetNotFoundError, Split, batches, load_data, random_shift

#: Images per class in the official MNIST training (60k) and test (10k) sets.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def have(name: str) -> bool:
    try:
        return not D.missing_files(name)
    except FileNotFoundError:  # LABKD_DATA points nowhere
        return False


needs_mnist = pytest.mark.skipif(not have("mnist"), reason="MNIST files not in LABKD_DATA")
needs_fashion = pytest.mark.skipif(not have("fashion_mnist"), reason="Fashion-MNIST files not in LABKD_DATA")


def row_keys(x: torch.Tensor) -> list[bytes]:
    """A digest of each image's exact bytes: equal images <-> equal keys (up to 2^-128)."""
    rows = np.ascontiguousarray(x.reshape(len(x), -1).cpu().numpy())
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]



@pytest.fixture(scope="module")
def mnist():
    # the same arguments as labkd.notebook.start, so the whole test session reads MNIST once
    return load_data("mnist")


@pytest.fixture
def corrupt_root(tmp_path: Path) -> Path:
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    return tmp_path


# --- MNIST and Fashion-MNIST ----------------------------------------------------------------


@needs_mnist
def test_mnist_shapes_types_and_sizes(mnist):
    assert mnist.name == "mnist" and mnist.num_classes == 10
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (55_000, 5_000, 10_000)
    for split in (mnist.train, mnist.val, mnist.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape[1:] == (1, 28, 28)
    assert mnist.input_shape == (1, 28, 28)


@needs_mnist
def test_mnist_is_normalised_with_training_statistics(mnist):
    assert float(mnist.train.x.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(mnist.train.x.std()) == pytest.approx(1.0, abs=0.01)
    # a blank pixel maps to the background value jitter pads with
    assert float(mnist.train.x.min()) == pytest.approx(mnist.background, abs=1e-5)
    assert mnist.mean == pytest.approx(0.1307, abs=1e-3) and mnist.std == pytest.approx(0.3081, abs=1e-3)


@needs_mnist
def test_mnist_test_set_is_the_official_one(mnist):
    assert mnist.test.class_counts(10).tolist() == MNIST_TEST_COUNTS


@needs_mnist
def test_mnist_train_and_val_partition_the_60k_training_images(mnist):
    counts = mnist.train.class_counts(10) + mnist.val.class_counts(10)
    assert counts.tolist() == MNIST_TRAIN_COUNTS
    train_keys, val_keys = set(row_keys(mnist.train.x)), set(row_keys(mnist.val.x))
    # MNIST's 60k training images are all distinct, so a shared key would mean a shared image
    assert len(train_keys) == 55_000 and len(val_keys) == 5_000
    assert not train_keys & val_keys
    # the validation set is a random draw, not the last 5k: every class appears in proportion
    val_fraction = mnist.val.class_counts(10).float() / torch.tensor(MNIST_TRAIN_COUNTS).float()
    assert bool(((val_fraction - 5_000 / 60_000).abs() < 0.02).all())


@needs_mnist
def test_mnist_load_is_cached_per_process(mnist):
    assert load_data("mnist") is mnist


@needs_fashion
def test_fashion_mnist_loads_balanced_normalised_splits():
    fashion = load_data("fashion_mnist", download=False)
    assert (len(fashion.train), len(fashion.val), len(fashion.test)) == (55_000, 5_000, 10_000)
    assert fashion.train.x.shape[1:] == (1, 28, 28)
    assert (fashion.train.class_counts(10) + fashion.val.class_counts(10)).tolist() == [6_000] * 10
    assert fashion.test.class_counts(10).tolist() == [1_000] * 10
    assert float(fashion.train.x.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(fashion.train.x.std()) == pytest.approx(1.0, abs=0.01)
    assert fashion.class_names[9] == "Ankle boot" and len(fashion.class_names) == 10


# --- the offline digits and the fallback ----------------------------------------------------


def test_digits_loads_offline_with_the_default_arguments():
    """``load_data("digits")`` is documented as 1,197 / 200 / 400 images of 8x8."""
    data = load_data("digits")
    assert (len(data.train), len(data.val), len(data.test)) == (1197, 200, 400)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10


def test_digits_shapes_classes_and_normalisation(digits):
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1197, 200, 400)
    assert digits.input_shape == (1, 8, 8)
    assert digits.train.x.dtype == torch.float32
    assert set(digits.train.y.tolist()) == set(range(10)) == set(digits.test.y.tolist())
    assert float(digits.train.x.mean()) == pytest.approx(0.0, abs=0.05)
    assert float(digits.train.x.std()) == pytest.approx(1.0, abs=0.05)
    # the 1,797 images are all distinct, so the three splits share none
    keys = [k for s in (digits.train, digits.val, digits.test) for k in row_keys(s.x)]
    assert len(set(keys)) == 1797


def test_split_is_the_same_for_the_same_seed_and_differs_for_another():
    fresh = D._load_cpu.__wrapped__  # bypass the per-process cache: really split twice
    a = fresh("digits", None, 200, 0, False)
    b = fresh("digits", None, 200, 0, False)
    c = fresh("digits", None, 200, 1, False)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.val.x, c.val.x)
    # another seed, the same images overall
    assert sorted(row_keys(torch.cat([a.train.x, a.val.x]))) == sorted(row_keys(torch.cat([c.train.x, c.val.x])))
    assert torch.equal(a.test.x, c.test.x)
    assert a.spec != c.spec


def test_fallback_returns_digits_with_a_reason(tmp_path):
    data = load_data("mnist", root=tmp_path / "nothing-here", download=False, fallback=True)
    assert data.name == "digits" and data.input_shape == (1, 8, 8)
    assert data.fallback_reason and "mnist" in data.fallback_reason
    assert str(tmp_path / "nothing-here") in data.fallback_reason


def test_no_fallback_reason_when_the_data_is_there(digits):
    assert digits.fallback_reason is None


def test_banner_warns_about_the_fallback(tmp_path):
    from labkd.notebook import banner

    fallen = load_data("mnist", root=tmp_path / "missing", download=False, fallback=True)
    html = banner(fallen, fast=True)
    assert "offline digits" in html and "⚠" in html
    assert str(tmp_path / "missing" / "MNIST" / "raw") in html  # the reason, naming the folder
    plain = banner(load_data("digits", val_size=200), fast=False)
    assert "⚠" not in plain and "offline digits" not in plain


# --- bad input ------------------------------------------------------------------------------


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar'.*mnist.*fashion_mnist.*digits"):
        load_data("cifar")


@pytest.mark.parametrize("val_size", [0, -5, 2.5, True])
def test_bad_val_size(val_size):
    with pytest.raises(ValueError, match="val_size"):
        load_data("digits", val_size=val_size)


def test_val_size_too_large():
    with pytest.raises(ValueError, match=r"val_size=1397 leaves no training images"):
        load_data("digits", val_size=1397)


def test_missing_folder_names_folder_files_and_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_data("mnist", root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    for name in D.RAW_FILES:
        assert name in message
    assert "LABKD_DATA" in message and "digits" in message and "Fix" in message
    assert isinstance(info.value, FileNotFoundError)  # callers catching FileNotFoundError still work


def test_missing_only_some_files_names_those(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"x")
    with pytest.raises(DatasetNotFoundError, match=r"missing train-labels-idx1-ubyte, t10k-images"):
        load_data("mnist", root=tmp_path, download=False)


def test_labkd_data_pointing_nowhere(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKD_DATA", str(tmp_path / "no" / "such" / "folder"))
    # a split seed no other test uses, so nothing is served from the per-process cache
    with pytest.raises(FileNotFoundError, match=r"LABKD_DATA=.*does not name an existing folder"):
        load_data("mnist", split_seed=987_654, download=False)


@needs_mnist
def test_changing_labkd_data_after_a_load_is_honoured(mnist, monkeypatch, tmp_path):
    """The per-process cache must not hide a new LABKD_DATA (it would serve the old folder's data)."""
    monkeypatch.setenv("LABKD_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="LABKD_DATA"):
        load_data("mnist")  # the arguments the fixture used


def test_corrupt_idx_files_random_bytes(corrupt_root):
    for name in D.RAW_FILES:
        (corrupt_root / "MNIST" / "raw" / name).write_bytes(os.urandom(2_000))
    with pytest.raises(DatasetNotFoundError, match="corrupt"):
        load_data("mnist", root=corrupt_root, download=False)


@needs_mnist
def test_corrupt_idx_files_truncated(corrupt_root):
    source = D.dataset_folder("mnist")
    for name in D.RAW_FILES:
        (corrupt_root / "MNIST" / "raw" / name).write_bytes((source / name).read_bytes()[:4_000])
    with pytest.raises(DatasetNotFoundError, match="corrupt") as info:
        load_data("mnist", root=corrupt_root, download=False)
    assert str(corrupt_root / "MNIST" / "raw") in str(info.value)


def test_corrupt_idx_files_empty(corrupt_root):
    for name in D.RAW_FILES:
        (corrupt_root / "MNIST" / "raw" / name).write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match="corrupt"):
        load_data("mnist", root=corrupt_root, download=False)


def test_fallback_also_covers_corrupt_files_and_says_so(corrupt_root):
    """fallback=True falls back on unreadable files too, and the reason says they are corrupt."""
    for name in D.RAW_FILES:
        (corrupt_root / "MNIST" / "raw" / name).write_bytes(b"")
    data = load_data("mnist", root=corrupt_root, download=False, fallback=True)
    assert data.name == "digits" and "corrupt" in data.fallback_reason


# --- subsets --------------------------------------------------------------------------------


@needs_mnist
def test_transfer_set_with_no_threes(mnist):
    no_threes = mnist.subset(drop_classes=[3])
    assert 3 not in no_threes.train.y.tolist()
    assert len(no_threes.train) == len(mnist.train) - int((mnist.train.y == 3).sum())
    # the other classes are all still there, and val/test are unchanged (3s included)
    assert torch.equal(no_threes.train.class_counts(10)[[0, 1, 2, 4, 5, 6, 7, 8, 9]],
                       mnist.train.class_counts(10)[[0, 1, 2, 4, 5, 6, 7, 8, 9]])
    assert torch.equal(no_threes.val.x, mnist.val.x) and torch.equal(no_threes.test.y, mnist.test.y)
    assert int((no_threes.test.y == 3).sum()) == MNIST_TEST_COUNTS[3]
    assert no_threes.num_classes == 10


@needs_mnist
def test_only_sevens_and_eights(mnist):
    sub = mnist.subset(keep_classes=[7, 8])
    assert set(sub.train.y.tolist()) == {7, 8}
    assert len(sub.train) == int(((mnist.train.y == 7) | (mnist.train.y == 8)).sum())
    assert len(sub.test) == 10_000


@needs_mnist
def test_n_train_takes_a_seeded_subset_of_the_training_rows(mnist):
    a = mnist.subset(n_train=1000, seed=0)
    b = mnist.subset(n_train=1000, seed=0)
    c = mnist.subset(n_train=1000, seed=1)
    assert len(a.train) == 1000 and len(a.val) == 5000
    assert torch.equal(a.train.x, b.train.x) and not torch.equal(a.train.x, c.train.x)
    keys = set(row_keys(a.train.x))
    assert len(keys) == 1000
    assert keys <= set(row_keys(mnist.train.x))
    # a random sample has every class
    assert bool((a.train.class_counts(10) > 50).all())


def test_subset_combines_filters_and_sizes(digits):
    sub = digits.subset(n_train=100, keep_classes=[1, 2], n_val=50, n_test=60)
    assert (len(sub.train), len(sub.val), len(sub.test)) == (100, 50, 60)
    assert set(sub.train.y.tolist()) <= {1, 2}
    assert len(set(sub.val.y.tolist())) > 2  # evaluation splits keep every class
    assert set(row_keys(sub.test.x)) <= set(row_keys(digits.test.x))


def test_subset_spec_identifies_the_subset(digits):
    a = digits.subset(n_train=100)
    assert a.spec != digits.spec and a.spec["dataset"] == "digits"
    assert a.spec != digits.subset(n_train=100, seed=1).spec
    assert a.spec != digits.subset(n_train=101).spec
    assert digits.subset(drop_classes=[3, 1]).spec == digits.subset(drop_classes=[1, 3]).spec
    # a subset of a subset remembers both steps
    assert a.subset(n_train=50).spec != digits.subset(n_train=50).spec


@pytest.mark.parametrize("n", [0, -1, 1198, 10**6, 2.0, True])
def test_bad_n_train(digits, n):
    with pytest.raises(ValueError, match="n_train"):
        digits.subset(n_train=n)


def test_n_train_larger_than_available_says_how_many(digits):
    with pytest.raises(ValueError, match=r"n_train=5000 is larger than the 1197 images available"):
        digits.subset(n_train=5000)
    with pytest.raises(ValueError, match="n_test"):
        digits.subset(n_test=401)


@pytest.mark.parametrize("classes", [[10], [-1], [3, 11], ["3"], [2.0]])
def test_unknown_class_id(digits, classes):
    with pytest.raises(ValueError, match=r"keep_classes.*class ids are integers 0\.\.9"):
        digits.subset(keep_classes=classes)
    with pytest.raises(ValueError, match=r"drop_classes.*class ids are integers 0\.\.9"):
        digits.subset(drop_classes=classes)


def test_keep_and_drop_together(digits):
    with pytest.raises(ValueError, match="keep_classes or drop_classes, not both"):
        digits.subset(keep_classes=[1], drop_classes=[2])


def test_filter_that_drops_every_class(digits):
    with pytest.raises(ValueError, match="leaves no training images"):
        digits.subset(drop_classes=list(range(10)))
    with pytest.raises(ValueError, match="keep_classes is empty"):
        digits.subset(keep_classes=[])


def test_filter_then_n_train_too_large(digits):
    only_ones = int((digits.train.y == 1).sum())
    with pytest.raises(ValueError, match=f"n_train={only_ones + 1} is larger than the {only_ones}"):
        digits.subset(keep_classes=[1], n_train=only_ones + 1)


def test_split_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="x has 3 rows but y has 2"):
        Split(torch.zeros(3, 1, 2, 2), torch.zeros(2, dtype=torch.long))


# --- batches --------------------------------------------------------------------------------


def epoch_indices(split, batch_size, **kwargs):
    return [idx for _, _, idx in batches(split, batch_size, **kwargs)]


def test_batches_cover_every_index_once(digits):
    n = len(digits.train)
    parts = epoch_indices(digits.train, 100, seed=3)
    assert [len(p) for p in parts] == [100] * 11 + [n - 1100]
    assert torch.equal(torch.cat(parts).sort().values, torch.arange(n))


def test_batches_return_the_rows_they_name(digits):
    for x, y, idx in batches(digits.train, 64, seed=0):
        assert x.shape == (len(idx), 1, 8, 8)
        assert torch.equal(x, digits.train.x[idx]) and torch.equal(y, digits.train.y[idx])


def test_batches_order_is_seeded(digits):
    a = torch.cat(epoch_indices(digits.train, 128, seed=7))
    b = torch.cat(epoch_indices(digits.train, 128, seed=7))
    c = torch.cat(epoch_indices(digits.train, 128, seed=8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, torch.arange(len(a)))  # shuffled


def test_batches_with_a_generator_reshuffle_each_epoch(digits):
    g = torch.Generator().manual_seed(0)
    first = torch.cat(epoch_indices(digits.train, 128, generator=g))
    second = torch.cat(epoch_indices(digits.train, 128, generator=g))
    assert not torch.equal(first, second)
    assert torch.equal(first.sort().values, second.sort().values)


def test_batches_without_shuffle_keep_the_order(digits):
    assert torch.equal(torch.cat(epoch_indices(digits.train, 500, shuffle=False)), torch.arange(len(digits.train)))


def test_drop_last(digits):
    parts = epoch_indices(digits.train, 100, seed=0, drop_last=True)
    assert [len(p) for p in parts] == [100] * 11
    assert len(torch.cat(parts).unique()) == 1100


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, None, True])
def test_bad_batch_size(digits, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        next(batches(digits.train, batch_size))


def test_negative_jitter_in_batches_names_jitter(digits):
    with pytest.raises(ValueError, match="jitter"):
        next(batches(digits.train, 10, jitter=-1))


# --- jitter ---------------------------------------------------------------------------------


def one_bright_pixel(n: int, row: int = 14, col: int = 12, size: int = 28) -> torch.Tensor:
    x = torch.full((n, 1, size, size), 0.5)
    x[:, 0, row, col] = 9.0
    return x


def test_random_shift_moves_each_image_by_at_most_two_pixels_and_pads_with_fill():
    n, fill = 1000, -1.0
    x = one_bright_pixel(n)
    out = random_shift(x, 2, generator=torch.Generator().manual_seed(0), fill=fill)
    assert out.shape == x.shape
    flat = out.reshape(n, -1).argmax(1)
    rows, cols = flat // 28, flat % 28
    dy, dx = rows - 14, cols - 12
    assert bool(((dy.abs() <= 2) & (dx.abs() <= 2)).all())
    assert bool((out.amax(dim=(1, 2, 3)) == 9.0).all())  # the bright pixel survives
    # the pixels shifted in are the fill value, exactly |dy| rows and |dx| columns of them
    is_fill = out[:, 0] == fill
    fill_rows = is_fill.all(dim=2).sum(1)
    fill_cols = is_fill.all(dim=1).sum(1)
    assert torch.equal(fill_rows, dy.abs()) and torch.equal(fill_cols, dx.abs())
    # shifted down -> the fill is at the top
    down = dy > 0
    assert bool(is_fill[down, 0, :].all())
    # nothing else changed value: every pixel is the fill, the background or the bright one
    assert set(out.unique().tolist()) <= {fill, 0.5, 9.0}
    # images get their own shifts: all 25 (dy, dx) pairs occur in 1000 images
    assert len(set(zip(dy.tolist(), dx.tolist()))) == 25


def fixed_shift(x: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """The test's reference: the whole batch shifted by (dy, dx) pixels (positive: down/right)."""
    s = max(abs(dy), abs(dx))
    if s == 0:
        return x
    padded = torch.nn.functional.pad(x, (s, s, s, s), value=fill)
    h, w = x.shape[-2:]
    return padded[..., s - dy:s - dy + h, s - dx:s - dx + w]


def test_random_shift_equals_a_whole_image_shift():
    x = torch.randn(50, 3, 10, 12, generator=torch.Generator().manual_seed(1))
    out = random_shift(x, 1, generator=torch.Generator().manual_seed(2), fill=0.0)
    for i in range(len(x)):
        candidates = [fixed_shift(x[i:i + 1], dy, dx, fill=0.0) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        assert any(torch.equal(out[i:i + 1], c) for c in candidates)


def test_random_shift_default_fill_is_the_batch_minimum():
    x = one_bright_pixel(200)
    x[:, 0, 0, 0] = -3.0  # the minimum is in a corner
    out = random_shift(x, 2, generator=torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) <= {-3.0, 0.5, 9.0}
    assert int((out == -3.0).sum()) > 200  # padding added many more minimum-valued pixels


def test_random_shift_is_deterministic_with_a_seeded_generator():
    x = one_bright_pixel(64)
    a = random_shift(x, 2, generator=torch.Generator().manual_seed(5), fill=0.0)
    b = random_shift(x, 2, generator=torch.Generator().manual_seed(5), fill=0.0)
    c = random_shift(x, 2, generator=torch.Generator().manual_seed(6), fill=0.0)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_shift_zero_is_identity_and_keeps_input():
    x = torch.randn(4, 1, 8, 8)
    before = x.clone()
    assert torch.equal(random_shift(x, 0), x)
    random_shift(x, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, before)  # the input is not modified in place
    assert random_shift(torch.zeros(0, 1, 8, 8), 2).shape == (0, 1, 8, 8)


@pytest.mark.parametrize("max_shift", [-1, 1.5, True])
def test_random_shift_bad_max_shift(max_shift):
    with pytest.raises(ValueError, match="max_shift must be a non-negative integer"):
        random_shift(torch.zeros(2, 1, 8, 8), max_shift)


def test_random_shift_bad_shape():
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\)"):
        random_shift(torch.zeros(8, 8), 2)


@needs_mnist
def test_batches_with_jitter_shift_images_and_pad_with_background(mnist):
    small = mnist.subset(n_train=256)
    seen_shifted = 0
    for x, y, idx in batches(small.train, 64, seed=0, jitter=2, background=small.background):
        assert x.shape == (len(idx), 1, 28, 28) and torch.equal(y, small.train.y[idx])
        original = small.train.x[idx]
        for i in range(len(idx)):
            matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                       if torch.equal(x[i:i + 1], fixed_shift(original[i:i + 1], dy, dx, fill=small.background))]
            assert matches, "a jittered image is not a shift of its original by at most 2 pixels"
            seen_shifted += (0, 0) not in matches
    assert seen_shifted > 128  # most images moved (24 of 25 shifts are non-zero)


def test_batches_with_jitter_are_reproducible(digits):
    a = [x for x, _, _ in batches(digits.train, 256, seed=1, jitter=1)]
    b = [x for x, _, _ in batches(digits.train, 256, seed=1, jitter=1)]
    c = [x for x, _, _ in batches(digits.train, 256, seed=2, jitter=1)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(p.shape == q.shape and torch.equal(p, q) for p, q in zip(a, c))


def test_split_fraction():
    assert D.split_fraction(100, 0.25) == 25 and D.split_fraction(3, 0.1) == 1
    for bad in (0, 1.5, float("nan"), -0.1):
        with pytest.raises(ValueError, match="fraction must be in"):
            D.split_fraction(10, bad)
