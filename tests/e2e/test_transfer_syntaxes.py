"""Every transfer syntax the SCP accepts goes through the whole pipeline: storescu/pynetdicom ->
adapter -> job -> worker (reader decodes, Triton, SEG) -> Orthanc. One stack, one small phantom
(64 x 64 x 20, 12-bit) re-encoded as one study per syntax; the studies are processed side by side.

Lossless syntaxes must give the reader exactly the original HU and the same SEG as the plain
Explicit VR Little Endian study; lossy ones a SEG that agrees with it on nearly every voxel.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pipeline.test_writer import _seg_labels

from appliance.dicomnet.syntaxes import READER_SYNTAXES
from appliance.jobs import JobState
from appliance.phantom import PhantomSpec, render, write_phantom
from appliance.triton_local import LocalTriton
from harness.encode import ENCODINGS, Encoding, encode_study, pynetdicom_send

from .e2ekit import Orthanc, Stack, storescu

SPEC = PhantomSpec(size=64, slices=20, bits_stored=12, seed=13)
#: Share of voxels on which a lossy syntax's SEG may differ from the lossless one's.
LOSSY_DISAGREEMENT = 0.02


def test_every_reader_syntax_has_an_encoding() -> None:
    assert [e.syntax for e in ENCODINGS] == list(READER_SYNTAXES)


def _matrix_workflow(folder: Path) -> Path:
    """OrganSeg as ``Matrix``, without its ImageType rule: lossy re-encoding marks images DERIVED."""
    text = (importlib.resources.files("appliance.workflows") / "definitions" / "organseg.yaml").read_text()
    changed = re.sub(r"^name: OrganSeg$", "name: Matrix", text, flags=re.MULTILINE)
    changed = changed.replace("      image_type: [ORIGINAL, PRIMARY]\n", "")
    assert changed.count("Matrix") == 1 and "image_type" not in changed, "organseg.yaml changed: update this test"
    folder.mkdir()
    (folder / "matrix.yaml").write_text(changed)
    return folder


def _send(stack: Stack, encoding: Encoding, files: list[Path]) -> None:
    if encoding.storescu is None:
        assert pynetdicom_send(stack.port, files, "Matrix") == [0] * len(files), encoding.syntax.name
        return
    # -R: only CT Image Storage; the option proposes the syntax first, uncompressed ones after it.
    sent = storescu(stack.port, files, "Matrix", "STORESCU", "-R", *encoding.storescu)
    assert sent.returncode == 0, f"{encoding.syntax.name}: {sent.stderr}"


def test_each_syntax_through_the_pipeline(stacks: Callable[..., Stack], triton: LocalTriton, pacs: Orthanc,
                                          tmp_path: Path) -> None:
    pytest.importorskip("imagecodecs", reason="imagecodecs (dev extra, Python >= 3.11) encodes the HTJ2K studies")
    phantom = write_phantom(tmp_path / "phantom", SPEC)
    studies = {e.syntax: encode_study(phantom.files, e, tmp_path / e.syntax) for e in ENCODINGS}
    stack = stacks(triton.ports, {"Matrix": "Matrix"}, workflows_dir=str(_matrix_workflow(tmp_path / "workflows")))
    for encoding in ENCODINGS:
        _send(stack, encoding, studies[encoding.syntax][1])

    hu = render(SPEC)[0]
    labels: dict[str, np.ndarray] = {}
    report = []
    for encoding in ENCODINGS:
        study = studies[encoding.syntax][0]
        job = stack.wait_job(lambda j, s=study: j.study_uid == s, 30, f"the {encoding.syntax.name} job")  # type: ignore[misc]
        job = stack.wait_finished(job.id, 120)
        assert job.state is JobState.DONE, f"{encoding.syntax.name}: {job.error}"
        job_dir = stack.adapter.root / job.id
        stored = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                  for p in (job_dir / "input").rglob("*") if p.is_file()}
        assert stored == {encoding.syntax}, f"sent as {encoding.syntax.name} but stored as {stored}"
        volume = sitk.GetArrayFromImage(sitk.ReadImage(str(job_dir / "payload" / "reader" / "volume.mhd")))
        error = int(np.abs(volume.astype(np.int32) - hu).max())
        if encoding.lossless:
            assert error == 0, f"{encoding.syntax.name} is lossless but the reader's HU differ by up to {error}"
        manifest = json.loads((job_dir / "payload" / "reader" / "series.json").read_text())
        labels[encoding.syntax] = _seg_labels(job_dir / "output" / "seg.dcm", manifest["files"])
        report.append(f"{encoding.syntax.name}: accepted, decoded (max |HU error| {error}), SEG produced")
    print("\n".join(report))
    reference = labels[ENCODINGS[0].syntax]
    for encoding in ENCODINGS:
        differ = float(np.mean(labels[encoding.syntax] != reference))
        bound = 0.0 if encoding.lossless else LOSSY_DISAGREEMENT
        assert differ <= bound, f"{encoding.syntax.name}: SEG differs from Explicit VR LE on {differ:.2%} of voxels"
