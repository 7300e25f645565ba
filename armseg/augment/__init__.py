"""Augmented copies of a training group's scans (`armseg augment`): rotation about the arm's long
axis (`rotation`) and smooth elastic deformation (`elastic`), written as new trial folders beside
the originals (`copies`, `write`)."""
