"""Elastic deformation: a smooth random in-plane displacement field (Simard et al. 2003).

Each in-plane displacement component is uniform white noise smoothed by a Gaussian of `sigma` pixels
(and of `slice_sigma` pixels along the arm, when given), scaled so that `alpha` is the RMS
displacement in pixels. Unlike Simard's raw multiplier, alpha then keeps its meaning whatever
sigma is. The same field moves the volume (linear) and its labels (nearest), so they stay in
register; the displacement has no component along the arm, so each slice stays a slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft
from scipy import ndimage

from armseg.augment.rotation import in_plane_axes

# Voxels per map_coordinates call: bounds the coordinate grid (3 float32 per voxel, ~200 MB)
# for large scans while keeping each call a whole-slab, vectorised one.
SLAB_VOXELS = 16_000_000


def displacement_field(shape: Sequence[int], alpha: float, sigma: float, rng: np.random.Generator,
                       slice_axis: int = 2, slice_sigma: float = 0.0) -> np.ndarray:
    """(2, *shape) float32 displacements in pixels along the two in-plane axes.

    `slice_sigma` 0 draws each slice's field independently (2D augmentation, as for a slice
    network); > 0 makes neighbouring slices deform alike, as a tissue would.
    """
    sigmas = [float(sigma)] * 3
    sigmas[slice_axis] = float(slice_sigma)
    noise = rng.random((2, *shape), dtype=np.float32)
    noise -= np.float32(0.5)  # zero-mean uniform noise, as Simard's; the scale is set by alpha below
    field = gaussian_smooth(noise, sigmas)
    rms = float(np.sqrt(np.mean(np.sum(np.square(field, dtype=np.float64), axis=0))))
    if rms > 0:
        field *= np.float32(alpha / rms)
    return field


def gaussian_smooth(noise: np.ndarray, sigmas: Sequence[float]) -> np.ndarray:
    """Gaussian-filter each (2, *shape) component by multiplying its spectrum.

    For the wide kernels elastic fields need (sigma ~10 px) this is several times faster than
    `ndimage.gaussian_filter`'s direct convolution; the periodic boundary it implies is harmless
    for white noise, whose statistics do not depend on position.
    """
    axes = tuple(axis + 1 for axis, sigma in enumerate(sigmas) if sigma > 0)
    if not axes:
        return noise
    spectrum = scipy.fft.rfftn(noise, axes=axes, workers=-1)
    transfer = np.ones((1,) * noise.ndim, dtype=np.float32)
    for axis in axes:
        last = axis == axes[-1]
        size = noise.shape[axis]
        frequency = scipy.fft.rfftfreq(size) if last else scipy.fft.fftfreq(size)
        along = np.exp(-2.0 * (np.pi * sigmas[axis - 1] * frequency) ** 2).astype(np.float32)
        transfer = transfer * along.reshape([-1 if i == axis else 1 for i in range(noise.ndim)])
    spectrum *= transfer
    return scipy.fft.irfftn(spectrum, s=[noise.shape[a] for a in axes], axes=axes, workers=-1)


def deform_pair(volume: np.ndarray, labels: np.ndarray, field: np.ndarray, slice_axis: int = 2
                ) -> tuple[np.ndarray, np.ndarray]:
    """Warp a volume (linear, float32) and its raw labels (nearest) by one displacement field.

    Works slab by slab along the slice axis (the field never crosses slices), each slab one
    `map_coordinates` call on a full 3D coordinate grid. Pixels pulled from beyond the border
    repeat the edge (for both), so a deformation never cuts black notches into the field of view.
    """
    a, b = in_plane_axes(slice_axis)
    order = (a, b, slice_axis)
    # Slice axis last, so a slab is a contiguous run of slices.
    vol = np.moveaxis(volume, order, (0, 1, 2))
    lab = np.moveaxis(labels, order, (0, 1, 2))
    disp = np.moveaxis(field, (a + 1, b + 1, slice_axis + 1), (1, 2, 3))
    out_vol = np.empty(vol.shape, np.float32)
    out_lab = np.empty(lab.shape, labels.dtype)
    rows, cols, slices = vol.shape
    step = max(1, SLAB_VOXELS // max(1, rows * cols))
    for start in range(0, slices, step):
        stop = min(slices, start + step)
        grid = np.indices((rows, cols, stop - start), dtype=np.float32)
        grid[0] += disp[0, :, :, start:stop]
        grid[1] += disp[1, :, :, start:stop]
        out_vol[..., start:stop] = ndimage.map_coordinates(vol[..., start:stop], grid, order=1,
                                                           mode="nearest", output=np.float32)
        out_lab[..., start:stop] = ndimage.map_coordinates(lab[..., start:stop], grid, order=0,
                                                           mode="nearest", output=labels.dtype)
    return (np.moveaxis(out_vol, (0, 1, 2), order), np.moveaxis(out_lab, (0, 1, 2), order))
