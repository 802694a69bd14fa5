"""The arms are defined once (``rluf_ray.arms``): the config, the CLI, the training rows and the
evaluation's order all read that list."""

from __future__ import annotations

import pytest

from rluf_ray.arms import ARM_ORDER, SFT_ARM, TRAIN_ARMS
from rluf_ray.cli import build_parser
from rluf_ray.config import DpoConfig
from rluf_ray.evaluation.arm_comparison import arm_pairs


def test_the_arms_and_their_order() -> None:
    assert TRAIN_ARMS == ("cfa", "dpo") and SFT_ARM == "sft"
    assert ARM_ORDER == ("cfa", "dpo", "sft")
    assert DpoConfig().arms == list(TRAIN_ARMS)
    assert arm_pairs(reversed(ARM_ORDER)) == [("cfa", "dpo"), ("cfa", "sft"), ("dpo", "sft")]


def test_cli_arm_choices_are_the_trained_arms() -> None:
    parser = build_parser()
    for arm in TRAIN_ARMS:
        assert parser.parse_args(["train", "--arm", arm]).arm == arm
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--arm", SFT_ARM])
