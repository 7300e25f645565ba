"""From the OpenArm 2.0 download (Sub<x>/volumes/*.mha, Sub<x>/ground_segs/*) to the OpenArm tree."""
