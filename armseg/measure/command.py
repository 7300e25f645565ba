"""`armseg measure`: arguments in, one call of `measure_subjects` (see `armseg.measure.run`)."""

from __future__ import annotations

import argparse

from armseg.measure.names import GROUND_TRUTH, MEASURES
from armseg.measure.shapes import DEFAULT_DEPTH_AXIS, DEFAULT_SLICE_AXIS, ScanAxes
from armseg.measure.sources import LABEL_PRESETS, choose_label_map
from armseg.params import empty_as_none, split_list, typed_value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subjects", nargs="*", default=None, metavar="SUB",
                        help="subjects to measure (default: every subject with prediction_sources)")
    parser.add_argument("--models", nargs="*", default=None, metavar="M",
                        help="predictions folders or model URIs to measure besides the ground truth "
                             "(default: every folder under predictions/)")
    parser.add_argument("--structures", nargs="*", default=None, metavar="NAME",
                        help="structures of the label map to measure (default: every foreground class)")
    parser.add_argument("--labels", default=None, metavar="PRESET",
                        help=f"label map preset: {', '.join(LABEL_PRESETS)} (default: openarm)")
    parser.add_argument("--label-map", default=None, metavar="JSON",
                        help="label map as JSON {class: [raw values]}, background first "
                             "(instead of --labels)")
    parser.add_argument("--deformation-source", default=GROUND_TRUTH, metavar="SOURCE",
                        help="whose measures the deformation summary shows: ground_truth or a model "
                             "folder (default: %(default)s)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder for measures.csv, agreement.* and deformation.* "
                             "(default: <data-root>/measures)")
    parser.add_argument("--depth-axis", default=str(DEFAULT_DEPTH_AXIS), metavar="AXIS",
                        help="array axis pointing away from the probe (default: %(default)s, rows)")
    parser.add_argument("--slice-axis", default=str(DEFAULT_SLICE_AXIS), metavar="AXIS",
                        help="array axis along the arm (default: %(default)s)")
    parser.epilog = f"Measures per structure: {', '.join(MEASURES)}."


def run(args: argparse.Namespace) -> None:
    from armseg.measure.run import measure_subjects

    axes = ScanAxes(typed_value(args.depth_axis, "depth_axis", int, DEFAULT_DEPTH_AXIS),
                    typed_value(args.slice_axis, "slice_axis", int, DEFAULT_SLICE_AXIS))
    result = measure_subjects(
        args.data_root or "data", split_list(args.subjects) or None, split_list(args.models) or None,
        split_list(args.structures) or None,
        label_map=choose_label_map(empty_as_none(args.labels), empty_as_none(args.label_map)),
        deformation_source=empty_as_none(args.deformation_source) or GROUND_TRUTH, out=args.out or None,
        axes=axes)
    print(f"[armseg measure] {len(result.measures)} (source, scan) runs; files: "
          + ", ".join(str(path) for path in result.files.values()))
