"""The names under which trained U-Nets live in MLflow, importable without loading TensorFlow
(`predict`'s model resolution, `evaluate` and `--help` must not pay for Keras)."""

REGISTERED_MODEL = "armseg-unet"
MODEL_ARTIFACT = "model"
GROUP_TAG = "armseg.group"
