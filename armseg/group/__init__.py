"""Assembling a training group from named scans of the subjects (OpenArm's training_groups by hand)."""
