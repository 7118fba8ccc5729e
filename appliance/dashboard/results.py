"""A finished job's CT and segmentation, as the previews and the viewer need them.

The CT is the reader stage's volume (``payload/reader/volume.mhd`` or ``volume.nii.gz``). The
segmentation is read back from the DICOM SEG the job produced (``output/seg.dcm``, else
``payload/writer/seg.dcm``): its frames are put on the CT's slices by their referenced source
SOP Instance UIDs (the reader's ``series.json`` lists them in volume order), so what is shown is
what was sent. Segment names and colours come from the SEG (Segment Label, Recommended Display
CIELab Value); a segment without a colour gets one from a fixed palette.
"""

# SimpleITK's SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from appliance.storage import PayloadLayout, write_durably

#: Colours for segments whose SEG gives none (RGB).
PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))


class NoResult(LookupError):
    """The job has no CT volume or no SEG (yet); the message says which file is missing."""


@dataclass(frozen=True)
class Segment:
    """One segment of the SEG: its number, label, display colour and size in this CT."""

    number: int
    label: str
    rgb: tuple[int, int, int]
    voxels: int
    volume_ml: float

    @property
    def hex(self) -> str:
        """The colour as ``#rrggbb``."""
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)


@dataclass(frozen=True)
class Result:
    """The CT (int16 HU) and the segment numbers on its grid (uint8, same geometry)."""

    ct: sitk.Image
    labels: sitk.Image
    segments: tuple[Segment, ...]
    key: str  #: changes whenever the job's SEG is written again (cache key)


@dataclass(frozen=True)
class ResultFiles:
    """Where a job's CT, series manifest and SEG are."""

    volume: Path
    manifest: Path
    seg: Path

    @classmethod
    def find(cls, layout: PayloadLayout, job_id: str) -> ResultFiles:
        """The files of ``job_id``; raise :class:`NoResult` naming the first one missing."""
        reader = layout.payload_dir(job_id) / "reader"
        volume = next((p for p in (reader / "volume.mhd", reader / "volume.nii.gz") if p.is_file()), None)
        if volume is None:
            raise NoResult(f"no CT volume in {reader} (the reader stage has not run)")
        manifest = reader / "series.json"
        if not manifest.is_file():
            raise NoResult(f"no {manifest}")
        candidates = (layout.output_dir(job_id) / "seg.dcm", layout.payload_dir(job_id) / "writer" / "seg.dcm")
        seg = next((p for p in candidates if p.is_file()), None)
        if seg is None:
            raise NoResult("no SEG (the writer stage has not run)")
        return cls(volume, manifest, seg)

    @property
    def key(self) -> str:
        """Identifies this version of the SEG (modification time and size)."""
        st = self.seg.stat()
        return f"{st.st_mtime_ns:x}-{st.st_size:x}"


def _rgb(item: object, number: int) -> tuple[int, int, int]:
    value = getattr(item, "RecommendedDisplayCIELabValue", None)
    if value is not None:
        try:
            r, g, b = hd.color.CIELabColor.from_dicom_value([int(v) for v in value]).to_rgb()
            return int(r), int(g), int(b)
        except (ValueError, TypeError):
            pass
    return PALETTE[(number - 1) % len(PALETTE)]


Described = list[tuple[int, str, tuple[int, int, int]]]


def read_labels(seg_path: Path, source_uids: list[str]) -> tuple[npt.NDArray[np.uint8], Described]:
    """Segment numbers per source slice (z, y, x), and (number, label, RGB) per segment."""
    seg = hd.seg.segread(seg_path)
    segments = [(int(s.SegmentNumber), str(s.SegmentLabel), _rgb(s, int(s.SegmentNumber))) for s in seg.SegmentSequence]
    if max((n for n, _, _ in segments), default=0) > 255:
        raise NoResult(f"{seg_path}: more than 255 segments")
    labels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=source_uids, combine_segments=True, skip_overlap_checks=True,
        assert_missing_frames_are_empty=True, dtype=np.uint8)
    return np.asarray(labels, np.uint8), segments


def load(files: ResultFiles) -> Result:
    """Read the CT and the SEG of ``files`` into one :class:`Result`."""
    try:
        uids = [str(u) for u in json.loads(files.manifest.read_text())["sop_instance_uids"]]
    except (OSError, ValueError, KeyError) as exc:
        raise NoResult(f"{files.manifest}: {exc}") from exc
    ct = sitk.ReadImage(str(files.volume))
    array, described = read_labels(files.seg, uids)
    size = ct.GetSize()
    if array.shape != (size[2], size[1], size[0]):
        raise NoResult(f"the SEG's frames make {array.shape[::-1]} voxels but the CT has {size}")
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(ct)
    voxel_ml = float(np.prod(ct.GetSpacing())) / 1000.0
    # count_nonzero per segment, not bincount: bincount widens 300 MB of uint8 to int64 first.
    counts = {n: int(np.count_nonzero(array == n)) for n, _, _ in described}
    segments = tuple(Segment(n, label, rgb, counts[n], round(counts[n] * voxel_ml, 2)) for n, label, rgb in described)
    return Result(ct, labels, segments, files.key)


class ResultCache:
    """The last few loaded results, by job ID and SEG version; loads of one job never run twice at once."""

    def __init__(self, layout: PayloadLayout, size: int = 2) -> None:
        self._layout = layout
        self._size = size
        self._results: OrderedDict[tuple[str, str], Result] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def files(self, job_id: str) -> ResultFiles:
        """The job's result files (raise :class:`NoResult`)."""
        return ResultFiles.find(self._layout, job_id)

    def segments(self, job_id: str, folder: Path) -> tuple[Segment, ...]:
        """The job's segments; kept as ``segments.json`` in ``folder`` (the job's cache folder, named
        by :attr:`ResultFiles.key` under it), so the job page loads the volumes once, not at each view."""
        files = self.files(job_id)
        path = folder / files.key / "segments.json"
        try:
            return tuple(Segment(**{**item, "rgb": tuple(item["rgb"])}) for item in json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            pass
        segments = self.get(job_id).segments
        path.parent.mkdir(parents=True, exist_ok=True)
        write_durably(path.parent, path.name, [json.dumps([asdict(s) for s in segments]).encode()])
        return segments

    def get(self, job_id: str) -> Result:
        """The job's result, loaded if needed (raise :class:`NoResult`)."""
        files = self.files(job_id)
        key = (job_id, files.key)
        with self._lock:
            gate = self._loading.setdefault(job_id, threading.Lock())
        with gate:
            with self._lock:
                if key in self._results:
                    self._results.move_to_end(key)
                    return self._results[key]
            result = load(files)
            with self._lock:
                self._results[key] = result
                while len(self._results) > self._size:
                    self._results.popitem(last=False)
        return result
