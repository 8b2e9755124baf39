"""Small helpers shared by the cache and training tests (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from labkd.cache import CacheWarning


@contextlib.contextmanager
def no_cache_warnings() -> Iterator[None]:
    """Turn a :class:`~labkd.cache.CacheWarning` into an error: the normal path must be silent."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        yield


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two models hold the same parameter and buffer names with equal tensors."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
