"""The conformal method: answer tables, nonconformity scores, similarity, thresholds, the (w1, w2) grid search and calibration, and the Ray tasks that fan the grid out."""
