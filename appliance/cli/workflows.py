"""``appliance workflows list|validate``: show the shipped workflows, check a workflow file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.workflows import STAGES, SettingsError, load_workflow, shipped_workflows


def _list(args: argparse.Namespace) -> int:
    workflows = list(shipped_workflows().values())
    for folder in args.dir or ():
        workflows += [load_workflow(p) for p in sorted(Path(folder).glob("*.y*ml"))]
    for wf in workflows:
        labels = ", ".join(label.name for label in wf.labels)
        print(f"{wf.name:<12} model={wf.model.name:<14} stages={'>'.join(STAGES)}  labels: {labels}")
        print(f"{'':<12} {wf.description}  [{wf.source}]")
    return 0


def _validate(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            wf = load_workflow(path)
        except SettingsError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            status = 1
            continue
        print(f"{path}: OK ({wf.name}: {len(wf.labels)} labels, stages {' > '.join(STAGES)})")
    return status


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``workflows`` sub-command with ``list`` and ``validate``."""
    p = sub.add_parser("workflows", help="list the shipped workflows or validate workflow files",
                       description=__doc__)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="list the shipped workflows (and those in --dir)")
    ls.add_argument("--dir", action="append", help="also list the workflow files in this folder (repeatable)")
    ls.set_defaults(func=_list)
    val = actions.add_parser("validate", help="check workflow files; problems name the line and key")
    val.add_argument("files", nargs="+", help="workflow YAML files")
    val.set_defaults(func=_validate)
