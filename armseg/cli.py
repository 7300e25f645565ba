"""`armseg <command>`: one entry per command, each parsing arguments and calling the package.

Command modules are imported only when their command runs, so `armseg synth` never pays for
loading TensorFlow. Each module offers `configure(parser)` and `run(args)`; user mistakes
arrive here as `ArmsegError` and leave as one line on stderr with a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from armseg.errors import ArmsegError

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("armseg.synth.command", "write a synthetic OpenArm tree of phantom arm scans"),
    "augment": ("armseg.augment.command", "rotate and elastically deform a group's scans"),
    "train": ("armseg.train.command", "train a U-Net on a training group and register it"),
    "tune": ("armseg.tune.command", "Optuna search over train's hyperparameters"),
    "predict": ("armseg.predict.command", "segment every scan of subjects with models"),
    "evaluate": ("armseg.evaluate.command", "score predictions against ground truth"),
    "register": ("armseg.registration.command", "registration-based segmentation baseline"),
    "measure": ("armseg.measure.command", "muscle volume, area and thickness from truth and models"),
    "table": ("armseg.evaluate.table_command", "the cross-model accuracy table"),
    "demo": ("armseg.demo", "synth, augment, train, predict, register, evaluate, measure, table"),
}
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with `command`, only that command's module is imported."""
    parser = argparse.ArgumentParser(prog="armseg", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (module_name, summary) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.add_argument("--data-root", default="data",
                         help="root of the OpenArm tree (default: %(default)s)")
        if command is None or command == name:
            importlib.import_module(module_name).configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = mlflow_spelling([*(sys.argv[1:] if argv is None else argv)])
    command = next((a for a in argv if a in COMMANDS), None)
    try:
        args = build_parser(command).parse_args(argv)
        from armseg.tracking import configure_tracking

        configure_tracking()
        importlib.import_module(COMMANDS[args.command][0]).run(args)
    except ArmsegError as error:
        _fail(f"armseg {command or ''}: error: {error}".replace("  ", " "))
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        _fail(f"armseg {command or ''}: interrupted")
        return EXIT_INTERRUPTED
    return 0


def mlflow_spelling(argv: list[str]) -> list[str]:
    """`mlflow run -P base_filters=8` arrives as `--base_filters 8`: read it as `--base-filters 8`."""
    spelled = []
    for token in argv:
        if token.startswith("--") and "_" in token.split("=", 1)[0]:
            flag, equals, value = token.partition("=")
            token = flag.replace("_", "-") + equals + value
        spelled.append(token)
    return spelled


def _fail(message: str) -> None:
    print(message, file=sys.stderr)
    from armseg.tracking.runs import mark_env_run_failed

    mark_env_run_failed(message)

