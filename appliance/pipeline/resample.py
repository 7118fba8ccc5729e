"""Move volumes between the image grid and the model grid.

Into the model: the HU volume is resampled with linear interpolation onto a grid with the
model's spacing (or size) that covers the same physical box: same origin corner, same
direction. Back out: each class-probability channel is resampled with *linear*
interpolation onto the image grid and only then reduced with argmax. Upsampling labels
with nearest neighbour instead would copy the coarse model voxels as blocks and leave a
staircase of up to half a model voxel along every boundary.
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk


def model_grid(image: sitk.Image, spacing_mm: tuple[float, float, float] | None = None,
               size: tuple[int, int, int] | None = None) -> sitk.Image:
    """An empty float32 reference image on the model's grid for ``image``.

    Give exactly one of ``spacing_mm`` (x, y, z in mm; the size follows from the extent,
    rounded) or ``size`` (x, y, z voxels; the spacing follows). The outer corners of the
    first voxels coincide, so both grids span the same box.
    """
    if (spacing_mm is None) == (size is None):
        raise ValueError("give exactly one of spacing_mm or size")
    src_size = np.array(image.GetSize(), np.float64)
    src_spacing = np.array(image.GetSpacing(), np.float64)
    extent = src_size * src_spacing
    if spacing_mm is not None:
        new_spacing = np.array(spacing_mm, np.float64)
        new_size = np.maximum(1, np.rint(extent / new_spacing)).astype(int)
    else:
        assert size is not None
        new_size = np.array(size, int)
        new_spacing = extent / new_size
    direction = np.array(image.GetDirection(), np.float64).reshape(3, 3)
    # Keep the box's corner fixed: voxel centres sit half a voxel inside it on both grids.
    corner = np.array(image.GetOrigin()) - direction @ (src_spacing / 2.0)
    origin = corner + direction @ (new_spacing / 2.0)
    ref = sitk.Image([int(v) for v in new_size], sitk.sitkFloat32)
    ref.SetSpacing([float(v) for v in new_spacing])
    ref.SetOrigin([float(v) for v in origin])
    ref.SetDirection(image.GetDirection())
    return ref


def to_model_grid(image: sitk.Image, reference: sitk.Image, clip_hu: tuple[float, float]) -> npt.NDArray[np.float32]:
    """HU volume on ``reference``'s grid as a C-contiguous float32 (z, y, x) array, clipped to ``clip_hu``.

    Voxels outside the source volume get ``clip_hu[0]`` (air).
    """
    resampled = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), reference, sitk.Transform(),
                              sitk.sitkLinear, float(clip_hu[0]), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(resampled)
    np.clip(array, clip_hu[0], clip_hu[1], out=array)
    return np.ascontiguousarray(array, dtype=np.float32)


def probabilities_to_labels(probabilities: npt.NDArray[np.float32], model_ref: sitk.Image,
                            target: sitk.Image) -> npt.NDArray[np.uint8]:
    """Class indices on ``target``'s grid from (class, z, y, x) ``probabilities`` on ``model_ref``'s grid.

    Each channel is resampled linearly, then the argmax is taken per voxel. Channels are
    handled one at a time with a running maximum, so memory stays at about three target
    volumes however many classes there are. Outside the model grid background (0) wins.
    """
    best: npt.NDArray[np.float32] | None = None
    labels = np.zeros(target.GetSize()[::-1], np.uint8)
    for c in range(probabilities.shape[0]):
        channel = sitk.GetImageFromArray(probabilities[c])
        channel.CopyInformation(model_ref)
        # Background defaults to 1 outside the model grid, every organ to 0.
        default = 1.0 if c == 0 else 0.0
        up = sitk.GetArrayFromImage(sitk.Resample(channel, target, sitk.Transform(), sitk.sitkLinear,
                                                  default, sitk.sitkFloat32))
        if best is None:
            best = up
            continue
        wins = up > best
        labels[wins] = c
        np.maximum(best, up, out=best)
    return labels
