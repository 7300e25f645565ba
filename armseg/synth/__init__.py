"""Phantom arm scans with exact labels, written as a complete OpenArm tree (`armseg synth`).

`phantom` makes one scan (anatomy along the arm, then B-mode image formation), `tree` writes
subjects and training groups, `montage` draws a scan and its labels.
"""

from armseg.synth.montage import save_montage
from armseg.synth.phantom import SubjectAnatomy, sample_subject, synth_scan
from armseg.synth.tree import SynthSummary, Trial, write_tree

__all__ = ["SubjectAnatomy", "SynthSummary", "Trial", "sample_subject", "save_montage",
           "synth_scan", "write_tree"]
