"""What segmentations are for: muscle volume, cross-section and thickness along the arm, by
elbow angle and load, from the ground truth and from every model (`armseg measure`).

`shapes` measures a label map (pure NumPy), `agreement` compares a model with the truth,
`figures` draws, `run` logs it all as MLflow runs; `names` holds every tag and metric name.
No TensorFlow here: measuring must start fast.
"""
