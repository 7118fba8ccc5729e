"""Grids and the probability resampling: linear-then-argmax beats nearest-neighbour labels."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk
from scipy import ndimage

from appliance.pipeline.contract import softmax
from appliance.pipeline.resample import (
    model_grid,
    probabilities_to_labels,
    probabilities_to_labels_full,
    to_model_grid,
)


def _image(size: tuple[int, int, int], spacing: tuple[float, float, float]) -> sitk.Image:
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin((-10.0, 5.0, 2.5))
    return image


def _centres(image: sitk.Image) -> npt.NDArray[np.float64]:
    """Physical (x, y, z) of every voxel centre, shaped (z, y, x, 3), axis-aligned images only."""
    origin, spacing = np.array(image.GetOrigin()), np.array(image.GetSpacing())
    x, y, z = (origin[i] + spacing[i] * np.arange(image.GetSize()[i]) for i in range(3))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return np.stack([xx, yy, zz], axis=-1)


def test_model_grid_covers_same_box() -> None:
    image = _image((128, 128, 40), (3.125, 3.125, 5.0))
    ref = model_grid(image, spacing_mm=(3.0, 3.0, 3.0))
    assert ref.GetSize() == (133, 133, 67)
    corner = np.array(image.GetOrigin()) - np.array(image.GetSpacing()) / 2
    np.testing.assert_allclose(np.array(ref.GetOrigin()) - 1.5, corner)
    fixed = model_grid(image, size=(64, 64, 32))
    assert fixed.GetSize() == (64, 64, 32)
    np.testing.assert_allclose(fixed.GetSpacing(), (6.25, 6.25, 6.25))
    with pytest.raises(ValueError):
        model_grid(image)


def test_to_model_grid_clips_and_fills_air() -> None:
    image = sitk.Image([8, 8, 8], sitk.sitkFloat32) + 5000.0
    array = to_model_grid(image, model_grid(image, spacing_mm=(2.0, 2.0, 2.0)), (-1024.0, 3071.0))
    assert array.dtype == np.float32 and array.flags.c_contiguous and array.max() == 3071.0


def _boundary_errors(fine: sitk.Image, coarse: sitk.Image, radius: float) -> tuple[int, int]:
    """(linear, nearest) counts of voxels labelled differently from a true sphere."""
    centre = np.array([0.0, 0.0, 0.0])
    # Probabilities a good model would give on the coarse grid: a soft edge 1 mm wide.
    distance = np.linalg.norm(_centres(coarse) - centre, axis=-1) - radius
    p_organ = (1.0 / (1.0 + np.exp(distance / 1.0))).astype(np.float32)
    probabilities = np.stack([1.0 - p_organ, p_organ])
    truth = np.linalg.norm(_centres(fine) - centre, axis=-1) <= radius
    linear = probabilities_to_labels(probabilities, coarse, fine) == 1
    # The approach the pipeline must not use: argmax on the coarse grid, nearest-neighbour up.
    coarse_labels = sitk.GetImageFromArray(np.argmax(probabilities, axis=0).astype(np.uint8))
    coarse_labels.CopyInformation(coarse)
    nearest = sitk.GetArrayFromImage(sitk.Resample(coarse_labels, fine, sitk.Transform(),
                                                   sitk.sitkNearestNeighbor, 0)) == 1
    return int((linear != truth).sum()), int((nearest != truth).sum())


def test_staircase_linear_probabilities_beat_nearest_labels() -> None:
    # A smooth organ (sphere, r = 30 mm) on a 1 mm grid; the model ran at 6 mm.
    fine = _image((96, 96, 96), (1.0, 1.0, 1.0))
    fine.SetOrigin((-47.5, -47.5, -47.5))
    coarse = model_grid(fine, spacing_mm=(6.0, 6.0, 6.0))
    linear, nearest = _boundary_errors(fine, coarse, 30.0)
    # Nearest neighbour leaves 6 mm steps; linear interpolation of probabilities tracks the surface.
    assert linear < 0.5 * nearest, (linear, nearest)


@pytest.mark.parametrize("seed", range(12))
def test_boundary_labels_match_full_resampling(seed: int) -> None:
    """Random grids (reoriented, coarser or finer, shifted partly outside), soft fields, binary masks
    with exact ties and more classes: the same labels as every channel resampled, then argmax."""
    rng = np.random.default_rng(seed)
    size = tuple(int(v) for v in rng.integers(5, 40, 3))
    image = _image(size, tuple(float(v) for v in rng.uniform(0.5, 3.0, 3)))
    oriented = sitk.DICOMOrient(image, str(rng.choice(["LPS", "RAS", "SLP", "IRA"])))
    if seed % 2:
        reference = model_grid(oriented, spacing_mm=tuple(float(v) for v in rng.uniform(1.0, 6.0, 3)))
    else:
        reference = model_grid(oriented, size=tuple(int(v) for v in rng.integers(2, 12, 3)))
    if seed % 3 == 0:
        reference.SetOrigin(tuple(np.array(reference.GetOrigin()) + rng.uniform(-5.0, 5.0, 3)))
    shape = (int(rng.integers(2, 6)), *reference.GetSize()[::-1])
    logits = np.stack([ndimage.gaussian_filter(rng.normal(size=shape[1:]), 1.5) * 20 for _ in range(shape[0])])
    if seed % 4 == 0:
        organ = logits[1] > 0
        probabilities = np.zeros(shape, np.float32)
        probabilities[0], probabilities[1] = ~organ, organ
    else:
        probabilities = softmax(logits.astype(np.float32))
    fast = probabilities_to_labels(probabilities, reference, image, slab=int(rng.integers(1, 9)))
    np.testing.assert_array_equal(fast, probabilities_to_labels_full(probabilities, reference, image))


def test_oblique_grids_take_the_full_method() -> None:
    image = _image((12, 10, 8), (1.0, 1.0, 2.0))
    reference = model_grid(image, spacing_mm=(3.0, 3.0, 3.0))
    reference.SetDirection(sitk.VersorTransform((0, 0, 1), 0.3).GetMatrix())
    probabilities = softmax(np.random.default_rng(0).normal(size=(3, *reference.GetSize()[::-1])).astype(np.float32))
    np.testing.assert_array_equal(probabilities_to_labels(probabilities, reference, image),
                                  probabilities_to_labels_full(probabilities, reference, image))
