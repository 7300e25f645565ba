"""`armseg <command>`: one entry per command, each parsing arguments and calling the package.

Each command's module offers `configure(parser)` and `run(args)`; building the parsers imports
no MLflow, Keras or TensorFlow, so `--help` answers at once and commands that never run a
network never load one. The MLflow entry points (`entry_points/<command>.py`) call
`run_command` with the same parser. User mistakes, bad flags included, arrive here as
`ArmsegError` and leave as one line on stderr, exit status 2 and a FAILED run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from armseg import __version__
from armseg.backend import load_keras
from armseg.errors import ArmsegError
from armseg.signals import stopping_signals_interrupt

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("armseg.synth.command", "write a synthetic OpenArm tree of phantom arm scans"),
    "augment": ("armseg.augment.command", "rotate and elastically deform a group's scans"),
    "train": ("armseg.train.command", "train a U-Net on a training group and register it"),
    "tune": ("armseg.tune.command", "Optuna search over train's hyperparameters"),
    "predict": ("armseg.predict.command", "segment every scan of subjects with models"),
    "evaluate": ("armseg.evaluate.command", "score predictions against ground truth"),
    "register": ("armseg.registration.command", "registration-based segmentation baseline"),
    "measure": ("armseg.measure.command", "muscle volume, area and thickness from truth and models"),
    "table": ("armseg.table.command", "the cross-model accuracy table"),
    "demo": ("armseg.demo.command", "synth, augment, train, predict, register, evaluate, measure, table"),
    "import": ("armseg.openarm_import.command", "the OpenArm 2.0 download (Sub<x>/volumes) into the tree"),
    "group": ("armseg.group.command", "assemble a training group from named scans of the subjects"),
    "select-epoch": ("armseg.select_epoch.command", "register a chosen epoch of a train run as a model"),
}
# Commands that run a network: Keras (and its backend's start-up noise) is loaded for these only,
# after the store answered. `train` loads it itself, once it knows the run may be trained (a
# refused `--resume` then costs no Keras start-up).
NETWORK_COMMANDS = ("tune", "predict", "demo", "select-epoch")
EXIT_USER_ERROR = 2
EXIT_SIGNAL_BASE = 128  # a command stopped by signal N exits 128 + N, as a shell reports it
EXIT_INTERRUPTED = EXIT_SIGNAL_BASE + 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as an ArmsegError, so it reaches the run like any mistake."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ArmsegError(message)


def build_parser(command: str | None = None) -> ArgumentParser:
    """The full parser; with `command`, only that command's module is imported."""
    parser = ArgumentParser(prog="armseg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"armseg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command",
                                     parser_class=ArgumentParser)
    for name, (module_name, summary) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        add_common_options(sub)
        if command is None or command == name:
            importlib.import_module(module_name).configure(sub)
    return parser


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="root of the OpenArm tree (default: data)")
    parser.add_argument("--experiment", default=None, metavar="NAME",
                        help="MLflow experiment for the runs (default: $MLFLOW_EXPERIMENT_NAME, else armseg)")


def main(argv: Sequence[str] | None = None) -> int:
    """`armseg [--version] <command> [flags]`."""
    argv = mlflow_spelling([*(sys.argv[1:] if argv is None else argv)])
    command = next((a for a in argv if a in COMMANDS), None)
    try:
        args = build_parser(command).parse_args(argv)
    except ArmsegError as error:
        return _fail(command, str(error))
    return _dispatch(args.command, args)


def run_command(command: str, argv: Sequence[str]) -> int:
    """One command with its own parser: what `entry_points/<command>.py` calls."""
    return main([command, *argv])


def _dispatch(command: str, args: argparse.Namespace) -> int:
    """Run one command: parameters checked first (no run, no Keras), then the store, then the work.

    SIGTERM and SIGHUP stop it as Ctrl-C does (a KILLED run, scratch folders removed), with
    128 + the signal's number as exit status.
    """
    try:
        with stopping_signals_interrupt():
            module = importlib.import_module(COMMANDS[command][0])
            check_names(args)
            if hasattr(module, "check"):  # parameter values wrong in themselves: refused before any run
                module.check(args)
            if hasattr(module, "prepare"):  # work that needs no store, started before MLflow loads
                module.prepare(args)
            from armseg.tracking.runs import configure_tracking

            configure_tracking(args.experiment)  # a store that does not answer fails before Keras loads
            if command in NETWORK_COMMANDS:
                load_keras()
            module.run(args)
    except ArmsegError as error:
        return _fail(command, str(error))
    except KeyboardInterrupt as error:
        _fail(command, str(error) or "interrupted")
        return EXIT_SIGNAL_BASE + getattr(error, "signum", signal.SIGINT)
    except OSError as error:  # a file or folder the system refused (permissions, a full disk)
        where = f"{error.filename}: " if error.filename else ""
        return _fail(command, f"{where}{error.strerror or error}")
    return 0


def check_names(args: argparse.Namespace) -> None:
    """Subjects are folder names under the data root, for every command that takes them: `../SubC`
    is a parameter wrong in itself (no run), never a path out of the root."""
    from armseg.io.tree import plain_name
    from armseg.params import split_list

    for subject in split_list(getattr(args, "subjects", None)):
        plain_name(subject, "--subjects")


def mlflow_spelling(argv: list[str]) -> list[str]:
    """`mlflow run -P base_filters=8` arrives as `--base_filters 8`: read it as `--base-filters 8`."""
    spelled = []
    for token in argv:
        if token.startswith("--") and "_" in token.split("=", 1)[0]:
            flag, equals, value = token.partition("=")
            token = flag.replace("_", "-") + equals + value
        spelled.append(token)
    return spelled


def _fail(command: str | None, message: str) -> int:
    """One line on stderr; under `mlflow run`, the run it opened ends FAILED saying why."""
    print(f"armseg {command or ''}: error: {message}".replace("  ", " "), file=sys.stderr)
    if os.environ.get("MLFLOW_RUN_ID"):  # only then is there a run to close (and MLflow to import)
        from armseg.tracking.runs import mark_env_run_failed

        mark_env_run_failed(message, command)
    return EXIT_USER_ERROR
