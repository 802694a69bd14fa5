"""Ray bootstrap (join a cluster or start a local Ray) and the deterministic fault points the
fault-tolerance tests set through the environment (a test hook, see ``faults``)."""
