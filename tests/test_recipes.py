"""labkd.recipes: a lesson's named TrainConfigs with fast mode's changes, checked at import."""

from __future__ import annotations

import pytest

from labkd import TrainConfig
from labkd.recipes import Recipes

FULL = TrainConfig(epochs=20, batch_size=32, lr=0.1)


def test_full_fast_and_overrides() -> None:
    recipes = Recipes({"member": FULL, "distilled": FULL.replace(loss="distillation")},
                      fast={"member": {"epochs": 2, "eval_every": 2}})
    assert recipes["member"] is FULL and list(recipes) == ["member", "distilled"] and len(recipes) == 2
    assert recipes("member") == FULL and recipes("member", True) == FULL.replace(epochs=2, eval_every=2)
    assert recipes("distilled", True) == recipes["distilled"]  # no fast changes: the full recipe
    assert recipes("member", True, seed=3, lr=0.05) == FULL.replace(epochs=2, eval_every=2, seed=3, lr=0.05)
    assert recipes.all() == {"member": FULL, "distilled": recipes["distilled"]}
    assert recipes.all(True) == {"member": FULL.replace(epochs=2, eval_every=2), "distilled": recipes["distilled"]}


def test_bad_recipes_fail_when_declared() -> None:
    with pytest.raises(TypeError, match="recipe 'a' must be a labkd.TrainConfig"):
        Recipes({"a": {"epochs": 2}})
    with pytest.raises(ValueError, match=r"fast names recipes that do not exist: \['b'\]"):
        Recipes({"a": FULL}, fast={"b": {"epochs": 2}})
    with pytest.raises(TypeError):
        Recipes({"a": FULL}, fast={"a": {"epoch": 2}})  # a misspelt field
    with pytest.raises(ValueError, match="non-empty"):
        Recipes({})


def test_unknown_names_and_modes_are_named() -> None:
    recipes = Recipes({"a": FULL})
    with pytest.raises(ValueError, match="name='b' is not a recipe"):
        recipes("b")
    with pytest.raises(KeyError, match="recipes are"):
        recipes["b"]
    with pytest.raises(TypeError, match="fast must be True or False"):
        recipes("a", "yes")
