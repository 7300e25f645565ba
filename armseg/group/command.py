"""`armseg group`: flags in, `assemble_group()` called."""

from __future__ import annotations

import argparse

from armseg.errors import ArmsegError
from armseg.params import empty_as_none, parse_bool, split_list


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default=None, metavar="GROUP",
                        help="the new group's folder name, e.g. group_3_2 (it goes under "
                             "training_groups/group_3/)")
    parser.add_argument("--scans", nargs="*", default=None, metavar="SUB:TRIAL",
                        help="the scans, as subject:trial: SubA:trial1 (the trial number) or "
                             "SubA:trial1_0_fs (the trial folder), from the subjects' prediction_sources")
    parser.add_argument("--family", default=None, metavar="DIR",
                        help="the folder under training_groups that holds the group (default: the name "
                             "without its last _<k>, e.g. group_3)")
    parser.add_argument("--copy", nargs="?", const="true", default="false", metavar="BOOL",
                        help="copy the files instead of linking them (default: relative symbolic links)")


def run(args: argparse.Namespace) -> None:
    from armseg.group.run import assemble_group, parse_scan

    name = empty_as_none(args.name)
    if name is None:
        raise ArmsegError("--name: missing; give the new group's name, e.g. group_3_2")
    specs = [parse_scan(spec) for spec in split_list(args.scans)]
    if not specs:
        raise ArmsegError("--scans: missing; give the scans as SubA:trial1 SubB:trial11 ...")
    assemble_group(args.data_root or "data", name, specs, family=empty_as_none(args.family),
                   copy=parse_bool(args.copy, "copy"))
