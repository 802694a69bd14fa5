"""The arms of the experiment (pure): the models the pipeline trains and compares.

``cfa`` is weighted DPO with the CFA weights; ``dpo`` is the same trainer on the same pairs with every
weight 1.0 (the baseline a weighted method is judged against); ``sft`` is the supervised model both
start from. ``TRAIN_ARMS`` are the arms ``rluf train`` trains (``dpo.arms``); ``ARM_ORDER`` is the
order the evaluation compares and reports every arm in (cfa-dpo, cfa-sft, dpo-sft).
"""

from __future__ import annotations

from typing import Literal, get_args

TrainArm = Literal["cfa", "dpo"]
"""A trained arm: ``cfa`` (the CFA weights) or ``dpo`` (the same pairs, every weight 1.0)."""
TRAIN_ARMS: tuple[TrainArm, ...] = get_args(TrainArm)
SFT_ARM = "sft"
"""The SFT model as an arm of the evaluation (one model, no seed)."""
ARM_ORDER: tuple[str, ...] = (*TRAIN_ARMS, SFT_ARM)
