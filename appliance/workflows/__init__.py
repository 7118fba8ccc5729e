"""Workflow definitions: YAML files naming the stages, the Triton model and the labels.

:func:`load_workflow` parses and validates one file into a :class:`Workflow`;
:func:`shipped_workflows` lists the reference workflows packaged with the appliance.
"""

from appliance.workflows.loader import WorkflowError, load_workflow, parse_workflow, shipped_workflows
from appliance.workflows.model import (
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
)

__all__ = [
    "CodedConcept",
    "Destination",
    "InferenceSettings",
    "LabelSpec",
    "ModelSpec",
    "ReaderSettings",
    "SeriesRules",
    "TensorSpec",
    "TritonSettings",
    "Workflow",
    "WorkflowError",
    "WriterSettings",
    "load_workflow",
    "parse_workflow",
    "shipped_workflows",
]
