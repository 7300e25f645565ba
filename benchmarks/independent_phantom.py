"""A second phantom source, built apart from `armseg synth`, to score networks on scans nobody tuned for.

Its anatomy and image model differ from armseg's own phantom on purpose, so accuracy measured
here says how armseg's defaults carry to a source they never saw:

- anatomy: a lens-shaped biceps (two superellipse arcs meeting at the muscle's edges) with a
  bright central aponeurosis instead of armseg's two-headed ellipse; a brachialis band hugging
  the bone; a humerus drawn as a thick bright cortical arc over a dark marrow, labelled as the
  whole bone section; wavy skin and fat with random septa; a vein that can touch the biceps;
- image model: multiplicative Rayleigh speckle from complex Gaussian noise blurred by an
  anisotropic, depth-widening point-spread function, fibre streaks along a per-scan pennation
  angle, exponential attenuation with a scan-specific time-gain curve and gain offset, and a
  log compression whose dynamic range varies per scan;
- geometry: any (rows, columns) per scan, a depth of field of 36 to 46 mm (the probe's depth
  setting) so the pixel spacing differs from scan to scan, slices 0.4 to 0.7 mm apart; shapes
  drift smoothly along the arm; the bone stays inside the field, as a sonographer frames it.

`write_source(root, ...)` writes an OpenArm tree: one training group of scans from the first
subjects and held-out subjects whose scans (with ground truth) sit in `prediction_sources/`,
in `under_512/` or `over_512/` by width as OpenArm sorts them. Labels use OpenArm's raw values
(humerus 7, biceps 52, others as armseg's label map knows them).

    python benchmarks/independent_phantom.py /tmp/independent --seed 101
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

HUMERUS, BICEPS, BRACHIALIS, SKIN, FAT = 7, 52, 53, 8, 9  # raw values; 53/8/9 are background to armseg
TRAIN_SIZES = ((192, 256), (208, 272), (176, 240), (192, 224), (208, 256), (176, 272))
HELD_OUT_SIZES = ((192, 560), (176, 288), (224, 224), (192, 320), (208, 528), (192, 256))


@dataclass(frozen=True)
class ScanPlan:
    """What one scan is: who, its grid, its slices and its random stream."""

    subject: int
    trial: str
    rows: int
    cols: int
    slices: int
    seed: int


def _smooth_walk(rng: np.random.Generator, n: int, amplitude: float, width: float) -> np.ndarray:
    walk = gaussian_filter1d(rng.standard_normal(n + 40), width, mode="reflect")[20:20 + n]
    return amplitude * walk / (np.abs(walk).max() + 1e-6)


def _arm(rng: np.random.Generator, subject_rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per-slice anatomy in mm (lateral 0 = probe centre); subject sets the means, scan the drift."""
    s = subject_rng.uniform
    base = {"skin": s(1.0, 1.8), "fat": s(2.0, 8.0), "biceps_t": s(9.0, 16.0), "biceps_w": s(26.0, 44.0),
            "biceps_x": s(-5.0, 5.0), "brach_t": s(4.0, 9.0), "bone_r": s(7.5, 12.0), "bone_x": s(-6.0, 6.0),
            "vein_x": s(-14.0, 14.0), "vein_r": s(1.5, 3.0)}
    taper = np.linspace(-1, 1, n)
    along = {key: np.full(n, value) for key, value in base.items()}
    along["biceps_t"] = base["biceps_t"] * (1 - 0.25 * taper ** 2) + _smooth_walk(rng, n, 1.0, 15)
    along["biceps_w"] = base["biceps_w"] * (1 - 0.15 * taper ** 2) + _smooth_walk(rng, n, 2.0, 15)
    along["biceps_x"] = base["biceps_x"] + _smooth_walk(rng, n, 3.0, 20)
    along["bone_x"] = base["bone_x"] + _smooth_walk(rng, n, 2.0, 25)
    along["fat"] = base["fat"] + _smooth_walk(rng, n, 1.0, 20)
    along["vein_x"] = base["vein_x"] + _smooth_walk(rng, n, 4.0, 20)
    return along


def _frame(arm: dict[str, np.ndarray], depth_mm: float) -> dict[str, np.ndarray]:
    """Thin the fat, then the brachialis, where the bone would leave the field (2 mm margin)."""
    bottom = arm["skin"] + arm["fat"] + 0.3 + arm["biceps_t"] + arm["brach_t"] + 1.8 * arm["bone_r"]
    excess = np.maximum(bottom - (depth_mm - 2.0), 0.0)
    fat_cut = np.clip(excess, 0.0, np.maximum(arm["fat"] - 1.5, 0.0))
    brach_cut = np.clip(excess - fat_cut, 0.0, np.maximum(arm["brach_t"] - 1.5, 0.0))
    bone_scale = 1 - np.clip((excess - fat_cut - brach_cut) / (1.8 * arm["bone_r"]), 0.0, 0.4)
    return {**arm, "fat": arm["fat"] - fat_cut, "brach_t": arm["brach_t"] - brach_cut,
            "bone_r": arm["bone_r"] * bone_scale}


def _labels(arm: dict[str, np.ndarray], k: int, z: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Raw labels of slice k on the (z depth, x lateral) mm grid."""
    skin = arm["skin"][k] + 0.25 * np.sin(x / 6.0 + k * 0.05)
    fascia = skin + arm["fat"][k] + 0.02 * x ** 2 / 10.0
    top = fascia + 0.3
    width, thick, cx = arm["biceps_w"][k] / 2, arm["biceps_t"][k], arm["biceps_x"][k]
    u = np.clip(np.abs(x - cx) / width, 0, 1)
    inside_x = np.abs(x - cx) < width
    upper = top + thick * 0.35 * (1 - (1 - u ** 2.4) ** 0.6)
    lower = top + thick * (1 - u ** 2.6) ** 0.45
    labels = np.full(z.shape, FAT, dtype=np.uint8)
    labels[z < skin] = SKIN
    muscle = z >= fascia
    labels[muscle] = BRACHIALIS  # deeper muscle: background to armseg's default map
    labels[muscle & inside_x & (z >= upper) & (z <= lower)] = BICEPS
    bone_z = top + thick + arm["brach_t"][k] + arm["bone_r"][k]
    r = arm["bone_r"][k]
    dx, dz = x - arm["bone_x"][k], z - bone_z
    bone = (np.abs(dx / r) ** 2.2 + np.abs(dz / (0.8 * r)) ** 2.2) <= 1
    shadow = (np.abs(dx) < r) & (dz > 0)
    labels[shadow] = 0
    labels[bone] = HUMERUS
    vein = (x - arm["vein_x"][k]) ** 2 + (z - (top + thick * 0.8)) ** 2 <= arm["vein_r"][k] ** 2
    labels[vein & (labels != BICEPS) & muscle] = 0
    return labels


_REFLECTIVITY = {SKIN: 2.2, FAT: 0.45, BRACHIALIS: 0.9, BICEPS: 0.75, HUMERUS: 0.15, 0: 0.03}


def _echo(labels: np.ndarray, z: np.ndarray, x: np.ndarray, arm: dict[str, np.ndarray], k: int,
          rng: np.random.Generator, look: dict[str, float], mm: tuple[float, float]) -> np.ndarray:
    """One slice's B-mode envelope (float), before compression."""
    lut = np.zeros(256, dtype=np.float32)
    for value, reflect in _REFLECTIVITY.items():
        lut[value] = reflect
    reflect = lut[labels]
    # Bone: a bright cortex on the upper rim, dark marrow below it.
    bone = labels == HUMERUS
    rim = bone & ~np.roll(bone, -max(1, int(round(1.8 / mm[0]))), axis=0)
    top_rim = bone & ~np.roll(bone, max(1, int(round(2.2 / mm[0]))), axis=0)
    reflect[top_rim & ~rim] = 3.5
    reflect[rim & ~top_rim] = 0.2
    # Fibre streaks in muscle along the pennation angle; septa in fat; fascia lines.
    angle = look["pennation"]
    streak = np.sin((z * np.cos(angle) + x * np.sin(angle)) * 2 * np.pi / look["fibre_mm"]
                    + rng.uniform(0, 6.3))
    muscle = (labels == BICEPS) | (labels == BRACHIALIS)
    reflect[muscle] *= 1 + 0.45 * streak[muscle]
    edges = labels != np.roll(labels, 1, axis=0)
    edges |= labels != np.roll(labels, 1, axis=1)
    reflect[gaussian_filter(edges.astype(np.float32), 1.0) > 0.15] += look["fascia"]
    centre = (labels == BICEPS) & (np.abs(x - arm["biceps_x"][k]) < 0.8)
    reflect[centre] += 0.8
    sigma_z = look["psf_axial_mm"] / mm[0]
    sigma_x = look["psf_lateral_mm"] / mm[1] * (1 + 0.5 * z / z.max())  # widens with depth
    noise = rng.standard_normal(labels.shape) + 1j * rng.standard_normal(labels.shape)
    scatter = reflect * noise
    blurred = (gaussian_filter(scatter.real, (sigma_z, sigma_x.mean()))
               + 1j * gaussian_filter(scatter.imag, (sigma_z, sigma_x.mean())))
    envelope = np.abs(blurred)
    below_bone = np.cumsum(bone, axis=0) > 0
    envelope[below_bone & ~bone] *= 0.08
    attenuation = np.exp(-look["alpha"] * z) * (1 + look["tgc"] * z / z.max())
    return envelope * attenuation


def _compress(envelope: np.ndarray, look: dict[str, float]) -> np.ndarray:
    reference = np.percentile(envelope, 99.5) + 1e-9
    db = 20 * np.log10(envelope / reference + 1e-9) + look["gain_db"]
    image = (db + look["range_db"]) / look["range_db"] * 255
    return np.clip(image, 0, 255).astype(np.uint8)


def render(plan: ScanPlan, source_seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(volume, labels, spacing mm) of one scan, both (rows, cols, slices) uint8."""
    rng = np.random.default_rng([source_seed, plan.seed])
    subject_rng = np.random.default_rng([source_seed, 1000 + plan.subject])
    depth_mm = rng.uniform(36.0, 46.0)
    mm = (depth_mm / plan.rows, depth_mm / plan.rows * rng.uniform(0.95, 1.15), rng.uniform(0.4, 0.7))
    z = ((np.arange(plan.rows) + 0.5) * mm[0])[:, None] * np.ones((1, plan.cols))
    x = ((np.arange(plan.cols) - plan.cols / 2 + 0.5) * mm[1])[None, :] * np.ones((plan.rows, 1))
    arm = _frame(_arm(rng, subject_rng, plan.slices), depth_mm)
    look = {"pennation": rng.uniform(-0.5, 0.5), "fibre_mm": rng.uniform(0.8, 1.6),
            "fascia": rng.uniform(3.0, 6.0), "psf_axial_mm": rng.uniform(0.15, 0.3),
            "psf_lateral_mm": rng.uniform(0.3, 0.6), "alpha": rng.uniform(0.02, 0.06),
            "tgc": rng.uniform(0.0, 1.5), "gain_db": rng.uniform(-6.0, 6.0), "range_db": rng.uniform(45, 65)}
    volume = np.empty((plan.rows, plan.cols, plan.slices), dtype=np.uint8)
    labels = np.empty_like(volume)
    previous = None
    for k in range(plan.slices):
        labels[..., k] = _labels(arm, k, z, x)
        envelope = _echo(labels[..., k], z, x, arm, k, rng, look, mm)
        if previous is not None:  # neighbouring slices share part of their speckle
            envelope = 0.6 * envelope + 0.4 * previous
        previous = envelope
        volume[..., k] = _compress(envelope, look)
    return volume, labels, mm


def _save(array: np.ndarray, spacing: tuple[float, float, float], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array, np.diag([*spacing, 1.0]))
    image.header.set_xyzt_units("mm")
    nib.save(image, path)


def plans(train_scans: int, held_out_scans: int, slices: int, seed: int
          ) -> tuple[list[ScanPlan], list[ScanPlan]]:
    """Training scans from subjects 0-2, held-out scans from subjects 3-4 (never in training)."""
    train = [ScanPlan(i % 3, f"trial{i + 1}_0_fs", *TRAIN_SIZES[i % len(TRAIN_SIZES)], slices, seed * 100 + i)
             for i in range(train_scans)]
    held = [ScanPlan(3 + i % 2, f"trial{i + 1}_30_fs", *HELD_OUT_SIZES[i % len(HELD_OUT_SIZES)], slices,
                     seed * 100 + 50 + i) for i in range(held_out_scans)]
    return train, held


def write_source(root: Path, seed: int = 101, train_scans: int = 6, held_out_scans: int = 6,
                 slices: int = 40, group: str = "group_1_1") -> dict:
    """Write the tree (skipped when `root/source.json` says the same) and describe it."""
    description = {"seed": seed, "train_scans": train_scans, "held_out_scans": held_out_scans,
                   "slices": slices, "group": group, "generator": "independent_phantom v3"}
    record = root / "source.json"
    if record.exists() and json.loads(record.read_text()).get("request") == description:
        return json.loads(record.read_text())
    train, held = plans(train_scans, held_out_scans, slices, seed)
    scans = []
    for plan in train:
        volume, labels, mm = render(plan, seed)
        name = f"{plan.trial}_Sub{'PQRST'[plan.subject]}"
        folder = root / "training_groups" / group.rsplit("_", 1)[0] / group / name
        _save(volume, mm, folder / f"{name}_volume.nii")
        _save(labels, mm, folder / f"{name}_seg.nii")
        scans.append({"role": "train", "name": name, "shape": volume.shape, "spacing_mm": mm})
    for plan in held:
        volume, labels, mm = render(plan, seed)
        subject = f"Sub{'PQRST'[plan.subject]}"
        size = "over_512" if plan.cols > 512 else "under_512"
        folder = root / subject / "prediction_sources" / size / plan.trial
        _save(volume, mm, folder / f"{plan.trial}_volume.nii")
        _save(labels, mm, folder / f"{plan.trial}_seg.nii")
        scans.append({"role": "held_out", "subject": subject, "name": plan.trial, "shape": volume.shape,
                      "spacing_mm": mm, "folder": str(folder)})
    summary = {"request": description, "scans": scans}
    record.write_text(json.dumps(summary, indent=2, default=list))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--train-scans", type=int, default=6)
    parser.add_argument("--held-out-scans", type=int, default=6)
    parser.add_argument("--slices", type=int, default=40)
    args = parser.parse_args()
    summary = write_source(args.root, args.seed, args.train_scans, args.held_out_scans, args.slices)
    for scan in summary["scans"]:
        print(scan["role"], scan["name"], scan["shape"], [round(s, 3) for s in scan["spacing_mm"]])


if __name__ == "__main__":
    main()
