"""Where artifacts live: the artifact store (``artifacts``: URI-first through pyarrow.fs, atomic writes,
manifest last), Parquet part files of the engine pool (``parts``), what counts as a URI and which
output directories a cluster can share (``locations``), and models handed between nodes as locations
with a per-node cache (``model_cache``).

May import: pyarrow, the standard library, ``rluf_ray.common``, ``rluf_ray.schema``, ``rluf_ray.data``
(to build an embedded model on a node) and Ray (``locations`` only). Never stages, the pipeline or the CLI.
"""
