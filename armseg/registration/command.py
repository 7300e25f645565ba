"""`armseg register`: flags in, the settings built once, the pair or the batch form called.

    armseg register --fixed F.nii --moving M.nii --moving-seg M_seg.nii --out F_seg.nii
    armseg register --subjects SubB --atlas trial1_0_fs
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from armseg.errors import ArmsegError
from armseg.io.labels import DEFAULT_LABEL_MAP, choose_label_map
from armseg.model.choices import LABEL_PRESETS
from armseg.params import empty_as_none, parse_bool, split_list, typed_list, typed_value
from armseg.registration.settings import (
    AUTO_SHRINK,
    DEFAULT_ITERATIONS,
    INIT_MODES,
    MIN_COARSE_PIXELS,
    NO_STAGES,
    STAGES,
    RegistrationSettings,
)

_DEFAULTS = RegistrationSettings()
PAIR_FLAGS = ("fixed", "moving", "moving_seg", "out")


def configure(parser: argparse.ArgumentParser) -> None:
    pair = parser.add_argument_group("one pair of files")
    pair.add_argument("--fixed", default="", metavar="F", help="the scan to segment (.nii, .nii.gz, .mha)")
    pair.add_argument("--moving", default="", metavar="M", help="the segmented scan (the atlas)")
    pair.add_argument("--moving-seg", default="", metavar="S", help="the segmentation of --moving")
    pair.add_argument("--out", default="", metavar="O",
                      help="where the labels on F's grid go (.nii, .nii.gz)")
    batch = parser.add_argument_group("every scan of some subjects, as a model folder")
    batch.add_argument("--atlas", default="", metavar="TRIAL",
                       help="the segmented atlas scan: a trial folder path or a trial folder name "
                            "in the tree")
    batch.add_argument("--subjects", nargs="*", default=None, metavar="SUB",
                       help="subjects to segment (default: every subject with prediction_sources)")
    parser.add_argument("--overwrite", nargs="?", const="true", default="false", metavar="BOOL",
                        help="replace existing outputs (default: keep them)")
    how = parser.add_argument_group("registration")
    how.add_argument("--stages", nargs="*", default=" ".join(STAGES), metavar="STAGE",
                     help=f"ordered subset of: {' '.join(STAGES)}, or '{NO_STAGES}' to apply only "
                          "--A/--t (default: %(default)s)")
    how.add_argument("--A", nargs="*", default=None, metavar="a",
                     help="manual initial affine matrix: 9 numbers, row by row; with --t it maps a fixed "
                          "point x (LPS mm, as ITK) to the moving point A x + t (default: identity)")
    how.add_argument("--t", nargs="*", default=None, metavar="mm",
                     help="manual initial translation: 3 numbers (mm)")
    how.add_argument("--init", default=_DEFAULTS.init, metavar="MODE",
                     help=f"how the first linear stage is centred: {' or '.join(INIT_MODES)} "
                          "(default: %(default)s)")
    how.add_argument("--iterations", nargs="*", default=None, metavar="N",
                     help="iteration cap per resolution level: one for all stages or one per stage "
                          f"(default: {', '.join(f'{k} {v}' for k, v in DEFAULT_ITERATIONS.items())})")
    how.add_argument("--sampling", default=str(_DEFAULTS.sampling), metavar="FRACTION",
                     help="random fraction of fixed voxels the metric reads (default: %(default)s)")
    how.add_argument("--shrink-factors", nargs="*", default="", metavar="K",
                     help=f"pyramid shrink factor per level (default: {_spaced(AUTO_SHRINK)}, capped so the "
                          f"coarsest level keeps {MIN_COARSE_PIXELS} pixels across)")
    how.add_argument("--smoothing-sigmas", nargs="*", default="", metavar="S",
                     help="Gaussian sigma in voxels per level (default: half of each shrink factor, "
                          "0 at factor 1)")
    how.add_argument("--bins", default=str(_DEFAULTS.bins), metavar="N",
                     help="Mattes mutual information histogram bins (default: %(default)s)")
    how.add_argument("--bspline-grid-mm", default=str(_DEFAULTS.bspline_grid_mm), metavar="MM",
                     help="B-spline control point spacing in mm (default: %(default)s)")
    how.add_argument("--seed", default=str(_DEFAULTS.seed), metavar="N",
                     help="seed of the metric's random sampling (default: %(default)s)")
    how.add_argument("--labels", default="", metavar="PRESET",
                     help=f"the atlas segmentation's label map by preset ({', '.join(LABEL_PRESETS)}; "
                          "default: openarm); labels are carried over with their raw values either way")
    how.add_argument("--label-map", default="", metavar="JSON",
                     help='raw values the segmentation may hold, e.g. {"background": [0, 8], "humerus": [7], '
                          '"biceps": [52]} (default: OpenArm\'s)')


def _spaced(values: Sequence[float]) -> str:
    return " ".join(f"{v:g}" for v in values)


def run(args: argparse.Namespace) -> None:
    from armseg.registration.batch import register_subjects
    from armseg.registration.run import register_files

    settings = registration_settings(args)
    overwrite = parse_bool(args.overwrite, "overwrite")
    pair = {name: empty_as_none(getattr(args, name)) for name in PAIR_FLAGS}
    atlas = empty_as_none(args.atlas)
    subjects = split_list(args.subjects)
    if atlas is not None:
        given = [name for name, value in pair.items() if value is not None]
        if given:
            raise ArmsegError(f"--{given[0].replace('_', '-')}: not used with --atlas (the batch form writes "
                              "into the tree); give either --atlas or --fixed/--moving/--moving-seg/--out")
        register_subjects(args.data_root or "data", subjects, atlas, settings, overwrite=overwrite)
        return
    if subjects:
        raise ArmsegError("--subjects: needs --atlas, the segmented scan to register onto each "
                          "subject's scans")
    missing = [name for name, value in pair.items() if value is None]
    if missing:
        raise ArmsegError(f"--{missing[0].replace('_', '-')}: missing; give --fixed, --moving, "
                          "--moving-seg and --out (or --atlas and --subjects for whole subjects)")
    register_files(pair["fixed"], pair["moving"], pair["moving_seg"], pair["out"], settings,
                   overwrite=overwrite)


def registration_settings(args: argparse.Namespace) -> RegistrationSettings:
    """CLI/MLproject strings -> the one RegistrationSettings both forms use ('' = the default)."""
    stages = split_list(args.stages) or list(STAGES)
    if stages == [NO_STAGES]:
        stages = []
    elif NO_STAGES in stages:
        raise ArmsegError(f"--stages: '{NO_STAGES}' stands alone")
    label_map = choose_label_map(args.labels, args.label_map)
    return RegistrationSettings(
        stages=tuple(stages),
        A=typed_list(args.A, "A") or None,
        t=typed_list(args.t, "t") or None,
        iterations=tuple(typed_list(args.iterations, "iterations", int)),
        sampling=typed_value(args.sampling, "sampling", float, _DEFAULTS.sampling),
        shrink_factors=tuple(typed_list(args.shrink_factors, "shrink_factors", int)),
        smoothing_sigmas=tuple(typed_list(args.smoothing_sigmas, "smoothing_sigmas", float)),
        bins=typed_value(args.bins, "bins", int, _DEFAULTS.bins),
        bspline_grid_mm=typed_value(args.bspline_grid_mm, "bspline_grid_mm", float,
                                    _DEFAULTS.bspline_grid_mm),
        init=empty_as_none(args.init) or _DEFAULTS.init,
        seed=typed_value(args.seed, "seed", int, _DEFAULTS.seed),
        label_map=label_map or DEFAULT_LABEL_MAP,
    )
