"""The worker's last stage, ``export``: hand the SEG to the exporter service.

The exporter sends every non-hidden file of the job's ``output/`` folder to the job's
destinations once the job is ``exporting``. This stage puts the writer's ``seg.dcm`` there
atomically and durably (hidden temporary name, fdatasync, rename, folder fsync), so the exporter
never sees a half-written file, even after a crash.
"""

from __future__ import annotations

from pathlib import Path

from appliance.pipeline import Stage, StageContext, StageOutput
from appliance.storage import make_dirs, write_durably

#: Name of the SEG in ``output/``; one SEG per job.
EXPORTED_SEG = "seg.dcm"


class PublishStage(Stage):
    """Copies the ``seg`` artifact to ``output_dir/seg.dcm``. Artifact: ``exported_seg``."""

    name = "export"

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def run(self, context: StageContext) -> StageOutput:
        seg = context.artifact("seg", "writer")
        make_dirs(self.output_dir)
        size = write_durably(self.output_dir, EXPORTED_SEG, [seg.read_bytes()])
        return StageOutput({"exported_seg": self.output_dir / EXPORTED_SEG},
                           notes=(f"{EXPORTED_SEG} ({size} bytes) handed to the exporter",))
