"""labkd.soft_targets (lesson 01): soft targets, the soft-target matrix, informative examples, information measures."""

from __future__ import annotations

import math

import pytest
import torch

from labkd import soft_targets as dk
from labkd import soft_targets_figures


@pytest.fixture(scope="module")
def random_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """600 examples of 10 classes: logits that mostly favour the label, with noise."""
    g = torch.Generator().manual_seed(0)
    targets = torch.arange(600) % 10
    logits = torch.randn(600, 10, generator=g) * 1.5
    logits[torch.arange(600), targets] += 4.0
    return logits, targets


def test_soft_targets_are_a_tempered_softmax(random_logits) -> None:
    logits, _ = random_logits
    for t in (0.5, 1.0, 4.0):
        p = dk.soft_targets(logits, t)
        assert torch.allclose(p.sum(1), torch.ones(len(p)), atol=1e-5)
        assert torch.allclose(p, torch.softmax(logits / t, dim=1), atol=1e-6)


def test_entropy_limits_and_units() -> None:
    c = 10
    sharp = torch.zeros(1, c)
    sharp[0, 3] = 100.0
    flat = torch.zeros(1, c)
    assert float(dk.entropy(sharp)) == pytest.approx(0.0, abs=1e-6)
    assert float(dk.entropy(flat)) == pytest.approx(math.log(c), rel=1e-5)
    assert float(dk.entropy(flat, unit="bits")) == pytest.approx(math.log2(c), rel=1e-5)
    assert float(dk.perplexity(flat)) == pytest.approx(c, rel=1e-5)
    assert float(dk.perplexity(sharp)) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="unit"):
        dk.entropy(flat, unit="dits")


def test_mean_entropy_grows_with_temperature(random_logits) -> None:
    logits, _ = random_logits
    temps = [0.5, 1, 2, 4, 8, 20, 100]
    h = dk.entropy_by_temperature(logits, temps, "bits")
    assert h.shape == (len(temps),)
    assert bool((h[1:] >= h[:-1] - 1e-6).all()), h
    assert float(h[-1]) == pytest.approx(math.log2(10), abs=0.01)  # T = 100: nearly uniform
    assert float(h[0]) < 1.0


def test_effective_classes_endpoints(random_logits) -> None:
    logits, _ = random_logits
    counts_hot = dk.effective_classes(logits, 1000.0)
    assert bool((counts_hot == 10).all())
    sharp = torch.full((3, 10), -50.0)
    sharp[:, 0] = 50.0
    assert dk.effective_classes(sharp, 1.0).tolist() == [1, 1, 1]
    counts = dk.effective_classes(logits, 1.0)
    assert bool(((counts >= 1) & (counts <= 10)).all())
    with pytest.raises(ValueError, match="threshold"):
        dk.effective_classes(logits, 1.0, threshold=1.5)


def test_soft_target_matrix_rows_sum_to_one(random_logits) -> None:
    logits, targets = random_logits
    for t in (0.5, 1.0, 4.0, 20.0):
        m = dk.soft_target_matrix(logits, targets, t)
        assert m.shape == (10, 10)
        assert torch.allclose(m.sum(1), torch.ones(10), atol=1e-5)
        assert bool((m >= 0).all())


def test_soft_target_matrix_is_the_class_mean_of_soft_targets(random_logits) -> None:
    logits, targets = random_logits
    m = dk.soft_target_matrix(logits, targets, 3.0)
    p = torch.softmax(logits / 3.0, dim=1)
    for c in (0, 4, 9):
        assert torch.allclose(m[c], p[targets == c].mean(0), atol=1e-6)


def test_soft_target_matrix_limits(random_logits) -> None:
    logits, targets = random_logits
    # T -> infinity: every row tends to uniform
    hot = dk.soft_target_matrix(logits, targets, 1e4)
    assert torch.allclose(hot, torch.full((10, 10), 0.1), atol=1e-3)
    # T -> 0: the row-normalised confusion matrix (the mean of one-hot predictions)
    cold = dk.soft_target_matrix(logits, targets, 1e-6)
    c = logits.shape[1]
    confusion = torch.bincount(targets * c + logits.argmax(1), minlength=c * c).reshape(c, c).double()
    expected = (confusion / confusion.sum(1, keepdim=True)).float()
    assert torch.allclose(cold, expected, atol=1e-4)
    # and the diagonal falls as T grows (the teacher is right more often than not)
    diagonals = [float(dk.soft_target_matrix(logits, targets, t).diagonal().mean()) for t in (0.5, 1, 2, 4, 8)]
    assert diagonals == sorted(diagonals, reverse=True)


def test_symmetric_inputs_give_a_symmetric_matrix() -> None:
    # For every ordered pair (i, j): an image of class i whose logits favour i, then j.
    c = 5
    rows, labels = [], []
    for i in range(c):
        for j in range(c):
            if i != j:
                z = torch.zeros(c)
                z[i], z[j] = 3.0, 1.5
                rows.append(z)
                labels.append(i)
    logits, targets = torch.stack(rows), torch.tensor(labels)
    for t in (0.7, 2.0, 10.0):
        m = dk.soft_target_matrix(logits, targets, t)
        assert torch.allclose(m, m.T, atol=1e-6)


def test_absent_class_gives_a_nan_row(random_logits) -> None:
    logits, targets = random_logits
    keep = targets != 7
    m = dk.soft_target_matrix(logits[keep], targets[keep], 2.0)
    assert bool(torch.isnan(m[7]).all())
    assert not bool(torch.isnan(m[[0, 1, 8]]).any())
    pairs = dk.most_confused_pairs(m, k=3)  # NaN rows are skipped, not ranked
    assert all(not math.isnan(p.score) for p in pairs)


def test_most_confused_pairs_finds_the_planted_pairs() -> None:
    m = torch.full((4, 4), 0.01)
    m.fill_diagonal_(0.9)
    m[1, 3], m[3, 1] = 0.2, 0.1   # 1 and 3 look alike
    m[0, 2] = 0.12                # 0 is mistaken for 2, not the other way round
    pairs = dk.most_confused_pairs(m, k=2)
    assert (pairs[0].first, pairs[0].second) == (1, 3)
    assert pairs[0].score == pytest.approx(0.15)
    assert (pairs[1].first, pairs[1].second) == (0, 2)
    assert pairs[1].score == pytest.approx((0.12 + 0.01) / 2)
    directed = dk.most_confused_pairs(m, k=3, symmetric=False)
    assert [(p.first, p.second) for p in directed] == [(1, 3), (0, 2), (3, 1)]
    scores = [p.score for p in dk.most_confused_pairs(m, k=6)]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(ValueError, match="k"):
        dk.most_confused_pairs(m, k=7)  # only 6 unordered pairs among 4 classes


def test_most_likely_wrong_classes() -> None:
    m = torch.tensor([[0.8, 0.05, 0.15], [0.1, 0.7, 0.2], [0.3, 0.3, 0.4]])
    assert [c for c, _ in dk.most_likely_wrong_classes(m, 0, k=2)] == [2, 1]
    assert dk.most_likely_wrong_classes(m, 1, k=1)[0] == (2, pytest.approx(0.2))
    with pytest.raises(ValueError, match="true_class"):
        dk.most_likely_wrong_classes(m, 3)


def test_top_classes_and_margin(random_logits) -> None:
    logits, _ = random_logits
    probs, classes = dk.top_classes(logits, 2, 2.0)
    assert probs.shape == classes.shape == (600, 2)
    assert bool((probs[:, 0] >= probs[:, 1]).all())
    assert torch.equal(classes[:, 0], logits.argmax(1))
    margin = dk.top2_margin(logits, 2.0)
    assert bool(((margin >= 0) & (margin <= 1)).all())


@pytest.mark.parametrize("by", dk.INFORMATIVE_CRITERIA)
def test_most_informative_examples_are_the_extreme_ones(random_logits, by: str) -> None:
    logits, _ = random_logits
    chosen = dk.most_informative_examples(logits, k=20, temperature=1.0, by=by)
    assert chosen.shape == (20,) and len(set(chosen.tolist())) == 20
    rest = torch.ones(600, dtype=torch.bool)
    rest[chosen] = False
    if by == "margin":
        score = dk.top2_margin(logits)           # smallest first
        assert float(score[chosen].max()) <= float(score[rest].min()) + 1e-7
        assert torch.equal(score[chosen], score[chosen].sort().values)
    elif by == "second":
        score = dk.top_classes(logits, 2)[0][:, 1]  # largest first
        assert float(score[chosen].min()) >= float(score[rest].max()) - 1e-7
    else:
        score = dk.entropy(logits)
        assert float(score[chosen].min()) >= float(score[rest].max()) - 1e-7


def test_most_informative_examples_respects_among(random_logits) -> None:
    logits, targets = random_logits
    correct = logits.argmax(1) == targets
    chosen = dk.most_informative_examples(logits, k=5, among=correct)
    assert bool(correct[chosen].all())
    overall = dk.most_informative_examples(logits, k=5)
    assert not bool(correct[overall].all()) or torch.equal(chosen, overall)
    with pytest.raises(ValueError, match="among"):
        dk.most_informative_examples(logits, k=5, among=correct.long())
    with pytest.raises(ValueError, match="by"):
        dk.most_informative_examples(logits, k=5, by="loudest")
    with pytest.raises(ValueError, match="k"):
        dk.most_informative_examples(logits, k=601)


def test_within_class_information() -> None:
    # every image of a class has the same logits: nothing image-specific
    base = torch.tensor([[4.0, 1.0, 0.0], [0.0, 4.0, 2.0], [1.0, 0.0, 4.0]])
    targets = torch.tensor([0, 1, 2] * 5)
    same = base[targets]
    assert dk.within_class_information(same, targets, 1.0) == pytest.approx(0.0, abs=1e-9)
    # two kinds of 0: one that looks like a 1, one like a 2
    varied = torch.tensor([[4.0, 3.0, 0.0], [4.0, 0.0, 3.0]] * 4)
    labels = torch.zeros(8, dtype=torch.long)
    informative = dk.within_class_information(varied, labels, 1.0)
    assert informative > 0.05
    assert dk.within_class_information(varied, labels, 1000.0) < 1e-4  # uniform targets say nothing


def test_information_table(random_logits) -> None:
    logits, targets = random_logits
    rows = dk.information_table(logits, targets, [1, 4, 20])
    assert [r["target"] for r in rows] == ["one-hot label", "soft, T = 1", "soft, T = 4", "soft, T = 20"]
    assert rows[0]["entropy (bits)"] == 0 and rows[0]["classes > 1%"] == 1
    entropies = [r["entropy (bits)"] for r in rows]
    assert entropies == sorted(entropies)
    assert all(0 <= r["mass off top class"] <= 1 for r in rows)
    assert all(1 <= r["perplexity"] <= 10 + 1e-6 for r in rows)


def test_example_menu(random_logits) -> None:
    logits, targets = random_logits
    names = [f"c{i}" for i in range(10)]
    menu = dk.example_menu(logits, targets, names, n_informative=3, n_confident=2, n_wrong=2)
    kinds = [label.split(":")[0] for label, _ in menu]
    assert kinds.count("ambiguous") == 3 and kinds.count("confident") == 2 and kinds.count("misclassified") == 2
    predicted = logits.argmax(1)
    for label, i in menu:
        assert f"label {names[int(targets[i])]}" in label
        assert (predicted[i] != targets[i]) == label.startswith("misclassified")
    with pytest.raises(ValueError, match="class_names"):
        dk.example_menu(logits, targets, names[:5])


def test_figures(random_logits) -> None:
    logits, targets = random_logits
    fig = soft_targets_figures.information_figure(logits, targets, temperatures=[1, 2, 4])
    assert len(fig.data) == 3
    assert list(fig.data[0].x) == [1, 2, 4]
    images = torch.randn(600, 1, 8, 8)
    idx = dk.most_informative_examples(logits, k=4)
    grid = soft_targets_figures.informative_examples_figure(images, logits, targets, idx, [str(i) for i in range(10)])
    titles = [a.text for a in grid.layout.annotations]
    assert len(titles) == 4 and all(t.startswith(f"label {int(targets[i])}:") for t, i in zip(titles, idx))


@pytest.mark.parametrize("call, error, words", [
    (lambda: dk.soft_targets(torch.zeros(3), 1.0), ValueError, "logits"),
    (lambda: dk.soft_targets(torch.zeros(3, 4), 0.0), ValueError, "temperature"),
    (lambda: dk.soft_targets(torch.zeros(3, 4, dtype=torch.long), 1.0), TypeError, "floating"),
    (lambda: dk.soft_target_matrix(torch.zeros(3, 4), torch.tensor([0, 1]), 1.0), ValueError, "targets"),
    (lambda: dk.soft_target_matrix(torch.zeros(3, 4), torch.tensor([0, 1, 4]), 1.0), ValueError, "class ids"),
    (lambda: dk.entropy_by_temperature(torch.zeros(3, 4), 2.0), TypeError, "temperatures"),
    (lambda: dk.entropy_by_temperature(torch.zeros(3, 4), []), ValueError, "temperatures"),
    (lambda: dk.entropy_by_temperature(torch.zeros(3, 4), [1, -1]), ValueError, "temperatures"),
    (lambda: dk.top_classes(torch.zeros(3, 4), k=5), ValueError, "k"),
])
def test_bad_inputs_are_named(call, error, words) -> None:
    with pytest.raises(error, match=words):
        call()


def test_on_a_real_model() -> None:
    """A small MLP trained briefly on the bundled digits: the analysis runs end to end on real logits.

    (Plain gradient steps rather than ``fit``: creating a torch optimizer imports torch._dynamo,
    which alone can take longer than this whole file.)
    """
    import torch.nn.functional as F

    from labkd import build_model, load_data
    from labkd.metrics import accuracy, predict_logits

    data = load_data("digits", val_size=200)
    model = build_model("mlp", data.input_shape, data.num_classes, seed=0, hidden=(32,))
    for _ in range(60):
        loss = F.cross_entropy(model(data.train.x), data.train.y)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
    logits = predict_logits(model, data.test.x)
    assert accuracy(logits, data.test.y) > 0.5  # it learned something
    m = dk.soft_target_matrix(logits, data.test.y, 4.0)
    assert torch.allclose(m.sum(1), torch.ones(10), atol=1e-5)
    assert float(m.diagonal().mean()) > float(dk.soft_target_matrix(logits, data.test.y, 40.0).diagonal().mean())
    pairs = dk.most_confused_pairs(m, k=5)
    assert len(pairs) == 5 and all(0 <= p.first < p.second < 10 for p in pairs)
    h = dk.entropy_by_temperature(logits, [1, 4])
    assert float(h[1]) > float(h[0])
