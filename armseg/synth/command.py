"""`armseg synth`: flags in, `synthesize()` called."""

from __future__ import annotations

import argparse
from pathlib import Path

from armseg.params import empty_as_none, parse_size, split_list, typed_value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None,
                        help="root of the OpenArm tree to write (default: --data-root, i.e. data)")
    parser.add_argument("--subjects", nargs="+", default=["3"], metavar="SUB",
                        help="subject folder names (SubA SubB SubC), or how many to name SubA, SubB, ...; "
                             "the last is held out for testing (default: 3)")
    parser.add_argument("--seed", default="0",
                        help="same seed, byte-identical files (default: %(default)s)")
    parser.add_argument("--size", nargs="+", default=["256", "256"], metavar="N",
                        help="in-plane size: rows (depth) and columns (lateral), each >= 32 "
                             "(default: 256 256)")
    parser.add_argument("--slices", default="100",
                        help="slices along the arm, 1 mm apart (default: %(default)s)")
    parser.add_argument("--montage", default=None,
                        help="PNG of the test subject's first scan (default: <out>/montage.png)")


def subjects_value(values: object) -> int | list[str]:
    """`--subjects 3` is a count; `--subjects SubA SubB` are the names."""
    items = split_list(values)
    if len(items) == 1 and items[0].lstrip("-").isdigit():
        return int(items[0])
    return items


def run(args: argparse.Namespace) -> None:
    from armseg.synth.run import synthesize

    out = Path(empty_as_none(args.out) or args.data_root or "data")
    montage = empty_as_none(args.montage)
    synthesize(out, subjects=subjects_value(args.subjects), seed=typed_value(args.seed, "seed", int) or 0,
               size=parse_size(args.size), slices=typed_value(args.slices, "slices", int) or 100,
               montage=Path(montage) if montage else None)
