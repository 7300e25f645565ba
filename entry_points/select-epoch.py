"""MLflow entry point `select-epoch`: `mlflow run . -e select-epoch -P key=value` is
`armseg select-epoch --key value`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout runs without installing

from armseg.cli import run_command  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command("select-epoch", sys.argv[1:]))
