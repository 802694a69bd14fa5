"""The conformal method: answer frequency tables (``answers``), nonconformity scores
(``nonconformity``), the similarity term (``similarity``; its gensim model in ``similarity_model``),
thresholds and prediction sets (``thresholds``), the (w1, w2) grid search (``grid_search``) and
calibration end to end (``calibration``); ``grid_tasks`` fans the grid out as Ray CPU tasks.

May import: numpy, the standard library and ``rluf_ray.common`` in the pure modules; gensim (in a
subprocess) and Ray in ``similarity_model`` and ``grid_tasks``. Never stages, the pipeline or the CLI.
"""
