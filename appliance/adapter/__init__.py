"""The DICOM adapter: receives studies on configured AE titles and groups them into jobs.

Modules, one job each: :mod:`~appliance.adapter.scp` (association policy, C-ECHO, the server's
wiring), :mod:`~appliance.adapter.gate` (connections before A-ASSOCIATE: ARTIM, pending caps,
socket options, shutdown), :mod:`~appliance.adapter.fastpath` (the hand-written C-STORE receiver:
the only code using pynetdicom internals), :mod:`~appliance.adapter.instance` (one instance's
dataset to disk, and its C-STORE status), :mod:`~appliance.adapter.identify` (the dataset walker:
StudyInstanceUID and integrity from raw bytes), :mod:`~appliance.adapter.limits` (limits and the
duplicate policy),
:mod:`~appliance.adapter.grouping` (groups -> jobs), :mod:`~appliance.adapter.wire` (hand-encoded
file meta and C-STORE-RSP, command set parsing), :mod:`~appliance.adapter.service` (the process;
systemd notifications come from :mod:`appliance.systemd`, shared with the other services).
Durable writes and the payload layout are :mod:`appliance.storage`'s; results are sent by the
exporter service (:mod:`appliance.exporter`).
"""

from appliance.adapter.service import Adapter

__all__ = ["Adapter"]
