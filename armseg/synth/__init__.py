"""Phantom arm scans with exact labels, written as a complete OpenArm tree (`armseg synth`).

`phantom` makes one scan (anatomy along the arm, then B-mode image formation), `tree` writes
subjects and training groups, `montage` draws a scan and its labels.
"""
