"""`armseg augment`: flags in, `augment_group()` called."""

from __future__ import annotations

import argparse

from armseg.params import parse_bool, typed_list, typed_value

DEFAULT_DEGREES = ("-10", "10")
DEFAULT_ALPHAS = ("4",)
DEFAULT_SIGMAS = ("10",)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", required=True,
                        help="training group to augment, by folder name (e.g. group_1_2)")
    parser.add_argument("--degrees", nargs="*", default=list(DEFAULT_DEGREES), metavar="DEG",
                        help="rotation angles about the long axis, |deg| <= 180; none skips rotation "
                             f"(default: {' '.join(DEFAULT_DEGREES)})")
    parser.add_argument("--alphas", nargs="*", default=list(DEFAULT_ALPHAS), metavar="PX",
                        help="elastic RMS displacements in pixels, >= 0; none skips elastic "
                             f"(default: {' '.join(DEFAULT_ALPHAS)})")
    parser.add_argument("--sigmas", nargs="*", default=list(DEFAULT_SIGMAS), metavar="PX",
                        help="elastic smoothness (Gaussian sigma) in pixels, > 0; every alpha is combined "
                             f"with every sigma; none skips elastic (default: {' '.join(DEFAULT_SIGMAS)})")
    parser.add_argument("--seed", default="0",
                        help="seed of the elastic fields: the same seed writes identical files "
                             "(default: %(default)s)")
    parser.add_argument("--overwrite", nargs="?", const="true", default="false", metavar="BOOL",
                        help="replace existing augmented folders (default: skip and report them)")
    parser.add_argument("--slice-axis", default="2",
                        help="array axis along the arm (the rotation axis) (default: %(default)s)")
    parser.add_argument("--slice-sigma", default="0",
                        help="elastic smoothing along the arm in slices; 0 deforms each slice "
                             "independently (default: %(default)s)")


def run(args: argparse.Namespace) -> None:
    from armseg.augment.run import augment_group

    augment_group(
        args.data_root or "data", args.group,
        degrees=typed_list(args.degrees, "degrees", float),
        alphas=typed_list(args.alphas, "alphas", float),
        sigmas=typed_list(args.sigmas, "sigmas", float),
        seed=typed_value(args.seed, "seed", int, 0),
        overwrite=parse_bool(args.overwrite, "overwrite"),
        slice_axis=typed_value(args.slice_axis, "slice_axis", int, 2),
        slice_sigma=typed_value(args.slice_sigma, "slice_sigma", float, 0.0),
    )
