"""`armseg table`: flags in, `write_table()` called, the files written printed."""

from __future__ import annotations

import argparse
from pathlib import Path

from armseg.params import parse_bool, split_list


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metric", nargs="+", default=["mean_iou"], metavar="NAME",
                        help="one or more metrics, each a block of rows: any metric an evaluate or measure "
                             "run logged, e.g. mean_iou dice_biceps hd95_biceps (default: mean_iou)")
    parser.add_argument("--out", default="table.csv", metavar="PATH",
                        help="where to write; .csv, .md, .tex, .html, .png and _runs.csv with this stem "
                             "(default: %(default)s)")
    parser.add_argument("--all-data-roots", nargs="?", const="true", default="false", metavar="BOOL",
                        help="table the runs of every data root, each root's scans in their own columns "
                             "(default: only the runs of --data-root)")


def prepare(args: argparse.Namespace) -> None:
    """Start the heat-map helper now: it loads matplotlib while this process loads MLflow."""
    from armseg.table.render import Renderer

    args.renderer = Renderer.start()


def run(args: argparse.Namespace) -> None:
    from armseg.table.run import write_table

    renderer = getattr(args, "renderer", None)
    try:
        all_roots = parse_bool(args.all_data_roots, "all_data_roots")
        paths = write_table(split_list(args.metric), Path(args.out), data_root=args.data_root or "data",
                            all_data_roots=all_roots, renderer=renderer)
    finally:
        if renderer is not None:
            renderer.close()
    print("[armseg table] wrote " + ", ".join(str(p) for p in paths.values()))
