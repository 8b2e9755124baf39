"""A lesson's training recipes as data: a few named :class:`labkd.TrainConfig`\\ s in one place.

Each lesson module declares its recipes once, at the top, with the fields fast mode changes
(nanoGPT keeps experiments as config files of overrides in the same spirit):

>>> RECIPES = Recipes(
...     {"member": TrainConfig(epochs=20, batch_size=32, lr=0.1),
...      "distilled": TrainConfig(epochs=20, batch_size=32, lr=0.1, loss="distillation", temperature=2.0)},
...     fast={"member": {"epochs": 2}, "distilled": {"epochs": 2}})
>>> RECIPES["member"]                                   # the full-mode recipe
>>> RECIPES("distilled", fast, seed=3, temperature=4.0)   # fast mode's changes, then the overrides
>>> RECIPES.all(fast)                                   # every recipe of the mode, by name

A notebook prints a recipe as it is (``print(RECIPES("member", fast))``); a run is its config
plus the few fields the experiment sets (the seed, a temperature chosen on validation), so the
cache key (:func:`labkd.experiments.config_key`) follows from the data alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from labkd.train import TrainConfig


class Recipes(Mapping[str, TrainConfig]):
    """Named full-mode recipes plus, per name, the fields fast mode changes (a read-only mapping
    ``name -> TrainConfig``; calling it gives a recipe in either mode with overrides)."""

    def __init__(self, full: Mapping[str, TrainConfig], fast: Mapping[str, Mapping[str, object]] | None = None):
        if not isinstance(full, Mapping) or not full:
            raise ValueError("full must be a non-empty dict of name -> TrainConfig")
        for name, config in full.items():
            if not isinstance(config, TrainConfig):
                raise TypeError(f"recipe {name!r} must be a labkd.TrainConfig, got {type(config).__name__}")
        fast = dict(fast or {})
        unknown = sorted(set(fast) - set(full))
        if unknown:
            raise ValueError(f"fast names recipes that do not exist: {unknown}; recipes are {list(full)}")
        self._full = dict(full)
        # checked now: a misspelt field fails when the lesson module is imported, not mid-run
        self._fast = {name: full[name].replace(**changes) if changes else full[name] for name, changes in fast.items()}

    def __getitem__(self, name: str) -> TrainConfig:
        if name not in self._full:
            raise KeyError(f"{name!r} is not a recipe; recipes are {list(self._full)}")
        return self._full[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._full)

    def __len__(self) -> int:
        return len(self._full)

    def __call__(self, name: str, fast: bool = False, **overrides) -> TrainConfig:
        """Recipe ``name`` (with fast mode's changes when ``fast``), then ``overrides`` (e.g. ``seed``)."""
        if name not in self._full:
            raise ValueError(f"name={name!r} is not a recipe; expected one of {tuple(self._full)}")
        if not isinstance(fast, bool):
            raise TypeError(f"fast must be True or False, got {fast!r}")
        config = self._fast.get(name, self._full[name]) if fast else self._full[name]
        return config.replace(**overrides) if overrides else config

    def all(self, fast: bool = False) -> dict[str, TrainConfig]:
        """Every recipe by name, with fast mode's changes when ``fast`` (what a notebook trains)."""
        return {name: self(name, fast) for name in self._full}

    def __repr__(self) -> str:
        return f"Recipes({list(self._full)})"
