"""Re-encode a DICOM series in every transfer syntax the reader decodes, and send it in that syntax.

Encoders: dcmtk for what a PACS would send (``dcmconv`` for the uncompressed and deflated syntaxes,
``dcmcjpeg``, ``dcmcjpls``, ``dcmcrle``), pydicom with pylibjpeg-openjpeg for JPEG 2000 (dcmtk's
JPEG 2000 codec is not free), imagecodecs (OpenJPH) for HTJ2K. Senders: dcmtk ``storescu`` with
the option that proposes the syntax; pynetdicom for the syntaxes storescu 3.6.7 does not know.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom import uid
from pydicom.encaps import encapsulate
from pydicom.uid import UID, generate_uid
from pynetdicom import AE

from harness.peers import system_tool


def _tool(name: str, *options: str) -> Callable[[Path, Path], None]:
    def run(src: Path, dest: Path) -> None:
        exe = system_tool(name)
        if exe is None:
            raise FileNotFoundError(f"{name} (dcmtk) is not installed")
        subprocess.run([exe, *options, str(src), str(dest)], check=True, capture_output=True)

    return run


def _pydicom(syntax: UID, **options: object) -> Callable[[Path, Path], None]:
    def run(src: Path, dest: Path) -> None:
        ds = pydicom.dcmread(src)
        ds.compress(syntax, **options)  # type: ignore[arg-type]
        ds.save_as(dest, enforce_file_format=True)

    return run


def _htj2k(syntax: UID, reversible: bool) -> Callable[[Path, Path], None]:
    def run(src: Path, dest: Path) -> None:
        import imagecodecs  # test-only dependency (dev extra); the caller skips without it

        ds = pydicom.dcmread(src)
        # OpenJPH writes RPCL progression, so one codestream also serves the RPCL syntax; the lossy
        # quantisation step (relative to the 16-bit container) keeps errors near 10 HU.
        stream = imagecodecs.htj2k_encode(ds.pixel_array, reversible=reversible, level=None if reversible else 1e-4)
        ds.PixelData = encapsulate([bytes(stream)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
        if not reversible:
            ds.LossyImageCompression = "01"
        ds.save_as(dest, enforce_file_format=True)

    return run


def _copy(src: Path, dest: Path) -> None:
    shutil.copyfile(src, dest)


@dataclass(frozen=True)
class Encoding:
    """How to write and send one transfer syntax."""

    syntax: UID
    lossless: bool
    encode: Callable[[Path, Path], None]
    storescu: tuple[str, ...] | None
    """storescu options that propose the syntax; None: send with pynetdicom (storescu lacks it)."""


ENCODINGS: tuple[Encoding, ...] = (
    Encoding(uid.ExplicitVRLittleEndian, True, _copy, ("-xe",)),
    Encoding(uid.ImplicitVRLittleEndian, True, _tool("dcmconv", "+ti"), ("-xi",)),
    Encoding(uid.DeflatedExplicitVRLittleEndian, True, _tool("dcmconv", "+td"), ("-xd",)),
    Encoding(uid.ExplicitVRBigEndian, True, _tool("dcmconv", "+tb"), ("-xb",)),
    Encoding(uid.JPEGBaseline8Bit, False, _tool("dcmcjpeg", "+eb"), ("-xy",)),
    Encoding(uid.JPEGExtended12Bit, False, _tool("dcmcjpeg", "+ee"), ("-xx",)),
    Encoding(uid.JPEGLossless, True, _tool("dcmcjpeg", "+el"), None),
    Encoding(uid.JPEGLosslessSV1, True, _tool("dcmcjpeg", "+e1"), ("-xs",)),
    Encoding(uid.JPEGLSLossless, True, _tool("dcmcjpls", "+el"), ("-xt",)),
    Encoding(uid.JPEGLSNearLossless, False, _tool("dcmcjpls", "+en"), ("-xu",)),
    Encoding(uid.JPEG2000Lossless, True, _pydicom(uid.JPEG2000Lossless), ("-xv",)),
    Encoding(uid.JPEG2000, False, _pydicom(uid.JPEG2000, j2k_cr=[5]), ("-xw",)),
    Encoding(uid.HTJ2KLossless, True, _htj2k(uid.HTJ2KLossless, True), None),
    Encoding(uid.HTJ2KLosslessRPCL, True, _htj2k(uid.HTJ2KLosslessRPCL, True), None),
    Encoding(uid.HTJ2K, False, _htj2k(uid.HTJ2K, False), None),
    Encoding(uid.RLELossless, True, _tool("dcmcrle"), ("-xr",)),
)


def encode_study(files: tuple[Path, ...], encoding: Encoding, dest: Path) -> tuple[str, list[Path]]:
    """``files`` as a new study (own Study/Series/SOP Instance UIDs) in ``encoding``'s syntax, under ``dest``.

    Compressed sources are decompressed first (dcmtk's tools cannot read JPEG 2000). Returns the
    StudyInstanceUID and the written files. Raises AssertionError when an encoder wrote another
    syntax than asked for.
    """
    dest.mkdir(parents=True)
    staging = dest / "staging"
    staging.mkdir()
    study = generate_uid(entropy_srcs=[encoding.syntax, "study"])
    series = generate_uid(entropy_srcs=[encoding.syntax, "series"])
    out: list[Path] = []
    for i, path in enumerate(files):
        ds = pydicom.dcmread(path)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
            entropy_srcs=[encoding.syntax, str(i)])
        plain = staging / path.name
        ds.save_as(plain, enforce_file_format=True)
        target = dest / path.name
        encoding.encode(plain, target)
        written = pydicom.dcmread(target, stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert written == encoding.syntax, f"{target}: the encoder wrote {written.name}, not {encoding.syntax.name}"
        out.append(target)
    shutil.rmtree(staging)
    return study, out


def pynetdicom_send(port: int, files: list[Path], called: str, calling: str = "STORESCU") -> list[int]:
    """C-STORE ``files`` in their own transfer syntax (one context per syntax); the statuses."""
    datasets = [pydicom.dcmread(p) for p in files]
    ae = AE(ae_title=calling)
    for syntax in sorted({str(ds.file_meta.TransferSyntaxUID) for ds in datasets}):
        ae.add_requested_context(str(datasets[0].SOPClassUID), syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established, f"association to {called} on port {port} failed"
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()
