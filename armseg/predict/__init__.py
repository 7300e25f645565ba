"""Segmenting whole scans with logged U-Nets: which model a name means, and volume inference."""
