"""Augmented copies of a training group's scans: rotation about the arm's long axis and
smooth elastic deformation, written as new trial folders beside the originals."""

from armseg.augment.elastic import deform_pair, displacement_field
from armseg.augment.rotation import rotate_pair, rotation_transform

__all__ = ["deform_pair", "displacement_field", "rotate_pair", "rotation_transform"]
