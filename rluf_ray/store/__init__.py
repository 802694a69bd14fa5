"""Where artifacts live: the artifact store (URI-first, atomic writes, manifest last), Parquet part files, model locations and the per-node model cache."""
