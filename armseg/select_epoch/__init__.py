"""A chosen epoch of a train run as a new registered model version (OpenArm's select_and_backup_epochs)."""
