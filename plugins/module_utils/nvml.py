"""NVML read through ctypes from the driver's own ``libnvidia-ml.so.1`` (no Ansible imports).

Why not pynvml: Ubuntu 22.04's ``python3-pynvml`` (7.352.0) predates
``nvmlDeviceGetCudaComputeCapability`` and raised AttributeError on every 22.04 GPU host. The library
that comes with the driver always matches the driver, needs no package and no network, and works with
every Python the hosts have. Each function is looked up by name when it is called: one that an older
driver lacks leaves its field ``"unknown"`` with a note saying which call is missing, never a traceback.

Memory is in MiB (2**20 bytes); compute capabilities are ``"major.minor"`` strings.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable
from typing import Any

from ansible.module_utils.nvidia import architecture, diagnose_nvml_error

LIBRARY = "libnvidia-ml.so.1"
SUCCESS = 0
UNKNOWN = "unknown"
# Buffer sizes from nvml.h (NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE, NVML_DEVICE_NAME_V2_BUFFER_SIZE,
# NVML_DEVICE_UUID_V2_BUFFER_SIZE).
DRIVER_VERSION_SIZE = 80
NAME_SIZE = 96
UUID_SIZE = 96
MIB = 1024 * 1024


class MissingFunction(Exception):
    """The loaded NVML has none of the named functions (an older driver)."""


class NvmlError(Exception):
    """An NVML call returned an error code; ``str()`` is NVML's own text for it."""

    def __init__(self, function: str, code: int, text: str) -> None:
        super().__init__(text)
        self.function = function
        self.code = code


class MemoryInfo(ctypes.Structure):
    """nvmlMemory_t: bytes."""

    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class Nvml:
    """Calls into a loaded NVML library (a ``ctypes.CDLL`` or anything with the same attributes)."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib

    def _function(self, names: tuple[str, ...]) -> tuple[str, Callable[..., int]]:
        for name in names:
            function = getattr(self._lib, name, None)
            if function is not None:
                function.restype = ctypes.c_int
                return name, function
        raise MissingFunction(names[0])

    def error_text(self, code: int) -> str:
        """NVML's text for an error code (``nvmlErrorString``), or the number when that call is missing."""
        function = getattr(self._lib, "nvmlErrorString", None)
        if function is None:
            return f"NVML error {code}"
        function.restype = ctypes.c_char_p
        text = function(code)
        return text.decode() if isinstance(text, bytes) else str(text or f"NVML error {code}")

    def call(self, names: tuple[str, ...], *args: Any) -> None:
        """Call the first of *names* the library has; raise NvmlError or MissingFunction."""
        name, function = self._function(names)
        code = function(*args)
        if code != SUCCESS:
            raise NvmlError(name, code, self.error_text(code))

    def text(self, names: tuple[str, ...], size: int, *args: Any) -> str:
        """A string output parameter (buffer of *size* bytes after *args*)."""
        buffer = ctypes.create_string_buffer(size)
        self.call(names, *args, buffer, ctypes.c_uint(size))
        return buffer.value.decode(errors="replace")


def open_library(loader: Callable[[str], Any] = ctypes.CDLL, name: str = LIBRARY) -> Any:
    """Load NVML; raises OSError when the driver's library is not installed."""
    return loader(name)


def _field(notes: list[str], what: str, read: Callable[[], Any]) -> Any:
    """Run *read*; on a missing function or an NVML error, note why and return ``"unknown"``."""
    try:
        return read()
    except MissingFunction as err:
        notes.append(f"{what} unknown: this NVML has no {err} (an older driver)")
    except NvmlError as err:
        notes.append(f"{what} unknown: {err.function} failed ({err})")
    return UNKNOWN


def _device(nvml: Nvml, index: int, notes: list[str]) -> dict[str, Any]:
    handle = ctypes.c_void_p()
    nvml.call(("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"), ctypes.c_uint(index),
              ctypes.pointer(handle))
    label = f"GPU {index}"

    def memory() -> int:
        info = MemoryInfo()
        nvml.call(("nvmlDeviceGetMemoryInfo",), handle, ctypes.pointer(info))
        return int(info.total) // MIB

    def capability() -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        nvml.call(("nvmlDeviceGetCudaComputeCapability",), handle, ctypes.pointer(major), ctypes.pointer(minor))
        return f"{major.value}.{minor.value}"

    cc = _field(notes, f"{label} compute capability", capability)
    return {
        "index": index,
        "name": _field(notes, f"{label} name", lambda: nvml.text(("nvmlDeviceGetName",), NAME_SIZE, handle)),
        "uuid": _field(notes, f"{label} UUID", lambda: nvml.text(("nvmlDeviceGetUUID",), UUID_SIZE, handle)),
        "memory_total_mib": _field(notes, f"{label} memory", memory),
        "compute_capability": cc,
        "architecture": UNKNOWN if cc == UNKNOWN else architecture(cc),
    }


def read(lib: Any, module_version: str | None) -> dict[str, Any]:
    """Driver version and GPUs through NVML, or ``available: False`` with the diagnosed reason.

    *module_version* is the loaded kernel module's version (None when none is loaded), for the
    diagnosis. ``notes`` lists the fields NVML could not give, and why.
    """
    nvml = Nvml(lib)
    try:
        nvml.call(("nvmlInit_v2", "nvmlInit"))
    except (NvmlError, MissingFunction) as err:
        return {"available": False, "reason": diagnose_nvml_error(str(err), module_version), "devices": [],
                "notes": []}
    notes: list[str] = []
    try:
        driver = _field(notes, "driver version",
                        lambda: nvml.text(("nvmlSystemGetDriverVersion",), DRIVER_VERSION_SIZE))
        count = ctypes.c_uint()
        nvml.call(("nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"), ctypes.pointer(count))
        devices = [_device(nvml, index, notes) for index in range(count.value)]
    except (NvmlError, MissingFunction) as err:
        return {"available": False, "reason": diagnose_nvml_error(str(err), module_version), "devices": [],
                "notes": notes}
    finally:
        # Shutting down a library that failed is not worth a second error.
        with contextlib.suppress(NvmlError, MissingFunction):
            nvml.call(("nvmlShutdown",))
    return {"available": True, "reason": "", "driver_version": driver, "devices": devices, "notes": notes}


def facts(module_version: str | None, loader: Callable[[str], Any] = ctypes.CDLL) -> dict[str, Any]:
    """:func:`read` on the host's NVML, or the reason it cannot be loaded."""
    try:
        lib = open_library(loader)
    except OSError as err:
        return {"available": False, "reason": diagnose_nvml_error(str(err), module_version), "devices": [],
                "notes": []}
    return read(lib, module_version)
