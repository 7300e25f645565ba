"""The yardstick: the plain Keras script a user would write before trying armseg.

U-Net depth 4, 16 base filters, no batch normalisation, mixed bfloat16, Adam 1e-3, batch 8,
every slice, 15 epochs, no augmentation, per-slice z-score. It trains on a group folder of
`*_volume.nii`/`*_seg.nii` pairs (humerus = raw 7, 6 or 1; biceps = raw 52) and writes one
`<name>_pred_seg.nii` (raw 7 / 52) per source volume into `--out`. Prints its training seconds as JSON.

    python benchmarks/plain_unet.py GROUP_FOLDER OUT SOURCE [SOURCE ...] [--epochs 15] [--seed 0]

Predictions mirror the sources: OUT/<source folder name>/<path below it>/<name>_pred_seg.nii.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import nibabel as nib
import numpy as np
from keras import layers

RAW = {7: 1, 6: 1, 1: 1, 52: 2}


def zscore(slices: np.ndarray) -> np.ndarray:
    mean = slices.mean(axis=(1, 2), keepdims=True)
    return (slices - mean) / (slices.std(axis=(1, 2), keepdims=True) + 1e-3)


def padded(slices: np.ndarray, multiple: int = 16) -> np.ndarray:
    h, w = slices.shape[1:3]
    return np.pad(slices, ((0, 0), (0, -h % multiple), (0, -w % multiple)))


def unet(depth: int = 4, filters: int = 16) -> keras.Model:
    inputs = keras.Input((None, None, 1))
    x, skips = inputs, []
    for level in range(depth):
        x = layers.Conv2D(filters * 2**level, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters * 2**level, 3, padding="same", activation="relu")(x)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(filters * 2**depth, 3, padding="same", activation="relu")(x)
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(filters * 2**level, 2, strides=2, padding="same")(x)
        x = layers.Conv2D(filters * 2**level, 3, padding="same", activation="relu")(
            layers.Concatenate()([x, skips[level]]))
        x = layers.Conv2D(filters * 2**level, 3, padding="same", activation="relu")(x)
    return keras.Model(inputs, layers.Activation("softmax", dtype="float32")(layers.Conv2D(3, 1)(x)))


def load(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for volume in sorted(folder.rglob("*_volume.nii*")):
        seg = np.asarray(nib.load(str(volume).replace("_volume", "_seg")).dataobj)
        classes = np.zeros(seg.shape, np.uint8)
        for raw, cls in RAW.items():
            classes[seg == raw] = cls
        image = np.asarray(nib.load(volume).dataobj, dtype=np.float32)
        images.append(padded(np.moveaxis(image, 2, 0)))
        labels.append(padded(np.moveaxis(classes, 2, 0)))
    h = max(i.shape[1] for i in images)
    w = max(i.shape[2] for i in images)
    fit = [(np.pad(i, ((0, 0), (0, h - i.shape[1]), (0, w - i.shape[2]))),
            np.pad(c, ((0, 0), (0, h - c.shape[1]), (0, w - c.shape[2]))))
           for i, c in zip(images, labels, strict=True)]
    return zscore(np.concatenate([f[0] for f in fit]))[..., None], np.concatenate([f[1] for f in fit])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("group", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("sources", type=Path, nargs="+")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    x, y = load(args.group)
    model = unet()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    started = time.perf_counter()
    model.fit(x, y, batch_size=8, epochs=args.epochs, shuffle=True, verbose=0)
    seconds = time.perf_counter() - started
    volumes = [(source, v) for source in args.sources for v in sorted(source.rglob("*_volume.nii*"))]
    for source, volume in volumes:
        image = nib.load(volume)
        slices = np.moveaxis(np.asarray(image.dataobj, dtype=np.float32), 2, 0)
        h, w = slices.shape[1:]
        probabilities = model.predict(zscore(padded(slices))[..., None], batch_size=8, verbose=0)
        classes = np.moveaxis(np.argmax(probabilities, -1)[:, :h, :w], 0, 2)
        raw = np.array([0, 7, 52], np.uint8)[classes]  # OpenArm's raw values, as armseg writes
        folder = args.out / source.name / volume.parent.relative_to(source)
        folder.mkdir(parents=True, exist_ok=True)
        name = volume.name.split("_volume")[0]
        nib.save(nib.Nifti1Image(raw, image.affine), folder / f"{name}_pred_seg.nii")
    print(json.dumps({"train_seconds": seconds, "slices": int(len(x))}))


if __name__ == "__main__":
    main()
