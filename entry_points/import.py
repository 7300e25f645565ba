"""MLflow entry point `import`: `mlflow run . -e import -P key=value` is `armseg import --key value`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout runs without installing

from armseg.cli import run_command  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command("import", sys.argv[1:]))
