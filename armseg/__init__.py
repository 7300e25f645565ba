"""armseg: ultrasound arm segmentation, every step an MLflow run."""

__version__ = "0.2.0"
