"""Evaluation of the trained arms (pure): which pairwise comparisons to ask and in which order, what each
reply means, win rates and rubric means (``arm_comparison``), and paired bootstrap intervals (``intervals``).

May import: numpy and the standard library. No Ray, no files.
"""
