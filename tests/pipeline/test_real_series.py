"""The reader and writer on a real scanner's series: TotalSegmentator's 20-slice Siemens CT (JPEG 2000
lossless, from its source distribution on PyPI; see harness/testdata.py), as sent and re-encoded.

Its labels (``example_seg_dicom.nii.gz``) are TotalSegmentator's predictions, not expert truth:
here they only serve as a mask to write into a SEG and read back on the real headers.
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom import uid

from appliance.pipeline.reader import load_manifest, read_series
from appliance.pipeline.writer import write_outputs
from appliance.workflows import ReaderSettings, Workflow
from harness import testdata
from harness.encode import ENCODINGS, encode_study

from .conftest import dciodvfy_errors
from .test_series_variety import _overlay

#: Lossless re-encodings a PACS may send the same series in (the common archive syntaxes).
RE_ENCODINGS = (uid.ExplicitVRLittleEndian, uid.JPEGLosslessSV1, uid.JPEGLSLossless, uid.RLELossless)


@pytest.fixture(scope="module")
def siemens(reference_files: testdata.ReferenceFiles, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return testdata.dicom_series(reference_files, tmp_path_factory.mktemp("siemens") / "input")


def test_real_series_and_its_re_encodings_read_alike(siemens: list[Path], tmp_path: Path) -> None:
    assert pydicom.dcmread(siemens[0], stop_before_pixels=True).file_meta.TransferSyntaxUID == uid.JPEG2000Lossless
    settings = ReaderSettings(formats=("mhd",))
    original = read_series(siemens[0].parent, settings, tmp_path / "j2k")
    image = original.volume.image
    assert image.GetSize() == (512, 512, 20) and original.volume.report.warnings == ()
    np.testing.assert_allclose(image.GetSpacing(), (0.9765625, 0.9765625, 2.0))
    hu = sitk.GetArrayFromImage(image)
    assert -1100 < hu.min() < -900 and 1000 < hu.max() < 3100  # air and bone: the rescale was applied
    source = tuple(siemens)
    for encoding in (e for e in ENCODINGS if e.syntax in RE_ENCODINGS):
        _, files = encode_study(source, encoding, tmp_path / encoding.syntax)
        if encoding.syntax == uid.ExplicitVRLittleEndian:
            source = tuple(files)  # decoded once: the other encoders start from it
        again = read_series(files[0].parent, settings, tmp_path / f"read-{encoding.syntax}")
        assert np.array_equal(sitk.GetArrayFromImage(again.volume.image), hu), encoding.syntax.name
        assert again.volume.image.GetOrigin() == image.GetOrigin()


def test_seg_on_real_headers_overlays_the_source(siemens: list[Path], reference_files: testdata.ReferenceFiles,
                                                 workflows: dict[str, Workflow], tmp_path: Path) -> None:
    reader = read_series(siemens[0].parent, ReaderSettings(), tmp_path / "reader")
    # TotalSegmentator's labels, resampled in physical space onto the series' grid (they are stored
    # with the rows flipped), as OrganSeg's classes: liver 1, spleen 2, kidneys 3.
    predicted = sitk.Resample(sitk.ReadImage(str(reference_files.seg_dicom)), reader.volume.image,
                              sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    lut = np.zeros(256, np.uint8)
    for name, cls in (("liver", 1), ("spleen", 2), ("kidney_right", 3), ("kidney_left", 3)):
        lut[testdata.TOTALSEG_LABELS[name]] = cls
    classes = lut[sitk.GetArrayFromImage(predicted)]
    assert (classes == 1).sum() > 10_000  # the liver is in this upper-abdomen slab
    mask = sitk.GetImageFromArray(classes)
    mask.CopyInformation(reader.volume.image)
    sitk.WriteImage(mask, str(tmp_path / "labels.mha"))
    workflow = dataclasses.replace(workflows["OrganSeg"])
    artifacts, notes = write_outputs(reader.manifest, tmp_path / "labels.mha", workflow, tmp_path / "writer")
    assert dciodvfy_errors(artifacts["seg"]) == []
    labels = _overlay(artifacts["seg"], load_manifest(reader.manifest))
    assert np.array_equal(labels, classes)
    print(f"SEG on the Siemens series: notes {notes}")
