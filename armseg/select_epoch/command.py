"""`armseg select-epoch`: flags in, `select_epoch()` called, the new version printed."""

from __future__ import annotations

import argparse

from armseg.errors import ArmsegError
from armseg.params import empty_as_none, typed_value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default=None, metavar="RUN_ID",
                        help="the train run (trained with --ckpt-n-epochs) whose epoch to register")
    parser.add_argument("--epoch", default=None, metavar="N",
                        help="the epoch, counted from 1 as the run's metrics count them")


def run(args: argparse.Namespace) -> None:
    from armseg.select_epoch.run import select_epoch

    run_id = empty_as_none(args.run)
    epoch = typed_value(args.epoch, "epoch", int)
    if run_id is None or epoch is None:
        raise ArmsegError(f"--{'run' if run_id is None else 'epoch'}: missing; give --run RUN_ID --epoch N")
    if epoch < 1:
        raise ArmsegError(f"--epoch: {epoch} is not an epoch (they are counted from 1)")
    selected = select_epoch(run_id.strip(), epoch)
    print(f"[armseg select-epoch] epoch {epoch} of run {run_id}: {selected.model_uri} "
          f"(`armseg predict --model {selected.model_uri}`)")
