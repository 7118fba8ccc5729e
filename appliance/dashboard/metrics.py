"""``/metrics`` in the Prometheus text format (version 0.0.4), made from the job store on each scrape.

* ``appliance_jobs{state}``: jobs per state (gauge);
* ``appliance_stage_duration_seconds{stage}``: pipeline stage durations (histogram);
* ``appliance_instances_received_total``: instances the adapter stored (counter; ``rate()`` is
  the ingest rate);
* ``appliance_export_tries_total{destination,outcome}``: export tries, failures included (counter);
* ``appliance_service_up{service}``: 1 while a service's heartbeat is fresh (gauge);
* ``appliance_adapter_associations``: associations open at the adapter's last heartbeat (gauge).
"""

from __future__ import annotations

import bisect
from collections import defaultdict

from appliance.dashboard.health import ServiceHealth
from appliance.jobs import JobStore, stats

#: Upper bounds of the stage duration buckets, seconds.
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(store: JobStore, services: list[ServiceHealth]) -> str:
    """The exposition text."""
    lines = ["# HELP appliance_jobs Jobs in each state.", "# TYPE appliance_jobs gauge"]
    lines += [f'appliance_jobs{{state="{s.value}"}} {n}' for s, n in stats.jobs_by_state(store.db).items()]

    lines += ["# HELP appliance_stage_duration_seconds Duration of pipeline stage runs.",
              "# TYPE appliance_stage_duration_seconds histogram"]
    by_stage: dict[str, list[float]] = defaultdict(list)
    for stage, seconds in stats.stage_durations(store.db):
        by_stage[stage].append(seconds)
    for stage, values in sorted(by_stage.items()):
        values.sort()
        name = _label(stage)
        for bound in BUCKETS:
            lines.append(f'appliance_stage_duration_seconds_bucket{{stage="{name}",le="{bound}"}} '
                         f"{bisect.bisect_right(values, bound)}")
        lines.append(f'appliance_stage_duration_seconds_bucket{{stage="{name}",le="+Inf"}} {len(values)}')
        lines.append(f'appliance_stage_duration_seconds_sum{{stage="{name}"}} {sum(values):.6f}')
        lines.append(f'appliance_stage_duration_seconds_count{{stage="{name}"}} {len(values)}')

    lines += ["# HELP appliance_instances_received_total Instances stored by the adapter.",
              "# TYPE appliance_instances_received_total counter",
              f"appliance_instances_received_total {stats.instances_received(store.db)}"]

    lines += ["# HELP appliance_export_tries_total Export tries by destination and outcome "
              "(sent, transient, failed, skipped).", "# TYPE appliance_export_tries_total counter"]
    lines += [f'appliance_export_tries_total{{destination="{_label(d)}",outcome="{_label(o)}"}} {n}'
              for (d, o), n in sorted(stats.export_outcomes(store.db).items())]

    lines += ["# HELP appliance_service_up Whether the service's heartbeat is fresh.",
              "# TYPE appliance_service_up gauge"]
    lines += [f'appliance_service_up{{service="{_label(s.name)}",host="{_label(s.host)}"}} {int(s.state == "running")}'
              for s in services]
    open_now = sum(len(s.associations) for s in services if s.name == "adapter" and s.state == "running")
    lines += ["# HELP appliance_adapter_associations Associations open at the adapters' last heartbeats.",
              "# TYPE appliance_adapter_associations gauge",
              f"appliance_adapter_associations {open_now}"]
    return "\n".join(lines) + "\n"
