"""The workflows shipped with the appliance (``definitions/*.yaml``: OrganSeg, LiverSeg).

The schema of a workflow file is :mod:`appliance.settings.workflow`; its names are re-exported
here for the code that works with workflows.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from appliance.settings import workflow as _schema
from appliance.settings.workflow import *  # noqa: F403 - the schema's names, for the code working with workflows
from appliance.settings.workflow import Workflow, load_workflow


def shipped_files() -> list[Path]:
    """The workflow files packaged with the appliance, by name."""
    folder = importlib.resources.files("appliance.workflows") / "definitions"
    return [Path(str(e)) for e in sorted(folder.iterdir(), key=lambda e: e.name) if e.name.endswith((".yaml", ".yml"))]


def shipped_workflows() -> dict[str, Workflow]:
    """The reference workflows packaged with the appliance, by name (OrganSeg, LiverSeg)."""
    return {wf.name: wf for wf in map(load_workflow, shipped_files())}


__all__ = [*_schema.__all__, "shipped_files", "shipped_workflows"]
