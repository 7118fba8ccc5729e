"""The DICOM adapter: receives studies on configured AE titles, groups them into jobs, exports results.

Modules, one job each: :mod:`~appliance.adapter.scp` (association policy, C-STORE/C-ECHO),
:mod:`~appliance.adapter.transport` (socket tuning of pynetdicom), :mod:`~appliance.adapter.durable`
(atomic, fsynced writes), :mod:`~appliance.adapter.identify` (StudyInstanceUID from raw bytes),
:mod:`~appliance.adapter.grouping` (groups -> jobs), :mod:`~appliance.adapter.systemd` (sd_notify),
:mod:`~appliance.adapter.service` (the process).
"""

from appliance.adapter.service import Adapter

__all__ = ["Adapter"]
