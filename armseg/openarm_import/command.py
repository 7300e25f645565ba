"""`armseg import`: flags in, `import_download()` called."""

from __future__ import annotations

import argparse

from armseg.errors import ArmsegError
from armseg.params import empty_as_none, parse_bool, split_list, typed_value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default=None, metavar="DIR",
                        help="the downloaded OpenArm 2.0 subject folders (Sub<x>/volumes/*_volume.mha, "
                             "Sub<x>/ground_segs/*), or one such Sub<x> folder")
    parser.add_argument("--subjects", nargs="*", default=None, metavar="SUB",
                        help="only these subject folders (default: every Sub<x> under --source)")
    parser.add_argument("--dry-run", nargs="?", const="true", default="false", metavar="BOOL",
                        help="print (and log) the plan, write nothing")
    parser.add_argument("--overwrite", nargs="?", const="true", default="false", metavar="BOOL",
                        help="replace files already in the tree (default: keep them)")
    parser.add_argument("--slice-axis", default="2", metavar="AXIS",
                        help="array axis along the arm; the others decide under_512/over_512 (default: 2)")


def run(args: argparse.Namespace) -> None:
    from armseg.openarm_import.run import import_download

    source = empty_as_none(args.source)
    if source is None:
        raise ArmsegError("--source: missing; give the folder holding the downloaded Sub<x> folders")
    import_download(source, args.data_root or "data", split_list(args.subjects) or None,
                    dry_run=parse_bool(args.dry_run, "dry_run"),
                    overwrite=parse_bool(args.overwrite, "overwrite"),
                    slice_axis=typed_value(args.slice_axis, "slice_axis", int, 2))
