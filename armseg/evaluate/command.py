"""`armseg evaluate`: flags in, `evaluate_subjects()` called, a per-model summary printed."""

from __future__ import annotations

import argparse

from armseg.model.choices import LABEL_PRESETS
from armseg.params import split_list
from armseg.tracking.contract import CLASS_AGREEMENT_METRIC, EVALUATE_METRIC_PATTERNS, OPENARM_METRICS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subjects", nargs="*", default=None, metavar="SUB",
                        help="subjects to score (default: every subject with predictions)")
    parser.add_argument("--models", nargs="*", default=None, metavar="M",
                        help="predictions folders (group_1_1, armseg-unet-v3, registration-trial1) "
                             "or model URIs (default: every folder under predictions/)")
    parser.add_argument("--metrics", nargs="*", default=None, metavar="NAME",
                        help=f"metrics to log (default: all): OpenArm's {' '.join(OPENARM_METRICS)} "
                             f"(fractions, on raw values), {CLASS_AGREEMENT_METRIC} and, per structure of "
                             f"the model's map, {' '.join(EVALUATE_METRIC_PATTERNS)} (percent_* is recall)")
    parser.add_argument("--labels", default=None, metavar="PRESET",
                        help=f"score every model with this map ({', '.join(LABEL_PRESETS)}) instead of "
                             "its own (default: the model's, from its folder's sidecar, else from the "
                             "raw values its predictions hold)")
    parser.add_argument("--label-map", default=None, metavar="JSON",
                        help="like --labels, any map as JSON {class: [raw values]}, background first")


def run(args: argparse.Namespace) -> None:
    from armseg.evaluate.run import check_metrics, evaluate_subjects
    from armseg.io.labels import choose_label_map

    metrics = split_list(args.metrics) or None
    check_metrics(metrics)  # a bad name or map is refused before any run opens
    label_map = choose_label_map(args.labels, args.label_map)
    results = evaluate_subjects(args.data_root or "data", split_list(args.subjects) or None,
                                split_list(args.models) or None, metrics, label_map)
    summary = results.groupby("model", sort=False).mean(numeric_only=True)
    print(summary.to_string(float_format=lambda value: f"{value:.3f}"))
    print(f"[armseg evaluate] {len(results)} (model, scan) runs; `armseg table --metric mean_iou` "
          "pivots them")
