"""Training a U-Net on a group: config (ini + params), data (split, tf.data), callbacks, the run."""
