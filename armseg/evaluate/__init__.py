"""Scoring predictions against ground truth, and the cross-model accuracy table."""
