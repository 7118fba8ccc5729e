"""Settings: one typed schema for the services' configuration file and for workflow files.

* :mod:`~appliance.settings.config`: ``/etc/appliance/adapter.yaml``, read by the adapter, the
  worker, the exporter, the dashboard and ``appliance jobs`` (:func:`load_config`).
* :mod:`~appliance.settings.workflow`: workflow files (:func:`load_workflow`).
* :mod:`~appliance.settings.types`: the value types both share (strict numbers, AE titles, UIDs ...).
* :mod:`~appliance.settings.source`: YAML to typed settings; every problem is reported at once as
  ``FILE:LINE: key.path: message`` (:class:`SettingsError`).

Each section is a frozen dataclass validated by pydantic: unknown keys are errors, choices are
``Literal`` types, numbers are never converted from strings or booleans.

**Adding a setting** takes one line in the section's dataclass, with a default so that existing
files stay valid, and its meaning and unit in the description::

    max_instances: Annotated[Int, Field(ge=1, description="(new) instances per study, at most")] = 100000

The key is the field name (kebab-case in the configuration file: ``max-instances``). Then add
its row to the table in docs/adapter.md or docs/pipeline.md (``tests/unit/test_settings_docs.py``
fails until the table lists it), and, for a setting the appliance role exposes, the role variable
(``roles/appliance``: defaults, README, argument_specs, the template). A rule between several
values is an ``AfterValidator`` raising :func:`~appliance.settings.types.conflict`.
"""

from appliance.settings.config import (
    ROLES,
    AdapterConfig,
    AeTitleConfig,
    CompletionConfig,
    DashboardConfig,
    DashboardUser,
    DestinationConfig,
    DicomConfig,
    ExportConfig,
    RetentionConfig,
    ScpConfig,
    ScpTlsConfig,
    ScuConfig,
    ScuTlsConfig,
    SourceConfig,
    StorageConfig,
    TritonUrls,
    VerificationConfig,
    WorkerConfig,
    config_problems,
    load_config,
    parse_config,
)
from appliance.settings.source import SettingsError
from appliance.settings.workflow import (
    STAGES,
    CodedConcept,
    Destination,
    InferenceSettings,
    LabelSpec,
    ModelSpec,
    ReaderSettings,
    SeriesRules,
    TensorSpec,
    TritonSettings,
    Workflow,
    WriterSettings,
    load_workflow,
    parse_workflow,
)

__all__ = [
    "ROLES",
    "STAGES",
    "AdapterConfig",
    "AeTitleConfig",
    "CodedConcept",
    "CompletionConfig",
    "DashboardConfig",
    "DashboardUser",
    "Destination",
    "DestinationConfig",
    "DicomConfig",
    "ExportConfig",
    "RetentionConfig",
    "InferenceSettings",
    "LabelSpec",
    "ModelSpec",
    "ReaderSettings",
    "ScpConfig",
    "ScpTlsConfig",
    "ScuConfig",
    "ScuTlsConfig",
    "SeriesRules",
    "SettingsError",
    "SourceConfig",
    "StorageConfig",
    "TensorSpec",
    "TritonSettings",
    "TritonUrls",
    "VerificationConfig",
    "WorkerConfig",
    "Workflow",
    "WriterSettings",
    "config_problems",
    "load_config",
    "load_workflow",
    "parse_config",
    "parse_workflow",
]
