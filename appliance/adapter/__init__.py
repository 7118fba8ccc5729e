"""The DICOM adapter: receives studies on configured AE titles and groups them into jobs.

Modules, one job each: :mod:`~appliance.adapter.scp` (association policy, C-ECHO, the SCP),
:mod:`~appliance.adapter.pdata` (C-STORE P-DATA read off the socket and written as it arrives),
:mod:`~appliance.adapter.instance` (one instance's dataset to disk, and its C-STORE status),
:mod:`~appliance.adapter.transport` (socket tuning of pynetdicom),
:mod:`~appliance.adapter.identify` (StudyInstanceUID from raw bytes),
:mod:`~appliance.adapter.grouping` (groups -> jobs), :mod:`~appliance.adapter.wire` (hand-encoded
file meta and C-STORE-RSP, command set parsing), :mod:`~appliance.adapter.service` (the process;
systemd notifications come from :mod:`appliance.systemd`, shared with the other services).
Durable writes and the payload layout are :mod:`appliance.storage`'s; results are sent by the
exporter service (:mod:`appliance.exporter`).
"""

from appliance.adapter.service import Adapter

__all__ = ["Adapter"]
