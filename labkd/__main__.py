"""``python -m labkd``: the same as the ``labkd`` command."""

from labkd.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
