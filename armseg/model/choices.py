"""The names a user may choose for the network, importable without Keras (for parsers and `--help`)."""

NORMALIZATIONS = ("slice", "mean")
LOSSES = ("ce", "dice", "ce+dice")
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
