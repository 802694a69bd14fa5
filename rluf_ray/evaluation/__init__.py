"""Evaluation of trained arms: which comparisons to ask, win rates, rubric means and paired bootstrap intervals (pure)."""
