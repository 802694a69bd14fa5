"""Experiment tracking (MLflow, W&B) of a pipeline run and the flat metrics it logs."""
