"""labkd.crd: contrastive representation distillation (Tian et al. 2020) as one registered objective.

The loss and the memory bank are tested as modules on small fixed tensors; the objective on
lesson 11's CNNs on the 8x8 digits. No test asserts a measured accuracy.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from labkd import crd, objectives
from labkd.data import load_data
from labkd.models import build_model
from labkd.objectives import Step
from labkd.train import TrainConfig

OPTIONS = {"dim": 8, "negatives": 16}


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", val_size=100).subset(n_train=128, n_val=64, n_test=64)


def config(**changes) -> TrainConfig:
    base = dict(epochs=1, batch_size=32, loss="crd", hint_layer="conv3", guided_layer="conv3",
                objective_options=dict(OPTIONS))
    return TrainConfig(**{**base, **changes})


def networks(data, seed: int = 0):
    teacher = build_model("cnn", data.input_shape, data.num_classes, seed=seed, channels=(16, 32, 64))
    student = build_model("cnn", data.input_shape, data.num_classes, seed=seed, channels=(8, 16, 32))
    return student, teacher.eval()


def step_for(student, teacher, data, index, cfg) -> Step:
    x = data.train.x[index]
    s_logits, s_feats = student.forward_features(x)
    with torch.no_grad():
        t_logits, t_feats = teacher.forward_features(x)
    return Step(student_logits=s_logits, labels=data.train.y[index], index=index, epoch=1, teacher_logits=t_logits,
                student_features=s_feats[cfg.guided_layer], teacher_features=t_feats[cfg.hint_layer])


# --- the pieces ----------------------------------------------------------------------------------


def test_embed_gives_unit_vectors_from_maps_or_vectors():
    head = crd.Embed(6, 4)
    for x in (torch.randn(5, 6, 3, 3), torch.randn(5, 6)):
        z = head(x)
        assert z.shape == (5, 4) and torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-5)
    with pytest.raises(ValueError, match="channels"):
        head(torch.randn(5, 7))


def test_bank_shapes_and_negatives_are_other_examples():
    bank = crd.MemoryBank(n_data=20, dim=4, seed=0)
    assert bank.student.shape == bank.teacher.shape == (20, 4) and bank.z.tolist() == [0.0, 0.0]
    assert torch.allclose(bank.student.norm(dim=1), torch.ones(20), atol=1e-5)
    index = torch.tensor([0, 7, 19])
    torch.manual_seed(0)
    neg = torch.cat([bank.negatives(index, 19) for _ in range(10)], dim=1)
    assert neg.shape == (3, 190) and int(neg.min()) >= 0 and int(neg.max()) <= 19
    assert not (neg == index.unsqueeze(1)).any(), "an example is never its own negative"
    assert set(neg[0].tolist()) == set(range(1, 20)), "every other example can be drawn"
    scores = bank.scores(torch.randn(3, 4), "teacher", index, neg[:, :5])
    assert scores.shape == (3, 6)


def test_scores_are_dot_products_with_the_other_sides_rows():
    bank = crd.MemoryBank(n_data=10, dim=3, seed=1)
    anchor = F.normalize(torch.randn(2, 3), dim=1)
    index, neg = torch.tensor([4, 5]), torch.tensor([[1, 2], [3, 9]])
    scores = bank.scores(anchor, "student", index, neg)
    expected = torch.stack([bank.student[[4, 1, 2]] @ anchor[0], bank.student[[5, 3, 9]] @ anchor[1]])
    assert torch.allclose(scores, expected, atol=1e-6)


def test_memory_update_moves_only_the_given_rows():
    bank = crd.MemoryBank(n_data=12, dim=5, momentum=0.5, seed=0)
    old_s, old_t = bank.student.clone(), bank.teacher.clone()
    index = torch.tensor([2, 9])
    new_s, new_t = F.normalize(torch.randn(2, 5), dim=1), F.normalize(torch.randn(2, 5), dim=1)
    bank.update(index, new_s, new_t)
    assert torch.allclose(bank.student[index], F.normalize(0.5 * old_s[index] + 0.5 * new_s, dim=1), atol=1e-6)
    assert torch.allclose(bank.teacher[index], F.normalize(0.5 * old_t[index] + 0.5 * new_t, dim=1), atol=1e-6)
    others = torch.tensor([i for i in range(12) if i not in (2, 9)])
    assert torch.equal(bank.student[others], old_s[others]) and torch.equal(bank.teacher[others], old_t[others])
    frozen = crd.MemoryBank(n_data=12, dim=5, momentum=0.0, seed=0)
    frozen.update(index, new_s, new_t)
    assert torch.allclose(frozen.student[index], new_s, atol=1e-6), "momentum 0 copies the new embedding"


def test_nce_loss_matches_its_formula_and_prefers_high_positives():
    scores = torch.tensor([[0.9, 0.1, -0.2], [0.3, 0.5, 0.0]])
    n, tau, z = 50, 0.1, 4.0
    p = torch.exp(scores / tau) / z
    noise = 2 / n
    expected = -(torch.log(p[:, 0] / (p[:, 0] + noise)) + torch.log(noise / (p[:, 1:] + noise)).sum(1)).mean()
    assert crd.nce_loss(scores, n, tau, z).item() == pytest.approx(expected.item(), rel=1e-5)
    good = torch.tensor([[0.9, -0.5, -0.5]])
    bad = torch.tensor([[-0.5, 0.9, 0.9]])
    assert crd.nce_loss(good, n, tau, z) < crd.nce_loss(bad, n, tau, z)
    with pytest.raises(ValueError, match="scores"):
        crd.nce_loss(torch.zeros(3, 1), n, tau, z)


def test_contrastive_loss_is_a_scalar_and_sets_z_once():
    loss = crd.ContrastiveLoss(6, 10, n_data=40, options=OPTIONS, seed=0)
    index = torch.arange(8)
    value = loss(torch.randn(8, 6, 2, 2), torch.randn(8, 10), index)
    assert value.ndim == 0 and math.isfinite(float(value.detach())) and float(value.detach()) > 0
    z = loss.memory.z.clone()
    assert (z > 0).all()
    loss(torch.randn(8, 6), torch.randn(8, 10), index + 8)
    assert torch.equal(loss.memory.z, z), "Z is fixed by the first batch"
    value.backward()
    assert loss.embed_student.linear.weight.grad is not None and loss.embed_teacher.linear.weight.grad is not None


def test_eval_mode_leaves_the_banks_alone():
    loss = crd.ContrastiveLoss(6, 10, n_data=40, options=OPTIONS, seed=0).eval()
    before = loss.memory.student.clone()
    loss(torch.randn(8, 6), torch.randn(8, 10), torch.arange(8))
    assert torch.equal(loss.memory.student, before)


def test_training_raises_positive_scores_and_lowers_negative_ones():
    torch.manual_seed(0)
    n = 32
    xs, xt = torch.randn(n, 16), torch.randn(n, 32)  # one toy batch: student and teacher features
    loss = crd.ContrastiveLoss(16, 32, n_data=n, options={"dim": 8, "negatives": 8}, seed=0)
    optimizer = torch.optim.SGD(loss.parameters(), lr=0.1)

    def pair_scores():
        with torch.no_grad():
            sim = loss.embed_student(xs) @ loss.embed_teacher(xt).T
        off = ~torch.eye(n, dtype=torch.bool)
        return float(sim.diag().mean()), float(sim[off].mean())

    pos0, neg0 = pair_scores()
    values = []
    for _ in range(30):
        value = loss(xs, xt, torch.arange(n))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        values.append(float(value.detach()))
    pos, neg = pair_scores()
    assert pos > pos0 + 0.3, (pos0, pos)
    assert neg < neg0, (neg0, neg)
    assert values[-1] < values[0]
    assert float(loss.last["positive"].mean()) > float(loss.last["negative"].mean())


@pytest.mark.parametrize("options, word", [
    ({"dim": 0}, "dim"),
    ({"dim": 2.5}, "dim"),
    ({"negatives": 0}, "negatives"),
    ({"negatives": 40}, "negatives=40 must be smaller"),
    ({"negatives": 100}, "negatives=100 must be smaller"),
    ({"nce_temperature": 0.0}, "nce_temperature"),
    ({"nce_temperature": -0.1}, "nce_temperature"),
    ({"nce_temperature": float("nan")}, "nce_temperature"),
    ({"momentum": 1.0}, "momentum"),
    ({"momentum": -0.1}, "momentum"),
    ({"negative": 5}, "not CRD's"),
])
def test_bad_parameters_are_named(options, word):
    with pytest.raises(ValueError, match=word):
        crd.ContrastiveLoss(6, 10, n_data=40, options={**OPTIONS, **options})


def test_mismatched_batches_and_indices_are_named():
    loss = crd.ContrastiveLoss(6, 10, n_data=40, options=OPTIONS)
    with pytest.raises(ValueError, match="mismatched batch"):
        loss(torch.randn(8, 6), torch.randn(7, 10), torch.arange(8))
    with pytest.raises(ValueError, match="mismatched batch"):
        loss(torch.randn(8, 6), torch.randn(8, 10), torch.arange(6))
    with pytest.raises(ValueError, match="index holds positions outside"):
        loss(torch.randn(2, 6), torch.randn(2, 10), torch.tensor([3, 40]))
    with pytest.raises(ValueError, match="index must be a 1-d integer tensor"):
        loss(torch.randn(2, 6), torch.randn(2, 10), torch.tensor([0.0, 1.0]))


# --- the registered objective ----------------------------------------------------------------------


def test_crd_is_registered_and_checked_by_trainconfig():
    assert objectives.OBJECTIVES["crd"] is crd.CRD
    cfg = config()
    assert cfg.loss == "crd" and cfg.objective_options == OPTIONS
    with pytest.raises(ValueError, match="negatives"):
        config(objective_options={"negatives": 0})
    with pytest.raises(ValueError, match="momentum"):
        config(objective_options={"momentum": 1.5})
    with pytest.raises(ValueError, match="hint_layer"):
        config(hint_layer=None)
    with pytest.raises(ValueError, match="objective_options|not CRD's"):
        config(objective_options={"queue": 3})


def test_objective_builds_heads_and_banks_and_returns_a_scalar(digits):
    student, teacher = networks(digits)
    cfg = config()
    objective = objectives.prepare(cfg, student, teacher, digits)
    bank = objective.contrast.memory
    assert bank.student.shape == (len(digits.train), OPTIONS["dim"])
    assert objective.contrast.embed_student.linear.in_features == 32
    assert objective.contrast.embed_teacher.linear.in_features == 64
    names = set(objective.state_dict())
    assert {"contrast.memory.student", "contrast.memory.teacher", "contrast.memory.z",
            "contrast.embed_student.linear.weight"} <= names
    index = torch.arange(16)
    step = step_for(student, teacher, digits, index, cfg)
    loss = objective(step)
    assert loss.ndim == 0 and math.isfinite(float(loss.detach())) and "crd_loss" in step.log
    loss.backward()
    assert student.blocks["conv3"][0].weight.grad is not None, "the contrastive term trains the student"
    assert all(p.grad is None for p in teacher.parameters()), "the teacher stays frozen"


def test_alpha_and_beta_weigh_the_two_terms(digits):
    student, teacher = networks(digits)
    index = torch.arange(16)
    parts = {}
    for name, changes in {"kd": {"feature_weight": 0.0}, "both": {"feature_weight": 0.5},
                          "ce": {"alpha": 0.0, "feature_weight": 0.0}}.items():
        cfg = config(**changes)
        objective = objectives.prepare(cfg, student, teacher, digits)
        step = step_for(student, teacher, digits, index, cfg)
        parts[name] = (float(objective(step).detach()), float(step.log["crd_loss"]), step)
    from labkd import losses

    step = parts["kd"][2]
    kd = losses.distillation_loss(step.student_logits, step.teacher_logits, step.labels, 4.0, 0.9)
    assert parts["kd"][0] == pytest.approx(float(kd.detach()), rel=1e-5)
    assert parts["ce"][0] == pytest.approx(float(F.cross_entropy(step.student_logits, step.labels).detach()), rel=1e-5)
    assert parts["both"][0] == pytest.approx(parts["kd"][0] + 0.5 * parts["both"][1], rel=1e-5)


def test_the_kd_term_honours_scale_by_t2_like_every_kd_objective(digits):
    from labkd import losses

    student, teacher = networks(digits)
    index = torch.arange(16)
    cfg = config(feature_weight=0.0, scale_by_t2=False)
    step = step_for(student, teacher, digits, index, cfg)
    got = float(objectives.prepare(cfg, student, teacher, digits)(step).detach())
    soft = losses.soft_target_loss(step.student_logits, step.teacher_logits, 4.0, scale_by_t2=False)
    want = 0.9 * soft + 0.1 * F.cross_entropy(step.student_logits, step.labels)
    assert got == pytest.approx(float(want.detach()), rel=1e-5)


def test_build_checks_sizes_and_layers(digits):
    student, teacher = networks(digits)
    with pytest.raises(ValueError, match="negatives=200 must be smaller than the 128"):
        objectives.prepare(config(objective_options={"negatives": 200}), student, teacher, digits)
    with pytest.raises(ValueError, match="guided_layer"):
        objectives.prepare(config(guided_layer="conv9"), student, teacher, digits)
    with pytest.raises(ValueError, match="teacher"):
        objectives.prepare(config(), student, None, digits)


def test_same_seed_same_heads_and_banks(digits):
    student, teacher = networks(digits)
    a = objectives.prepare(config(seed=3), student, teacher, digits).state_dict()
    b = objectives.prepare(config(seed=3), student, teacher, digits).state_dict()
    c = objectives.prepare(config(seed=4), student, teacher, digits).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["contrast.memory.student"], c["contrast.memory.student"])


def test_train_model_round_trip_restores_heads_and_banks(digits, tmp_path, monkeypatch):
    from labkd.experiments import train_model

    monkeypatch.setenv("LABKD_CACHE", str(tmp_path))
    teacher = train_model("cnn", digits, TrainConfig(epochs=1, batch_size=32), channels=(16, 32, 64), progress=False)
    cfg = config(epochs=2)
    trained = train_model("cnn", digits, cfg, teacher=teacher, channels=(8, 16, 32), progress=False)
    row = trained.history[-1]
    assert not trained.cached and math.isfinite(row["loss"]) and math.isfinite(row["crd_loss"])
    state = trained.objective.state_dict()
    start = objectives.prepare(cfg, networks(digits)[0], teacher.model, digits).state_dict()
    assert not torch.equal(state["contrast.memory.student"], start["contrast.memory.student"]), "the banks moved"
    assert not torch.equal(state["contrast.embed_student.linear.weight"], start["contrast.embed_student.linear.weight"])
    assert (state["contrast.memory.z"] > 0).all()
    again = train_model("cnn", digits, cfg, teacher=teacher, channels=(8, 16, 32), progress=False)
    assert again.cached and isinstance(again.objective, crd.CRD)
    assert all(torch.equal(v, again.objective.state_dict()[k]) for k, v in state.items())
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in trained.model.state_dict().items())
