"""The operator's dashboard and result viewer (``appliance dashboard``): a service like the adapter,
worker and exporter, that reads the job store and payload folders and acts through the job store.

Modules, one job each:

* :mod:`~appliance.dashboard.app`: the ASGI application (routes, security headers);
* :mod:`~appliance.dashboard.auth`: passwords, sessions, roles, CSRF;
* :mod:`~appliance.dashboard.actions`: the operator's actions, checked and audited;
* :mod:`~appliance.dashboard.joblist`, :mod:`~appliance.dashboard.details`: the jobs list, its
  filters, study details read from the first instance, and the feed behind live updates;
* :mod:`~appliance.dashboard.timeline`, :mod:`~appliance.dashboard.logs`: a job's history and log lines;
* :mod:`~appliance.dashboard.health`, :mod:`~appliance.dashboard.metrics`: the health page and ``/metrics``;
* :mod:`~appliance.dashboard.results`, :mod:`~appliance.dashboard.previews`,
  :mod:`~appliance.dashboard.viewer`: a result's CT and SEG, its PNG previews, the viewer's volumes;
* :mod:`~appliance.dashboard.service`: the process (uvicorn, TLS, systemd).

Templates and static files (the vendored NiiVue viewer library among them) ship in the package.
"""
