"""One seed names one model: training and evaluation run with a fixed number of CPU threads.

Matrix products on the CPU split their sums differently with 1 or 2 intra-op threads, so the
same seed gave a different standard teacher on 1 and on 2 threads (79 versus 96 test errors after
100 epochs). :func:`fit <labkd.train.fit>` and :func:`predict_logits <labkd.metrics.predict_logits>`
therefore run under :func:`fixed_threads`, which sets :data:`TRAIN_THREADS` intra-op threads and
restores the caller's setting afterwards. One thread is also the faster choice for the course's
small models on a shared 2-core machine (two threads spin-wait for each other); to use both
cores, run two notebooks at once (``labkd run --jobs 2``) or train a grid's runs in two processes
(:mod:`labkd.parallel`, ``LABKD_WORKERS=2``; ``labkd run`` sets it), each on one thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

#: Intra-op threads for training and evaluation: part of what makes a result reproducible.
TRAIN_THREADS = 1


@contextlib.contextmanager
def fixed_threads(n: int | None = None) -> Iterator[None]:
    """Run the block with ``n`` (default :data:`TRAIN_THREADS`) intra-op threads, then restore."""
    n = TRAIN_THREADS if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive number of threads, got {n!r}")
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
