"""Experiment tracking of a pipeline run: the tracked run and its child runs (``runs``: MLflow's local
store or W&B, from the driver) and the flat name -> number metrics it logs (``metrics``, pure).

May import: mlflow / wandb lazily (``runs``), the standard library. Never stages, the pipeline or the CLI.
"""
