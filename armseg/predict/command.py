"""`armseg predict`: flags in, `predict_subjects()` called, where the predictions went printed."""

from __future__ import annotations

import argparse

from armseg.errors import ArmsegError
from armseg.model.choices import (
    DEFAULT_FILL_HOLES,
    DEFAULT_LARGEST_COMPONENT,
    DEFAULT_SLICE_VOTE,
    DEFAULT_TTA,
)
from armseg.params import parse_bool, split_list, typed_value
from armseg.predict.names import FORMS
from armseg.predict.volume import DEFAULT_BATCH_SIZE, NONFINITE_CHOICES


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs="+", required=True, metavar="M",
                        help=f"one or more models: {', '.join(FORMS)}")
    parser.add_argument("--subjects", nargs="*", default=None, metavar="SUB",
                        help="subjects to predict, e.g. SubB SubF (default: every subject under "
                             "--data-root with a prediction_sources folder)")
    parser.add_argument("--overwrite", nargs="?", const="true", default="false", metavar="BOOL",
                        help="replace existing predictions (default: keep them)")
    parser.add_argument("--batch-size", default=str(DEFAULT_BATCH_SIZE), metavar="N",
                        help="slices per network call (default: %(default)s)")
    parser.add_argument("--tta", nargs="?", const="true", default=str(DEFAULT_TTA).lower(), metavar="BOOL",
                        help="average each slice with its left-right mirror image (default: %(default)s)")
    parser.add_argument("--largest-component", nargs="?", const="true",
                        default=str(DEFAULT_LARGEST_COMPONENT).lower(), metavar="BOOL",
                        help="keep only each structure's largest 3-D connected component "
                             "(default: %(default)s)")
    parser.add_argument("--fill-holes", nargs="?", const="true", default=str(DEFAULT_FILL_HOLES).lower(),
                        metavar="BOOL", help="in each slice, give a structure the background it encloses "
                                             "(default: %(default)s)")
    parser.add_argument("--slice-vote", default=str(DEFAULT_SLICE_VOTE), metavar="N",
                        help="each voxel takes the class most common in a window of N slices along the arm "
                             "centred on it; 1 = off (default: %(default)s)")
    parser.add_argument("--nonfinite", default="error", metavar="WHAT",
                        help="NaN or infinite voxels in a scan: error (stop, naming the scan and the count) "
                             "or replace (by 0; the count is logged per scan) (default: %(default)s)")


def check(args: argparse.Namespace) -> None:
    """The parameters typed and checked before Keras loads or a run opens (README "Commands")."""
    args.overwrite = parse_bool(args.overwrite, "overwrite")
    args.batch_size = typed_value(args.batch_size, "batch_size", int, DEFAULT_BATCH_SIZE)
    if args.batch_size < 1:
        raise ArmsegError(f"--batch-size: must be at least 1, got {args.batch_size}")
    if args.nonfinite not in NONFINITE_CHOICES:
        raise ArmsegError(f"--nonfinite: {args.nonfinite!r} is not one of {', '.join(NONFINITE_CHOICES)}")
    args.tta = parse_bool(args.tta, "tta")
    args.largest_component = parse_bool(args.largest_component, "largest_component")
    args.fill_holes = parse_bool(args.fill_holes, "fill_holes")
    args.slice_vote = typed_value(args.slice_vote, "slice_vote", int, DEFAULT_SLICE_VOTE)
    if not 1 <= args.slice_vote <= 255 or args.slice_vote % 2 == 0:
        raise ArmsegError(f"--slice-vote: must be an odd number of slices from 1 (off) to 255, "
                          f"got {args.slice_vote}")


def run(args: argparse.Namespace) -> None:
    from armseg.predict.run import Refinements, predict_subjects

    check(args)
    written = predict_subjects(args.data_root or "data", split_list(args.model),
                               split_list(args.subjects) or None, overwrite=args.overwrite,
                               batch_size=args.batch_size, nonfinite=args.nonfinite,
                               refine=Refinements(tta=args.tta, largest_component=args.largest_component,
                                                  fill_holes=args.fill_holes, slice_vote=args.slice_vote))
    folders = sorted({str(path.parent) for path in written})
    print(f"[armseg predict] {len(written)} predictions in: " + ", ".join(folders))
