"""Registration-based segmentation baseline: SimpleITK rigid -> affine -> B-spline (`armseg register`)."""
