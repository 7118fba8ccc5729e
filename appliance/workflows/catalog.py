"""Which workflow a job runs: the shipped definitions plus an optional folder of workflow files
(``worker.workflows-dir``). The worker resolves jobs with it; the dashboard finds the models to
health-check with it.

A job carries a workflow *name* (from its AE title's ``workflow`` in the adapter configuration).
Names resolve exactly (case-sensitive) against the workflows in ``worker.workflows-dir`` first,
then the shipped ones (``OrganSeg``, ``LiverSeg``), so a site can override a shipped workflow by
giving its own file the same ``name``.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.settings import AeTitleConfig, SettingsError, TritonSettings, WorkerConfig, Workflow, load_workflow
from appliance.settings.source import Loc
from appliance.workflows import shipped_workflows


class UnknownWorkflow(LookupError):
    """No workflow has the name; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class WorkflowCatalog:
    """Workflows by name; ``directory`` is where site definitions came from (None: shipped only)."""

    workflows: dict[str, Workflow]
    directory: Path | None = None

    @classmethod
    def load(cls, directory: Path | None = None) -> WorkflowCatalog:
        """Shipped workflows, overridden and extended by ``directory/*.yaml|*.yml``.

        Raises:
            SettingsError: a file in the folder is invalid (all problems of all files listed).
            OSError: the folder cannot be read.
        """
        found = shipped_workflows()
        if directory is None:
            return cls(found)
        problems: list[str] = []
        for path in sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml")):
            try:
                workflow = load_workflow(path)
            except SettingsError as exc:
                problems.extend(exc.problems)
                continue
            found[workflow.name] = workflow
        if problems:
            raise SettingsError(problems)
        return cls(found, directory)

    def resolve(self, name: str) -> Workflow:
        """The workflow called ``name``; raise :class:`UnknownWorkflow` saying what exists."""
        try:
            return self.workflows[name]
        except KeyError:
            pass
        close = difflib.get_close_matches(name, list(self.workflows), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        where = f"shipped and in {self.directory}" if self.directory else "shipped; worker.workflows-dir adds more"
        raise UnknownWorkflow(f"unknown workflow {name!r}; known: {', '.join(sorted(self.workflows))} ({where}){hint}")

    def check_bindings(self, ae_titles: Iterable[AeTitleConfig]) -> list[tuple[Loc, str]]:
        """Problems, one per AE title whose workflow does not resolve, with its key path."""
        problems: list[tuple[Loc, str]] = []
        for i, ae in enumerate(ae_titles):
            try:
                self.resolve(ae.workflow)
            except UnknownWorkflow as exc:
                problems.append((("dicom", "scp", "ae-titles", i, "workflow"), str(exc)))
        return problems


def triton_settings(workflow: Workflow, config: WorkerConfig) -> TritonSettings:
    """The workflow's Triton settings with the URL ``worker.triton`` sets for its protocol, if any,
    and the key file it names."""
    own = workflow.inference.triton
    url = config.triton.http_url if own.protocol == "http" else config.triton.grpc_url
    return dataclasses.replace(own, url=url or own.url, key_file=config.triton.key_file or own.key_file)
