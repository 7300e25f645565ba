"""`armseg evaluate`: flags in, `evaluate_subjects()` called, a per-model summary printed."""

from __future__ import annotations

import argparse

from armseg.params import split_list
from armseg.tracking.contract import EVALUATE_METRICS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subjects", nargs="*", default=None, metavar="SUB",
                        help="subjects to score (default: every subject with predictions)")
    parser.add_argument("--models", nargs="*", default=None, metavar="M",
                        help="predictions folders (group_1_1, armseg-unet-v3, registration-trial1) "
                             "or model URIs (default: every folder under predictions/)")
    parser.add_argument("--metrics", nargs="*", default=None, metavar="NAME",
                        help=f"metrics to log (default: all: {' '.join(EVALUATE_METRICS)}); "
                             "percent_* is recall, the share of the structure's reference voxels found")


def run(args: argparse.Namespace) -> None:
    from armseg.evaluate.run import evaluate_subjects

    results = evaluate_subjects(args.data_root or "data", split_list(args.subjects) or None,
                                split_list(args.models) or None, split_list(args.metrics) or None)
    summary = results.groupby("model", sort=False).mean(numeric_only=True)
    print(summary.to_string(float_format=lambda value: f"{value:.3f}"))
    print(f"[armseg evaluate] {len(results)} (model, scan) runs; `armseg table --metric mean_iou` "
          "pivots them")
