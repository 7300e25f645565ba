"""Optuna search over train's hyperparameters, each trial a nested MLflow train run."""
