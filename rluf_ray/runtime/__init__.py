"""Ray bootstrap (``bootstrap``: join the job's cluster or start a local Ray sized to the machine, turn a
failed Ray call into a one-line user error) and deterministic fault points for the fault tests (``faults``).

May import: Ray, the standard library, ``rluf_ray.common`` and ``rluf_ray.errors``. Never stages, the
pipeline or the CLI.
"""
