"""The `import` stage: an OpenArm 2.0 download turned into the tree armseg (and OpenArm) read.

One MLflow run per import: the plan (`import_plan.csv`: every scan, where it went, whether it
was written, kept or only planned) and the files left out (`not_placed.csv`, with the reason)
are its artifacts. MHA volumes are converted to NIfTI on their own grid (the ITK geometry,
LPS, becomes the NIfTI affine, RAS, through `io/itk.py`); NIfTI ground truth is copied byte for
byte (a `.nii.gz` is unpacked). Every file is written atomically; an existing one is kept unless
`overwrite`.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np

from armseg.errors import ArmsegError
from armseg.io.atomic import write_bytes_atomic
from armseg.io.images import Image, nifti_bytes, read_image
from armseg.io.labels import KNOWN_MISLABELS, OPENARM_RAW_VALUES
from armseg.openarm_import.plan import ImportPlan, Placement, Refusal, image_suffix, plan_import
from armseg.tracking.contract import DATA_ROOT_TAG
from armseg.tracking.runs import stage_run

STAGE = "import"


@dataclass
class ImportResult:
    """What an import did (or, with dry_run, would do)."""

    plan: ImportPlan
    records: list[dict[str, object]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for record in self.records if record["status"] == status)


def import_download(source: Path | str, data_root: Path | str, subjects: list[str] | None = None,
                    dry_run: bool = False, overwrite: bool = False, slice_axis: int = 2) -> ImportResult:
    """Place every scan of the downloaded subject folders under `data_root`; report what cannot be."""
    if slice_axis not in (0, 1, 2):
        raise ArmsegError(f"--slice-axis: must be 0, 1 or 2, got {slice_axis}")
    source, root = Path(source), Path(data_root)
    params = {"source": str(source), "data_root": str(root), "subjects": subjects or "all",
              "dry_run": dry_run, "overwrite": overwrite, "slice_axis": slice_axis}
    with stage_run(STAGE, params=params, tags={DATA_ROOT_TAG: str(root)}, run_name=f"import-{source.name}"):
        result = ImportResult(plan_import(source, subjects, slice_axis))
        if not result.plan.placements and not result.plan.refused:
            raise ArmsegError(f"--source {source}: no files in the subjects' volumes/ or ground_segs/")
        for placement in result.plan.placements:
            record = _place(placement, root, dry_run, overwrite, result.plan)
            if record is not None:
                result.records.append(record)
        for refusal in result.plan.refused:
            print(f"[armseg import] not placed: {refusal.path}: {refusal.reason}")
        _log(result, dry_run)
    verb = "would write" if dry_run else "wrote"
    print(f"[armseg import] {verb} {result.count('planned' if dry_run else 'written')} scans under {root}, "
          f"kept {result.count('kept')} existing, left out {len(result.plan.refused)} files (listed above)")
    return result


def _place(placement: Placement, root: Path, dry_run: bool, overwrite: bool,
           plan: ImportPlan) -> dict[str, object] | None:
    """Write one scan's files (or only describe them); a file that cannot be read becomes a refusal."""
    targets = placement.volume_targets(root)
    seg_target = placement.segmentation_target(root)
    wanted = [*targets, *([seg_target] if seg_target else [])]
    record = {"subject": placement.subject, "trial": placement.trial, "size_dir": placement.size_dir,
              "shape": "x".join(map(str, placement.shape)), "volume": str(placement.volume),
              "segmentation": str(placement.segmentation or ""), "folder": str(placement.folder(root))}
    truth = (f" + ground truth {placement.segmentation.name}" if placement.segmentation
             else " (no ground truth)")
    line = (f"{placement.subject} {placement.trial} ({placement.size_dir}, {record['shape']}): "
            f"{placement.volume.name}{truth} -> {placement.folder(root)}")
    if not overwrite and all(path.exists() for path in wanted):
        verb = "would keep" if dry_run else "kept"
        print(f"[armseg import] {verb} {line} (exists; --overwrite to replace)")
        return {**record, "status": "kept"}
    if dry_run:
        print(f"[armseg import] plan: {line}")
        return {**record, "status": "planned"}
    try:
        volume = _nifti(placement.volume)
        segmentation = _nifti(placement.segmentation) if placement.segmentation else None
    except ArmsegError as error:
        plan.refused.append(Refusal(placement.volume, str(error)))
        return None
    for path in targets:
        if overwrite or not path.exists():
            write_bytes_atomic(path, volume)
    if seg_target is not None and segmentation is not None and (overwrite or not seg_target.exists()):
        write_bytes_atomic(seg_target, segmentation)
        _note_unknown_labels(seg_target)
    print(f"[armseg import] wrote {line}")
    return {**record, "status": "written"}


def _nifti(path: Path) -> bytes:
    """The bytes of a .nii for any readable file: NIfTI as it is (unpacked), MHA converted on its grid."""
    suffix = image_suffix(path)
    if suffix == ".nii":
        return path.read_bytes()
    if suffix == ".nii.gz":
        return gzip.decompress(path.read_bytes())
    image = read_image(path) if suffix == ".mha" else _read_mhd(path)
    return nifti_bytes(np.asarray(image.array), image.affine)


def _read_mhd(path: Path) -> Image:
    """An .mhd header (+ its .raw) through the same ITK bridge as .mha."""
    from armseg.io.itk import read_mha  # SimpleITK loads only when there is an MHD to read

    try:
        array, affine = read_mha(path)
    except Exception as error:  # SimpleITK's RuntimeError: the file is named
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArmsegError(f"{path}: cannot be read as an image ({reason})") from error
    return Image(array=array, affine=affine, path=path)


def _note_unknown_labels(path: Path) -> None:
    """Ground truth with values outside OpenArm's set still imports; say what evaluate will need."""
    values = {int(v) for v in np.unique(np.asarray(read_image(path).array))}
    unknown = sorted(values - set(OPENARM_RAW_VALUES) - set(KNOWN_MISLABELS))
    if unknown:
        print(f"[armseg import] note: {path} holds label values {unknown} outside OpenArm's "
              f"{list(OPENARM_RAW_VALUES)}; evaluate it with a --label-map that names them")


def _log(result: ImportResult, dry_run: bool) -> None:
    import pandas as pd

    refused = [{"file": str(r.path), "reason": r.reason} for r in result.plan.refused]
    for name, rows in (("import_plan.csv", result.records), ("not_placed.csv", refused)):
        buffer = io.StringIO()
        pd.DataFrame.from_records(rows).to_csv(buffer, index=False)
        mlflow.log_text(buffer.getvalue(), name)
    mlflow.log_metrics({"scans_planned": float(len(result.plan.placements)),
                        "scans_written": float(0 if dry_run else result.count("written")),
                        "scans_kept": float(result.count("kept")),
                        "files_not_placed": float(len(result.plan.refused))})
