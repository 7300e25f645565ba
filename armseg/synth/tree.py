"""A complete synthetic OpenArm tree (SPEC section 2) of phantom scans with exact labels.

    <out>/Sub<X>/all_nifti/trial<N>_<angle>_<load>_volume.nii
    <out>/Sub<X>/prediction_sources/<trial>/<trial>_volume.nii + <trial>_seg.nii  (ground truth)
    <out>/Sub<X>/predictions/                                                      (empty)
    <out>/training_groups/group_<j>/group_<j>_<k>/<trial>/<trial>_volume.nii + _seg.nii
    <out>/synth.json                                                   (what was written, why)

Subjects are SubA, SubB, ...; training groups draw only on the subjects before the last, and
the last subject is the held-out test subject that no group has seen. In a group, scans of the
first subject keep OpenArm's names (`trial1_0_fs`); scans of other training subjects carry the
subject (`trial1_0_fs_SubB`) so two subjects' trials never share a folder name.

Trials follow OpenArm's numbering: elbow angles 0/30/60/90 degrees, five loads each (trial
1-5 at 0 degrees, 6-10 at 30, ...), loads `fs` fully supported, `gc` gravity compensated and
`p1`/`p3`/`p5` held weights. Every scan has its own random stream derived from (seed, subject,
trial), so the same seed gives byte-identical files whatever else is asked for.
"""

from __future__ import annotations

import json
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from armseg.errors import ArmsegError
from armseg.io.atomic import write_bytes_atomic
from armseg.synth.phantom import field_of_view, sample_subject, synth_scan

MIN_SIZE = 32
LOAD_LEVELS = {"fs": 0.0, "gc": 0.15, "p1": 0.3, "p3": 0.5, "p5": 0.75}  # biceps contraction


@dataclass(frozen=True)
class Trial:
    """One OpenArm trial: its number, elbow angle (degrees) and load code."""

    number: int
    angle: int
    load: str

    @property
    def name(self) -> str:
        return f"trial{self.number}_{self.angle}_{self.load}"

    @property
    def contraction(self) -> float:
        return LOAD_LEVELS[self.load]


DEFAULT_TRIALS = (Trial(1, 0, "fs"), Trial(6, 30, "fs"), Trial(7, 30, "gc"), Trial(10, 30, "p5"),
                  Trial(11, 60, "fs"), Trial(16, 90, "fs"))

GroupMembers = Sequence[tuple[int, str]]  # (subject index, trial name)


def default_groups(subjects: int) -> dict[str, list[tuple[int, str]]]:
    """OpenArm-like groups: by elbow angle, by load, and (given two training subjects) mixed."""
    groups = {
        "group_1_1": [(0, "trial1_0_fs"), (0, "trial11_60_fs")],
        "group_1_2": [(0, t) for t in ("trial1_0_fs", "trial6_30_fs", "trial11_60_fs",
                                       "trial16_90_fs")],
        "group_2_1": [(0, t) for t in ("trial6_30_fs", "trial7_30_gc", "trial10_30_p5")],
    }
    if subjects >= 3:
        groups["group_3_1"] = [(0, "trial1_0_fs"), (0, "trial16_90_fs"), (1, "trial6_30_fs"),
                               (1, "trial11_60_fs")]
    return groups


def subject_name(index: int) -> str:
    return f"Sub{string.ascii_uppercase[index]}"


def subject_names(subjects: int | Sequence[str]) -> list[str]:
    """`3` -> SubA, SubB, SubC; a list of names is kept as given (in order, the last held out)."""
    if isinstance(subjects, int):
        if subjects < 2 or subjects > 26:
            raise ArmsegError(f"--subjects must be between 2 and 26 (training subjects plus one "
                              f"held-out test subject), got {subjects}")
        return [subject_name(index) for index in range(subjects)]
    names = [str(name) for name in subjects]
    if len(names) < 2:
        raise ArmsegError(f"--subjects needs at least two subjects (training subjects plus one held-out "
                          f"test subject), got {' '.join(names) or 'none'}")
    for name in names:
        if not name.lower().startswith("sub") or len(name) < 4 or "/" in name or name.startswith("."):
            raise ArmsegError(f"--subjects {name}: subject folders are named Sub<X> (SubA, Sub1)")
    if len(set(names)) != len(names):
        raise ArmsegError(f"--subjects: a name is given twice ({' '.join(names)})")
    return names


@dataclass
class SynthSummary:
    """What `write_tree` wrote; `describe()` is the text a README or a log shows."""

    root: Path
    subjects: list[str]
    training_subjects: list[str]
    test_subject: str
    groups: dict[str, list[str]]
    trials: list[str]
    size: tuple[int, int]
    slices: int
    spacing_mm: tuple[float, float, float]
    seed: int
    scans: int = 0
    seconds: float = 0.0

    @property
    def seconds_per_scan(self) -> float:
        return self.seconds / self.scans if self.scans else 0.0

    def scan_folder(self, subject: str, trial: str) -> Path:
        return self.root / subject / "prediction_sources" / trial

    def describe(self) -> str:
        groups = "; ".join(f"{name}: {', '.join(members)}" for name, members in self.groups.items())
        rows, cols = self.size
        return (
            f"Synthetic OpenArm tree (seed {self.seed}): subjects "
            f"{', '.join(self.subjects)}, each with trials {', '.join(self.trials)}; scans are "
            f"{rows}x{cols}x{self.slices} voxels of "
            f"{' x '.join(f'{s:.3g}' for s in self.spacing_mm)} mm. Training groups use only "
            f"{', '.join(self.training_subjects)} ({groups}); {self.test_subject} is the held-out "
            f"test subject no group contains. Raw labels: 7 humerus, 52 biceps, 8 skin, "
            f"51 subcutaneous fat, 53 brachialis, 9 other muscle, 45 brachial artery, "
            f"0 background and acoustic shadow."
        )

    def to_json(self) -> dict:
        data = asdict(self)
        # Timing and location vary run to run; the file stays byte-identical per seed.
        data.pop("seconds")
        data.pop("root")
        data["description"] = self.describe()
        return data


def validate(out: Path, seed: int, size: Sequence[int], slices: int) -> None:
    """User mistakes as one sentence naming the parameter."""
    if seed < 0:
        raise ArmsegError(f"--seed must be a non-negative integer, got {seed}")
    if len(size) != 2 or min(size) < MIN_SIZE:
        raise ArmsegError(f"--size must be two integers (rows, columns), each at least "
                          f"{MIN_SIZE}, got {' '.join(str(s) for s in size)}")
    if slices < 1:
        raise ArmsegError(f"--slices must be at least 1, got {slices}")
    if out.exists() and not out.is_dir():
        raise ArmsegError(f"--out {out} is an existing file, not a folder")


def _check_groups(groups: Mapping[str, GroupMembers], subjects: int,
                  trials: Sequence[Trial]) -> None:
    names = {t.name for t in trials}
    for group, members in groups.items():
        for subject, trial in members:
            if not 0 <= subject < subjects - 1:
                raise ArmsegError(f"group {group}: subject index {subject} is not a training "
                                  f"subject (0..{subjects - 2}; the last one is held out)")
            if trial not in names:
                raise ArmsegError(f"group {group}: trial {trial} is not among the synthesised "
                                  f"trials ({', '.join(sorted(names))})")


def scan_affine(size: tuple[int, int], slices: int) -> np.ndarray:
    """Voxel-to-mm: depth, lateral and along-arm spacing, centred laterally and along the arm."""
    fov = field_of_view(size, slices)
    spacing = fov.spacing
    affine = np.diag([*spacing, 1.0])
    affine[1, 3] = -fov.width_mm / 2 + spacing[1] / 2
    affine[2, 3] = -(slices - 1) / 2 * spacing[2]
    return affine


def nifti_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """A uint8 .nii in memory, so it can be written atomically."""
    image = nib.Nifti1Image(np.asarray(array, dtype=np.uint8), affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return image.to_bytes()


def _scan_rng(seed: int, *key: int) -> np.random.Generator:
    """Independent streams: tag 0 = a subject's anatomy, tag 1 = one trial's scan."""
    return np.random.default_rng([seed, *key])


def render_trial(seed: int, subject: int, trial: Trial, size: tuple[int, int], slices: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(volume, labels) of one subject's trial, fully determined by the seed and the names."""
    anatomy = sample_subject(_scan_rng(seed, 0, subject))
    rng = _scan_rng(seed, 1, subject, trial.number)
    return synth_scan(size, slices, anatomy, trial.angle, trial.contraction, rng)


def _write_subject(root: Path, subject: int, name: str, seed: int, size: tuple[int, int], slices: int,
                   trials: Sequence[Trial], affine: np.ndarray,
                   progress: Callable[[str], None] | None) -> float:
    base = root / name
    (base / "predictions").mkdir(parents=True, exist_ok=True)
    spent = 0.0
    for trial in trials:
        start = time.perf_counter()
        volume, labels = render_trial(seed, subject, trial, size, slices)
        spent += time.perf_counter() - start
        volume_bytes = nifti_bytes(volume, affine)
        write_bytes_atomic(base / "all_nifti" / f"{trial.name}_volume.nii", volume_bytes)
        folder = base / "prediction_sources" / trial.name
        write_bytes_atomic(folder / f"{trial.name}_volume.nii", volume_bytes)
        write_bytes_atomic(folder / f"{trial.name}_seg.nii", nifti_bytes(labels, affine))
        if progress is not None:
            progress(f"synth: {name} {trial.name} {size[0]}x{size[1]}x{slices} "
                     f"({time.perf_counter() - start:.1f} s)")
    return spent


def group_folder_name(subject: int, trial: str, names: Sequence[str]) -> str:
    """The first subject's scans keep OpenArm's names; others carry their subject."""
    return trial if subject == 0 else f"{trial}_{names[subject]}"


def _write_group(root: Path, group: str, members: GroupMembers, names: Sequence[str]) -> list[str]:
    family = group.rsplit("_", 1)[0] if group.count("_") >= 2 else group
    folders = []
    for subject, trial in members:
        name = group_folder_name(subject, trial, names)
        source = root / names[subject] / "prediction_sources" / trial
        target = root / "training_groups" / family / group / name
        for kind in ("volume", "seg"):
            data = (source / f"{trial}_{kind}.nii").read_bytes()
            write_bytes_atomic(target / f"{name}_{kind}.nii", data)
        folders.append(name)
    if len(set(folders)) != len(folders):
        raise ArmsegError(f"group {group}: the same scan is listed twice")
    return folders


def write_tree(out: Path | str, subjects: int | Sequence[str] = 3, seed: int = 0,
               size: tuple[int, int] = (256, 256), slices: int = 100,
               groups: Mapping[str, GroupMembers] | None = None,
               trials: Sequence[Trial] = DEFAULT_TRIALS,
               progress: Callable[[str], None] | None = print) -> SynthSummary:
    """Write every subject's scans, the training groups and `synth.json` under `out`.

    Existing files of the same names are replaced (atomically); nothing else is touched.
    `subjects` is a count (SubA, SubB, ...) or the subjects' folder names, the last held out.
    `groups` maps a group name to (subject index, trial name) pairs; by default
    `default_groups(count)`. `progress` gets one line per scan (None for silence).
    """
    out = Path(out)
    size = (int(size[0]), int(size[1]))
    names = subject_names(subjects)
    validate(out, seed, size, slices)
    groups = default_groups(len(names)) if groups is None else groups
    _check_groups(groups, len(names), trials)
    affine = scan_affine(size, slices)
    spent = sum(_write_subject(out, index, name, seed, size, slices, trials, affine, progress)
                for index, name in enumerate(names))
    written = {name: _write_group(out, name, members, names) for name, members in groups.items()}
    training = sorted({names[s] for members in groups.values() for s, _ in members})
    spacing = tuple(float(abs(affine[i, i])) for i in range(3))
    summary = SynthSummary(
        root=out, subjects=names, training_subjects=training, test_subject=names[-1], groups=written,
        trials=[t.name for t in trials], size=size, slices=slices, spacing_mm=spacing, seed=seed,
        scans=len(names) * len(trials), seconds=spent,
    )
    text = json.dumps(summary.to_json(), indent=2) + "\n"
    write_bytes_atomic(out / "synth.json", text.encode())
    return summary


def read_scan(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(volume, labels) back from a synthesised trial folder, e.g. for the montage."""
    trial = folder.name
    arrays = [np.asarray(nib.load(str(folder / f"{trial}_{kind}.nii")).dataobj)
              for kind in ("volume", "seg")]
    return arrays[0], arrays[1]
