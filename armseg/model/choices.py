"""The names a user may choose for the network, importable without Keras (for parsers and `--help`)."""

NORMALIZATIONS = ("slice", "mean")
LOSSES = ("ce", "dice", "ce+dice")
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
# Label map presets (`--labels`), defined in armseg.io.labels; named here for --help without numpy.
LABEL_PRESETS = ("openarm", "openarm-all")
