"""`python bench.py ARGS` does what `genbench ARGS` does; no arguments runs the quick suite."""

from genbench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
