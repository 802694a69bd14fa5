"""Pipeline stages: the only layer that imports Ray."""
