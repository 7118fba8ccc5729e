"""The health page's checks: the services' heartbeats, Triton per model, the GPU, the storage
root's free space, and a C-ECHO to a destination. Each check returns what it saw and never
raises for what it checks (a Triton that is down is a result, not an error).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from tritonclient import grpc as grpcclient
from tritonclient import http as httpclient

from appliance.dicomnet import nodelay, requestor
from appliance.jobs import JobStore, control
from appliance.settings import AdapterConfig, DestinationConfig
from appliance.workflows.catalog import WorkflowCatalog, triton_settings

#: The services every host runs; a missing heartbeat shows as "never seen".
SERVICES = ("adapter", "worker", "exporter")
CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ServiceHealth:
    """One service as its heartbeat tells: ``state`` is running, stopped, dead or never seen."""

    name: str
    state: str
    host: str = ""
    pid: int = 0
    seen_s_ago: float | None = None
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def associations(self) -> list[dict[str, str]]:
        """The adapter's associations open at its last heartbeat."""
        found = self.status.get("associations", [])
        return found if isinstance(found, list) else []


def services(store: JobStore, now: float | None = None) -> list[ServiceHealth]:
    """Every service's health from its last heartbeat on each host (see :mod:`appliance.jobs.control`;
    a fleet has an adapter, worker and exporter per host), and the services never seen anywhere."""
    now = time.time() if now is None else now
    beats = control.services(store.db)
    out = [ServiceHealth(name, "never seen") for name in SERVICES if name not in {b.name for b in beats}]
    for beat in beats:
        stopped = beat.beat_at == 0  # a clean stop (ServiceHeartbeat.stopped)
        state = "stopped" if stopped else "running" if beat.alive(now, control.HEARTBEAT_SECONDS) else "dead"
        out.append(ServiceHealth(beat.name, state, beat.host, beat.pid, None if stopped else now - beat.beat_at,
                                 beat.status))
    return sorted(out, key=lambda s: (s.name, s.host))


@dataclass(frozen=True)
class ModelHealth:
    """A model a workflow uses, on the server that workflow calls."""

    workflow: str
    model: str
    url: str
    protocol: str
    live: bool
    ready: bool
    model_ready: bool
    error: str = ""


def _client(url: str, protocol: str) -> Any:
    if protocol == "http":
        return httpclient.InferenceServerClient(url, connection_timeout=CHECK_TIMEOUT_S,
                                                network_timeout=CHECK_TIMEOUT_S)
    return grpcclient.InferenceServerClient(url)


def triton(config: AdapterConfig) -> list[ModelHealth]:
    """Live, ready and model-ready for the model of each workflow an AE title uses."""
    try:
        catalog = WorkflowCatalog.load(config.worker.workflows_dir)
    except Exception as exc:  # noqa: BLE001 - shown on the page
        return [ModelHealth("?", "?", "?", "?", False, False, False, f"workflows: {exc}")]
    out = []
    for name in sorted({a.workflow for a in config.dicom.scp.ae_titles}):
        workflow = catalog.workflows.get(name)
        if workflow is None:
            out.append(ModelHealth(name, "?", "?", "?", False, False, False, "unknown workflow"))
            continue
        settings = triton_settings(workflow, config.worker)
        url = settings.url.split("://", 1)[-1]
        extra: dict[str, Any] = {} if settings.protocol == "http" else {"client_timeout": CHECK_TIMEOUT_S}
        live = ready = model_ready = False
        error = ""
        try:
            client = _client(url, settings.protocol)
            try:
                live = bool(client.is_server_live(**extra))
                ready = bool(client.is_server_ready(**extra))
                model_ready = bool(client.is_model_ready(workflow.model.name, **extra))
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - unreachable is a result
            error = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        out.append(ModelHealth(name, workflow.model.name, url, settings.protocol, live, ready, model_ready, error))
    return out


@dataclass(frozen=True)
class GpuHealth:
    """One GPU as NVML reports it; utilisation in percent, memory in MiB, temperature in °C."""

    index: int
    name: str
    utilisation_percent: int
    memory_used_mib: int
    memory_total_mib: int
    temperature_c: int
    driver: str


def gpus() -> tuple[list[GpuHealth], str]:
    """The GPUs and a note: ``"no GPU"`` where NVML or its driver is missing or sees none."""
    try:
        import pynvml
    except ImportError:
        return [], "no GPU (nvidia-ml-py is not installed)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return [], "no GPU (no NVIDIA driver)"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        found = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            use = pynvml.nvmlDeviceGetUtilizationRates(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            temperature = pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
            found.append(GpuHealth(i, name.decode() if isinstance(name, bytes) else str(name), int(use.gpu),
                                   int(memory.used) >> 20, int(memory.total) >> 20, int(temperature), driver))
        return found, "" if found else "no GPU (the driver sees none)"
    except pynvml.NVMLError as exc:
        return [], f"NVML error: {exc}"
    finally:
        pynvml.nvmlShutdown()


@dataclass(frozen=True)
class StorageHealth:
    """Free space of the storage root against the headroom thresholds (percent of the filesystem)."""

    path: Path
    total_bytes: int
    free_bytes: int
    free_percent: float
    level: str  #: ok, warning or critical
    warn_percent: float
    min_percent: float


def storage(config: AdapterConfig) -> StorageHealth:
    """The storage root's filesystem: free space and its level against ``dashboard.storage-*``."""
    root = config.storage.root
    usage = shutil.disk_usage(root if root.exists() else Path(os.path.abspath(os.sep)))
    free = 100.0 * usage.free / usage.total if usage.total else 0.0
    settings = config.dashboard
    level = ("critical" if free < settings.storage_min_free_percent
             else "warning" if free < settings.storage_warn_free_percent else "ok")
    return StorageHealth(root, usage.total, usage.free, round(free, 1), level, settings.storage_warn_free_percent,
                         settings.storage_min_free_percent)


@dataclass(frozen=True)
class EchoResult:
    """A C-ECHO to a destination: ``ok``, the status or why there was no association, and the time."""

    destination: str
    ok: bool
    detail: str
    seconds: float


def echo(destination: DestinationConfig, calling_ae: str, timeout: float = 5.0) -> EchoResult:
    """One C-ECHO from ``calling_ae`` to ``destination`` (``timeout`` s for each step)."""
    t0 = time.perf_counter()
    ae = requestor(calling_ae, timeout)
    ae.add_requested_context(Verification)
    assoc = ae.associate(destination.host_ip, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        detail = "association rejected" if assoc.is_rejected else "no association (refused, reset or timed out)"
        return EchoResult(destination.name, False, detail, time.perf_counter() - t0)
    try:
        status = nodelay(assoc).send_c_echo()
        code = getattr(status, "Status", None)
        ok = code == 0
        detail = "success (0x0000)" if ok else ("no response" if code is None else f"status 0x{int(code):04X}")
    finally:
        assoc.release()
    return EchoResult(destination.name, ok, detail, time.perf_counter() - t0)
