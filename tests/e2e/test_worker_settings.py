"""The ``worker:`` settings: defaults, validation naming the key, workflow bindings checked at start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from appliance.settings import SettingsError, parse_config
from appliance.worker import WorkflowCatalog

from .e2ekit import APPLIANCE

EXAMPLE = Path(__file__).parents[2] / "examples" / "adapter.yaml"


def _raw() -> dict[str, object]:
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(raw, dict)
    return raw


def test_defaults_and_example() -> None:
    raw = _raw()
    assert parse_config(raw).worker.workers == 2
    del raw["worker"]
    worker = parse_config(raw).worker
    assert (worker.workers, worker.max_concurrent_inference, worker.interrupted, worker.max_resumes) == (
        2, 1, "resume", 2)
    assert worker.triton.http_url is None and worker.workflows_dir is None


def test_triton_key_file_reaches_every_workflow(tmp_path: Path) -> None:
    # worker.triton.key-file: the key of the server's restricted APIs, sent by every workflow's client.
    from appliance.workflows import shipped_workflows
    from appliance.workflows.catalog import triton_settings

    raw = _raw()
    raw["worker"] = {"triton": {"http-url": "127.0.0.1:18000", "key-file": str(tmp_path / "key")}}
    worker = parse_config(raw).worker
    assert worker.triton.key_file == tmp_path / "key"
    for workflow in shipped_workflows().values():
        settings = triton_settings(workflow, worker)
        assert settings.key_file == tmp_path / "key"
        assert settings.url == ("127.0.0.1:18000" if settings.protocol == "http" else workflow.inference.triton.url)
    assert parse_config(_raw()).worker.triton.key_file is None


def test_every_worker_problem_names_its_key() -> None:
    raw = _raw()
    raw["worker"] = {"workers": 0, "max-concurrent-inference": "two", "interrupted": "retry",
                     "triton": {"http-url": "no-port", "grpc": "x"}, "poll-second": 1}
    with pytest.raises(SettingsError) as caught:
        parse_config(raw)
    text = "\n".join(caught.value.problems)
    for expected in ("worker.workers: must be greater than or equal to 1, not 0",
                     "worker.max-concurrent-inference: must be a valid integer, not 'two'",
                     "worker.interrupted: must be 'resume' or 'fail', not 'retry'",
                     "worker.triton.http-url: must be host:port, not 'no-port'",
                     "worker.triton.grpc: unknown key", "worker.poll-second: unknown key"):
        assert expected in text, text


def test_unresolvable_workflow_stops_the_worker_at_start(tmp_path: Path) -> None:
    raw = _raw()
    raw["storage"] = {"root": str(tmp_path / "payloads")}
    raw["dicom"]["scp"]["ae-titles"][1]["workflow"] = "liverseg"  # type: ignore[index]
    config = tmp_path / "adapter.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = subprocess.run([str(APPLIANCE), "worker", "--config", str(config), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "dicom.scp.ae-titles[1].workflow: unknown workflow 'liverseg'" in done.stderr
    assert "did you mean 'LiverSeg'?" in done.stderr


def test_workflows_dir_overrides_and_reports_bad_files(tmp_path: Path) -> None:
    source = WorkflowCatalog.load().resolve("OrganSeg").source
    assert source is not None
    (tmp_path / "organ.yaml").write_text(Path(source).read_text().replace("series_number: 901", "series_number: 77"))
    assert WorkflowCatalog.load(tmp_path).resolve("OrganSeg").writer.series_number == 77
    (tmp_path / "broken.yaml").write_text("name: Broken\n")
    with pytest.raises(ValueError, match="broken.yaml"):
        WorkflowCatalog.load(tmp_path)


def test_concurrency_that_cannot_fit_the_host_stops_the_worker_at_start(tmp_path: Path) -> None:
    from appliance.pipeline.memory import host_memory_mb

    raw = _raw()
    raw["storage"] = {"root": str(tmp_path / "payloads")}
    per_job = host_memory_mb() // 2 + 1
    raw["worker"] = {"workers": 2, "memory-per-job-mb": per_job}
    config = tmp_path / "adapter.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = subprocess.run([str(APPLIANCE), "worker", "--config", str(config), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"worker.memory-per-job-mb: 2 workers x {per_job} MB per job need {2 * per_job} MB" in done.stderr
    raw["worker"] = {"workers": 1, "memory-per-job-mb": per_job}
    config.write_text(yaml.safe_dump(raw))
    done = subprocess.run([str(APPLIANCE), "worker", "--config", str(config), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
