"""A job's log lines: every line of the services' logs that names the job ID.

From the files in ``dashboard.log-files`` when set (services started by hand or by tests log to
files), else from the systemd journal of the appliance's units (``journalctl --grep``, which
needs the dashboard's user in the ``systemd-journal`` group). At most :data:`MAX_LINES` lines,
the newest; a file is read from its last :data:`TAIL_BYTES` bytes only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import deque
from pathlib import Path

#: The systemd units whose journal is searched.
UNITS = ("appliance-adapter.service", "appliance-worker.service", "appliance-exporter.service")
MAX_LINES = 500
TAIL_BYTES = 32 << 20


def from_files(files: tuple[Path, ...], needle: str) -> list[str]:
    """Lines naming ``needle`` in ``files`` (each tagged with its file's name)."""
    found: deque[str] = deque(maxlen=MAX_LINES)
    for path in files:
        try:
            with path.open("rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - TAIL_BYTES))
                data = f.read()
        except OSError as exc:
            found.append(f"[{path.name}] cannot read: {exc.strerror}")
            continue
        tag = path.stem
        found.extend(f"[{tag}] {line}" for line in data.decode("utf-8", "replace").splitlines() if needle in line)
    return list(found)


def from_journal(needle: str, timeout: float = 10.0) -> list[str]:
    """Lines naming ``needle`` in the journal of :data:`UNITS`, oldest first."""
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        return ["(no journalctl on this host: set dashboard.log-files)"]
    command = [journalctl, "--no-pager", "-o", "json", "-n", str(MAX_LINES), "--grep", _literal(needle)]
    for unit in UNITS:
        command += ["-u", unit]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"(journalctl failed: {exc})"]
    lines = []
    for raw in done.stdout.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        unit = str(entry.get("_SYSTEMD_UNIT", "?")).removeprefix("appliance-").removesuffix(".service")
        lines.append(f"[{unit}] {entry.get('MESSAGE', '')}")
    if not lines and done.returncode not in (0, 1) and done.stderr.strip():
        return [f"(journalctl: {done.stderr.strip()})"]
    return lines


def _literal(text: str) -> str:
    # journalctl --grep takes a PCRE2 pattern; job IDs contain dots.
    return "".join("\\" + c if not c.isalnum() else c for c in text)


def job_lines(files: tuple[Path, ...], job_id: str) -> list[str]:
    """The job's log lines, from ``files`` if any, else the journal."""
    return from_files(files, job_id) if files else from_journal(job_id)
