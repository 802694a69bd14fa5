"""Training: per-pair DPO losses, weighting and reduction (``losses``), pair weights from prediction-set
membership (``weights``), which answer pairs the feedback judge compares (``feedback_pairs``), the
released pairs format (``pairs``), and the Ray Train wiring (``ray_train``), SFT and weighted-DPO loops
(``sft``, ``dpo_loop``) with TRL's trainer subclassed minimally (``weighted_dpo``).

May import: torch and the standard library in the pure modules (``losses``, ``weights``,
``feedback_pairs``); transformers, TRL, peft and Ray in the others. Never stages, the pipeline or the CLI.
"""
