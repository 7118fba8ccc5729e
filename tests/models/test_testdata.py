"""The real CT fetched from TotalSegmentator's sdist: extracted, filled in, and written as DICOM faithfully."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from harness import testdata


def test_reference_files_are_extracted(reference_files: testdata.ReferenceFiles) -> None:
    assert "Apache License" in reference_files.licence.read_text()
    slab = sitk.ReadImage(str(reference_files.ct_slab))
    seg = sitk.ReadImage(str(reference_files.seg))
    assert seg.GetSize() == slab.GetSize() == (122, 101, 30)
    assert (sitk.GetArrayViewFromImage(seg) == testdata.TOTALSEG_LABELS["liver"]).sum() > 10_000
    assert len(list(reference_files.dicom_dir.iterdir())) == 20


def test_dicom_series_fills_the_emptied_identifiers(reference_files: testdata.ReferenceFiles,
                                                    tmp_path: Path) -> None:
    files = testdata.dicom_series(reference_files, tmp_path, study_uid="1.2.3.4")
    datasets = [pydicom.dcmread(f) for f in files]
    assert {ds.StudyInstanceUID for ds in datasets} == {"1.2.3.4"}
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 20
    assert all(ds.SOPClassUID == pydicom.uid.CTImageStorage for ds in datasets)
    # The scanner's encoding is kept: JPEG 2000 lossless, and the anonymised patient stays empty.
    assert datasets[0].file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless
    assert datasets[0].PatientID == ""


def test_nifti_to_dicom_keeps_geometry_and_values(reference_files: testdata.ReferenceFiles,
                                                  tmp_path: Path) -> None:
    files = testdata.nifti_to_dicom(reference_files.ct_slab, tmp_path)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    back = reader.Execute()
    ref = sitk.ReadImage(str(reference_files.ct_slab))
    assert back.GetSize() == ref.GetSize()
    np.testing.assert_allclose(back.GetOrigin(), ref.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(back.GetDirection(), ref.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(back.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(ref))
