"""The exporter is its own service: it starts, checks its configuration, and runs once per job store."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from adapterkit import APPLIANCE, Adapter, Exporter, base_config, free_port


def test_one_exporter_per_job_store(adapter_factory: Callable[..., Adapter], tmp_path: Path) -> None:
    adapter = adapter_factory()  # not started: the exporter needs no adapter
    first = Exporter(adapter.tmp, adapter.config).start()
    try:
        second = subprocess.run([str(APPLIANCE), "exporter", "--config", str(adapter.config_path)],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert "another appliance exporter uses this job store" in second.stdout
        assert first.stop() == 0 and "stopped" in first.log()
    finally:
        first.kill()


def test_check_names_the_destinations(tmp_path: Path) -> None:
    config = base_config(tmp_path, free_port())
    config["dicom"]["scu"]["destinations"] = [{"name": "PACS", "host-ip": "127.0.0.1", "port": 4242,
                                               "ae-title": "ORTHANC"}]
    path = tmp_path / "adapter.yaml"
    Exporter(tmp_path, config)  # writes the file
    done = subprocess.run([str(APPLIANCE), "exporter", "--config", str(path), "--check"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"{path}: OK (destinations: PACS)"
