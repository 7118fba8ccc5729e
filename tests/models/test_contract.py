"""The generic model contract (window, block, margin, softmax) and the liver network's own steps."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from appliance.pipeline import contract, pyliverlesionseg
from appliance.settings.workflow import InferenceSettings
from harness import testdata


def test_window_scales_the_clipped_range() -> None:
    settings = InferenceSettings(spacing_mm=(3, 3, 3), clip_hu=(-200.0, 200.0), scale=(-0.5, 0.5))
    hu = np.array([-1000.0, -200.0, 0.0, 100.0, 3000.0], np.float32)
    # The package: clip(hu / 1000, -0.2, 0.2) * 2.5.
    np.testing.assert_allclose(contract.window(hu, settings), np.clip(hu / 1000, -0.2, 0.2) * 2.5, atol=1e-7)
    assert contract.pad_value(settings) == -0.5
    assert contract.pad_value(InferenceSettings(spacing_mm=(3, 3, 3))) == -1024.0


@pytest.mark.parametrize("shape", [(5, 7, 9), (12, 3, 20), (2, 2, 2)])
def test_block_centres_like_the_package_and_comes_back(shape: tuple[int, int, int]) -> None:
    block, margin = (10, 8, 14), (2, 1, 3)
    volume = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    placed = contract.to_block(volume, block, -9.0)
    # pyliverlesionseg's ExtractSegment3D2: voxel n // 2 of the volume sits at b // 2 of the block.
    centre = tuple(n // 2 for n in shape)
    assert placed[tuple(b // 2 for b in block)] == volume[centre]
    # A "model" that returns its input's centre as the liver channel.
    inner = placed[tuple(slice(m, b - m) for m, b in zip(margin, block, strict=True))]
    output = np.stack([1.0 - inner, inner])
    back = contract.from_block(output, shape, block, margin)
    covered = back[1] != 0
    np.testing.assert_array_equal(back[1][covered], volume[covered])
    assert np.all(back[0][~covered] == 1.0)


def test_softmax_sums_to_one() -> None:
    logits = np.random.default_rng(1).normal(size=(3, 4, 5, 6)).astype(np.float32) * 50
    probabilities = contract.softmax(logits.copy())
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-6)
    assert np.array_equal(probabilities.argmax(axis=0), logits.argmax(axis=0))


@pytest.mark.parametrize(("n", "zoom"), [(10, 2.0), (7, 3.0 / 1.5), (9, 0.5), (512, 0.9765625 / 1.5), (20, 2 / 1.5)])
def test_zoom3d_weights(n: int, zoom: float) -> None:
    w = pyliverlesionseg.zoom_weights(n, zoom)
    assert w.shape == (int(np.ceil(n * zoom)), n)
    # A constant stays constant away from the edges; the grids share their centre.
    inner = w[1:-1] if zoom < 1 else w[2:-2]
    np.testing.assert_allclose(inner.sum(axis=1), 1.0, atol=1e-12)
    out_centre = (w.shape[0] - 1) / 2
    positions = (w @ np.arange(n, dtype=np.float64))[1:-1] / w[1:-1].sum(axis=1)
    expected = (np.arange(1, w.shape[0] - 1) - out_centre) / zoom + (n - 1) / 2
    if zoom > 1:  # linear interpolation reproduces positions exactly
        np.testing.assert_allclose(positions[1:-1], expected[1:-1], atol=1e-9)


def test_liver_input_on_real_ct(reference_files: testdata.ReferenceFiles) -> None:
    image = sitk.ReadImage(str(reference_files.ct))
    prepared = contract.model_input(image, InferenceSettings(
        spacing_mm=(3, 3, 3), orientation="RAS", preprocessing="pyliverlesionseg-ct"))
    # The box spans the body and, with no lungs in view, the scan's top slice.
    assert prepared.notes == ()
    assert prepared.reference.GetSpacing() == (3.0, 3.0, 3.0)
    np.testing.assert_allclose(prepared.reference.GetDirection(), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert prepared.hu.shape[0] == 112 and 80 <= prepared.hu.shape[1] <= 101 and 100 <= prepared.hu.shape[2] <= 122
    # Same physical place: the model grid's centre lies inside the scan.
    centre = prepared.reference.TransformContinuousIndexToPhysicalPoint(
        [(s - 1) / 2 for s in prepared.reference.GetSize()])
    index = image.TransformPhysicalPointToContinuousIndex(centre)
    assert all(0 <= i < s for i, s in zip(index, image.GetSize(), strict=True))
