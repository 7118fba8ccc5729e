"""Disk headroom against kubelet's image garbage collection and eviction thresholds.

kubelet starts deleting images when the image filesystem's usage passes
``imageGCHighThresholdPercent`` (85 % by default) and deletes down to ``imageGCLowThresholdPercent``
(80 %); it evicts pods when ``imagefs.available`` / ``nodefs.available`` fall below their
``evictionHard`` values (15 % / 10 % by default). Percentages here are of the filesystem's usable
size (used + available to unprivileged users), as ``df`` reports ``Use%``.
"""

from __future__ import annotations

import math
import re
from typing import Any

GB = 1_000_000_000
_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def available_threshold_percent(value: str, usable_bytes: int) -> float:
    """An evictionHard 'available' threshold ("15%", "10Gi") as a percent of *usable_bytes*."""
    text = str(value).strip()
    if text.endswith("%"):
        return float(text[:-1])
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kMGT]i?)?", text)
    if not match:
        raise ValueError(f"not a kubelet quantity: {value!r} (expected e.g. 15% or 10Gi)")
    number = float(match.group(1)) * _UNITS[match.group(2) or ""]
    return 100.0 * number / usable_bytes if usable_bytes else 100.0


def check(fs: dict[str, Any], kinds: list[str], gc_high: float, gc_low: float,
          eviction_hard: dict[str, str], incoming_bytes: int) -> dict[str, Any]:
    """Judge one filesystem that holds *kinds* ("imagefs", "nodefs") of kubelet data.

    *fs* has used_bytes, avail_bytes, size_bytes and mount (as the filesystem_facts module gives).
    *incoming_bytes* (images to be loaded) count only on an image filesystem. Returns the
    figures, the limit that applies, ok, and a message naming the numbers and the fix.
    """
    used, avail = int(fs["used_bytes"]), int(fs["avail_bytes"])
    usable = used + avail
    incoming = incoming_bytes if "imagefs" in kinds else 0
    limits: list[tuple[float, str]] = []
    if "imagefs" in kinds:
        limits.append((float(gc_high), f"kubelet's image GC high threshold of {gc_high:g}% "
                                       f"(it then deletes images down to {gc_low:g}%)"))
        if "imagefs.available" in eviction_hard:
            threshold = eviction_hard["imagefs.available"]
            pct = available_threshold_percent(threshold, usable)
            limits.append((100.0 - pct, f"the imagefs.available<{threshold} eviction threshold"))
    if "nodefs" in kinds and "nodefs.available" in eviction_hard:
        threshold = eviction_hard["nodefs.available"]
        pct = available_threshold_percent(threshold, usable)
        limits.append((100.0 - pct, f"the nodefs.available<{threshold} eviction threshold"))
    limit, reason = min(limits) if limits else (100.0, "a full disk")
    now_pct = 100.0 * used / usable if usable else 100.0
    after_pct = 100.0 * (used + incoming) / usable if usable else 100.0
    ok = after_pct < limit
    # Free enough that usage after loading stays strictly below the limit.
    free_needed = max(0, math.floor(used + incoming - (limit / 100.0) * usable) + 1) if not ok else 0
    result = {
        "mount": fs["mount"], "kinds": kinds, "size_gb": round(fs["size_bytes"] / GB, 2),
        "used_gb": round(used / GB, 2), "avail_gb": round(avail / GB, 2), "usable_gb": round(usable / GB, 2),
        "used_percent": round(now_pct, 1),
        "incoming_gb": round(incoming / GB, 2), "after_percent": round(after_pct, 1),
        "limit_percent": round(limit, 1), "limit_reason": reason, "ok": ok,
        "free_needed_gb": round(free_needed / GB, 2),
    }
    # Blocks reserved for root (or held back by the storage below) count in neither figure; name them
    # when they matter, or "used of 270 GB = 90 %" reads as a wrong sum.
    reserved = int(fs["size_bytes"]) - usable
    raw = (f" (the filesystem is {result['size_gb']} GB; {round(reserved / GB, 2)} GB of it is reserved)"
           if reserved > 0.05 * usable else "")
    load = f"; loading {result['incoming_gb']} GB of images brings it to {result['after_percent']}%" if incoming else ""
    result["message"] = (
        f"{fs['mount']} (holds {' and '.join(kinds)}): {result['used_gb']} GB used of {result['usable_gb']} GB "
        f"usable = {result['used_percent']}%{raw}{load}"
        + ("" if ok else
           f", past the {result['limit_percent']}% limit set by {reason}. Fix: move the image store to a larger "
           f"disk with playbooks/relocate-data-root.yml (-e data_root_target=/mnt/...), or free "
           f"{result['free_needed_gb']} GB on {fs['mount']}")
    )
    return result
