"""The names a user may choose for the network, importable without Keras (for parsers and `--help`)."""

NORMALIZATIONS = ("slice", "mean")
LOSSES = ("ce", "dice", "ce+dice")
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
# Label map presets (`--labels`), defined in armseg.io.labels; named here for --help without numpy.
LABEL_PRESETS = ("openarm", "openarm-all")

# Predict's refinements (armseg.model.pyfunc keeps the same defaults for served models: the logged
# model imports nothing of armseg; tests/test_predict.py checks the two agree).
DEFAULT_TTA = True
DEFAULT_LARGEST_COMPONENT = True
DEFAULT_FILL_HOLES = True
DEFAULT_SLICE_VOTE = 5
