"""Storage every service shares: durable file writes and the payload folder layout.

:mod:`~appliance.storage.durable` writes files so that a reader (or a restart after a crash) sees
either the whole file or nothing; :mod:`~appliance.storage.layout` says where a job's files are
(the job ID is its payload folder's name); :mod:`~appliance.storage.filesystem` tells a network
filesystem (a shared spool) from a local one. Policy (what to keep, when to delete) is not here.
"""

from appliance.storage.durable import TEMP_PREFIX, DurableFile, fsync_dir, make_dirs, remove_temporaries, write_durably
from appliance.storage.filesystem import NETWORK_FILESYSTEMS, Mount, mount_of
from appliance.storage.layout import JOB_ID, PayloadLayout

__all__ = [
    "JOB_ID",
    "NETWORK_FILESYSTEMS",
    "TEMP_PREFIX",
    "DurableFile",
    "Mount",
    "PayloadLayout",
    "fsync_dir",
    "make_dirs",
    "mount_of",
    "remove_temporaries",
    "write_durably",
]
