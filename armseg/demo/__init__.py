"""The whole pipeline on a phantom: synth -> augment -> train -> predict -> register -> evaluate -> table."""
