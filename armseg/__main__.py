"""`python -m armseg` is the same as the `armseg` console script."""

from armseg.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
