"""How long `armseg --help`, `armseg <command> --help` and the import of each command's module take,
against what loading Keras/TensorFlow and MLflow alone costs (what every command paid before
the parsers stopped importing them).

    python benchmarks/bench_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = ("synth", "augment", "train", "tune", "predict", "evaluate", "register", "table", "demo")


def seconds(command: list[str], repeat: int) -> float:
    """Median wall time of a fresh process running `command`."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    python = sys.executable
    bare = seconds([python, "-c", "pass"], repeat)
    keras = seconds([python, "-c", "import keras"], repeat)
    mlflow = seconds([python, "-c", "import mlflow"], repeat)
    print(f"python alone {bare:.2f} s; import keras (TensorFlow) {keras:.2f} s; import mlflow {mlflow:.2f} s")
    help_all = seconds([python, "-m", "armseg", "--help"], repeat)
    print(f"armseg --help: {help_all:.2f} s ({keras / help_all:.1f}x faster than importing Keras alone)")
    worst = 0.0
    for command in COMMANDS:
        took = seconds([python, "-m", "armseg", command, "--help"], repeat)
        worst = max(worst, took)
        print(f"armseg {command} --help: {took:.2f} s")
    print(f"slowest command --help: {worst:.2f} s (goal: under 1 s)")


if __name__ == "__main__":
    main()
