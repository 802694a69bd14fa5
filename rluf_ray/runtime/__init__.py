"""Ray bootstrap (join a cluster or start a local Ray) and deterministic fault points."""
