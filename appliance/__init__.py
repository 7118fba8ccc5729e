"""GPU medical-imaging AI appliance: DICOM in, job, pipeline stages, DICOM out."""

__version__ = "0.1.0"
