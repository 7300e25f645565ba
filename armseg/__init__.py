"""armseg: ultrasound arm segmentation, every step an MLflow run."""
