"""Human-facing reports of a run: plots (PNG bytes) for the stages to store as artifacts."""
