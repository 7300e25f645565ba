"""`armseg table`: flags in, `write_table()` called, the files written printed."""

from __future__ import annotations

import argparse
from pathlib import Path

from armseg.measure.names import measure_metric_patterns
from armseg.tracking.contract import CLASS_AGREEMENT_METRIC, EVALUATE_METRIC_PATTERNS, OPENARM_METRICS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metric", default="mean_iou", metavar="NAME",
                        help=f"cell value: OpenArm's {' '.join(OPENARM_METRICS)}, or armseg's "
                             f"{CLASS_AGREEMENT_METRIC} {' '.join(EVALUATE_METRIC_PATTERNS)}, or a measure "
                             f"from `armseg measure`: {' '.join(measure_metric_patterns())} "
                             "(default: %(default)s)")
    parser.add_argument("--out", default="table.csv", metavar="PATH",
                        help="where to write; .csv, .md and .html with this stem (default: %(default)s)")


def run(args: argparse.Namespace) -> None:
    from armseg.table.run import write_table

    paths = write_table(args.metric, Path(args.out))
    print("[armseg table] wrote " + ", ".join(str(p) for p in paths.values()))
