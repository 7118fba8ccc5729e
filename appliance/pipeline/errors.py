"""Exceptions raised by the pipeline stages; each message says what failed and what to check."""

from __future__ import annotations


class PipelineError(RuntimeError):
    """Base class: a stage could not do its job."""


class SeriesSelectionError(PipelineError):
    """No series in the job's input matches the workflow's selection rules."""


class CorruptSeriesError(PipelineError):
    """The chosen series cannot be read or is inconsistent (missing attributes, mixed geometry)."""


class SeriesTooLargeError(PipelineError):
    """The series needs more memory than one job may use (``worker.memory-per-job-mb``)."""


class GeometryError(PipelineError):
    """Slice gaps, uneven spacing or gantry tilt, with the workflow set to ``geometry: error``."""


class InferenceError(PipelineError):
    """The model server rejected or failed a request."""


class ServerUnavailableError(InferenceError):
    """The Triton server cannot be reached or is not ready."""


class ModelNotFoundError(InferenceError):
    """The server runs, but the workflow's model is not in its repository."""


class ModelNotReadyError(InferenceError):
    """The model is in the repository but not loaded (e.g. it failed to load)."""


class ShapeMismatchError(InferenceError):
    """The model's inputs or outputs do not match what the workflow declares."""


class WriterError(PipelineError):
    """The DICOM SEG (or mask files) could not be written."""
