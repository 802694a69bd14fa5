"""Human-facing reports of a run: plots (PNG bytes) and the HTML report, for the stages to store as
artifacts.

May import: matplotlib, numpy, the standard library, the artifact store and the calibration results
it draws. Never Ray, stages or the pipeline.
"""
