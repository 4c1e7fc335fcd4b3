"""Hyperparameter search (`mnist tune`) on Optuna: spaces, the study, and its worker processes."""
