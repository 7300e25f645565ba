"""`armseg tune`: train's flags (any one given is held fixed) plus the study's own."""

from __future__ import annotations

import argparse

from armseg.errors import ArmsegError
from armseg.params import empty_as_none, typed_value
from armseg.train import command as train_command
from armseg.tune.space import DEFAULT_SPACE, read_space_text
from armseg.tune.study import DEFAULT_STORAGE, PRUNERS


def configure(parser: argparse.ArgumentParser) -> None:
    train_command.configure(parser)
    parser.add_argument("--n-trials", default="10",
                        help="trials the study should hold in total, over all workers (default: 10)")
    parser.add_argument("--timeout", default=None,
                        help="stop starting new trials after this many seconds (this worker)")
    parser.add_argument("--storage", default=DEFAULT_STORAGE,
                        help="Optuna RDB storage URL; share a PostgreSQL URL between workers "
                             "(default: %(default)s)")
    parser.add_argument("--study", default=None, help="study name (default: armseg-<group>)")
    parser.add_argument("--search-space", default=None,
                        help="YAML/JSON file or inline YAML/JSON narrowing or widening the search, e.g. "
                             "'{depth: [3, 4], learning_rate: {low: 1e-4, high: 1e-2, log: true}, "
                             f"loss: null}}' (searched by default: {', '.join(DEFAULT_SPACE)})")
    parser.add_argument("--pruner", default="median", choices=PRUNERS,
                        help="Optuna pruner on per-epoch val_mean_iou (default: %(default)s)")
    parser.add_argument("--sampler-seed", default=None, help="seed of Optuna's TPE sampler")


def run(args: argparse.Namespace) -> None:
    from armseg.tune.run import TuneRequest, tune

    if empty_as_none(args.resume):
        raise ArmsegError("--resume belongs to train; a tune study resumes by running tune again "
                          "with the same --storage and --study")
    values = train_command.values_from(args)
    group = values.pop("group")
    if group is None:
        raise ArmsegError("--group is required: the training group to tune on")
    fixed = {name: value for name, value in values.items() if value is not None}
    request = TuneRequest(
        group=group,
        n_trials=typed_value(args.n_trials, "n_trials", int) or 0,
        storage=empty_as_none(args.storage) or DEFAULT_STORAGE,
        study=empty_as_none(args.study),
        timeout=typed_value(args.timeout, "timeout", float),
        search_space=read_space_text(empty_as_none(args.search_space)),
        fixed=fixed,
        config=empty_as_none(args.config),
        section=empty_as_none(args.section),
        pruner=args.pruner,
        sampler_seed=typed_value(args.sampler_seed, "sampler_seed", int),
    )
    result = tune(request)
    print(f"[armseg tune] study {result.study_name}: {result.trials_run_here} trial(s) run by this worker; "
          f"parent MLflow run {result.parent_run_id}")
    if result.champion_version:
        print(f"[armseg tune] champion: models:/armseg-unet@champion = version {result.champion_version}; "
              f"best params {result.best_params}")
    print("[armseg tune] look at the study: optuna-dashboard " + request.storage)

