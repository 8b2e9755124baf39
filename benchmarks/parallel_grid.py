"""Time one grid of students trained in one process or in several (``labkd.parallel``).

    python benchmarks/parallel_grid.py --workers 1
    python benchmarks/parallel_grid.py --workers 2

Each call trains, into a fresh temporary cache, the labels-only and the distilled (T = 4) 784-800-800-10
student of lesson 06 for ``--seeds`` seeds on ``--images`` MNIST images for ``--epochs`` epochs, from a
small teacher trained first (not timed apart: time the whole command from outside, e.g. with
``/usr/bin/time -v``, and compare the two worker counts). Prints the grid's wall time and checks that
the trained weights do not depend on the worker count (the keys and test accuracies are printed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    os.environ["LABKD_CACHE"] = tempfile.mkdtemp(prefix="labkd-bench-parallel-")
    os.environ.setdefault("LABKD_PROGRESS", "0")

    from labkd import TrainConfig, load_data, sweeps, train_model

    data = load_data("mnist").subset(n_train=args.images, n_val=1000, n_test=2000)
    config = TrainConfig(epochs=args.epochs, batch_size=256, lr=0.1, warmup_epochs=1, seed=100)  # lesson 06's students
    teacher = train_model("mlp", data, config.replace(epochs=1, warmup_epochs=0), hidden=(256, 256), progress=False)
    start = time.perf_counter()
    grid = sweeps.run_grid(data, teacher, "hinton_student", [4.0], [0.9], seeds=args.seeds, base_config=config,
                           progress=False, workers=args.workers)
    seconds = time.perf_counter() - start
    for row in grid.rows:
        print(f"T={row.temperature} seed={row.seed} " + (f"test_acc={row.history[-1]['test_acc']:.4f}" if row.history
                                                        else "diverged"))
    print(f"grid of {len(grid.rows)} runs in {seconds:.1f} s with {args.workers} worker(s)")


if __name__ == "__main__":
    main()
