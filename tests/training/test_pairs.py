"""Reading and fitting weighted pairs in the released format."""

from __future__ import annotations

import pytest

from rluf_ray.common.text import DEFAULT_TEMPLATE
from rluf_ray.training.pairs import fit_pair_prompts, read_jsonl_pairs


def test_fit_pair_prompts_cuts_the_post_and_counts(weighted_sample_path):
    rows = read_jsonl_pairs(str(weighted_sample_path))
    count = len  # characters as tokens: enough to test the cut and the count
    out, stats = fit_pair_prompts(rows, 300, count, DEFAULT_TEMPLATE)
    assert stats.pairs == len(rows) == len(out)
    long = sum(len(r["prompt"]) > 300 for r in rows)
    assert stats.truncated_prompts == long > 0
    assert stats.zero_weight == sum(r["weight"] == 0 for r in rows) > 0
    for r in out:
        assert len(r["prompt"]) <= 300
        assert r["prompt"].startswith("Please summarize this text:\n") and r["prompt"].endswith("\nSummary:")


def test_arm_rows_same_pairs_weights_one_for_dpo():
    from rluf_ray.training.pairs import arm_rows, drop_zero_weight_pairs

    rows = [
        {"prompt": "p1", "chosen": "a", "rejected": "b", "weight": 0.0},
        {"prompt": "p2", "chosen": "c", "rejected": "d", "weight": 0.65},
        {"prompt": "p3", "chosen": "e", "rejected": "f", "weight": 2.0},
    ]
    # without dropping: every pair, cfa keeps its weights, dpo has weight 1 everywhere
    cfa, dpo = arm_rows(rows, "cfa"), arm_rows(rows, "dpo")
    assert [r["weight"] for r in cfa] == [0.0, 0.65, 2.0]
    assert [r["weight"] for r in dpo] == [1.0, 1.0, 1.0]
    assert [r["prompt"] for r in dpo] == [r["prompt"] for r in cfa] == ["p1", "p2", "p3"]
    # with dropping: both arms lose the same zero-weight pair before dpo's weights are set
    kept, dropped = drop_zero_weight_pairs(rows)
    assert dropped == 1
    cfa, dpo = arm_rows(kept, "cfa"), arm_rows(kept, "dpo")
    assert [r["prompt"] for r in cfa] == [r["prompt"] for r in dpo] == ["p2", "p3"]
    assert [r["weight"] for r in cfa] == [0.65, 2.0] and [r["weight"] for r in dpo] == [1.0, 1.0]
    assert rows[1]["weight"] == 0.65 and len(rows) == 3  # the input is not changed
    assert drop_zero_weight_pairs(kept) == (kept, 0)
    with pytest.raises(ValueError, match="unknown arm"):
        arm_rows(rows, "rluf")


class _WordTokenizer:
    """A stand-in HF tokenizer: one token per word, one special token (id 0) up front."""

    def __call__(self, text, add_special_tokens=True):
        ids = text.split()
        return {"input_ids": ([0] if add_special_tokens else []) + ids}

    def decode(self, ids):
        return " ".join(ids)


def test_tokenizer_counters_keep_end_takes_the_budget():
    # what `rluf train` wires up: tokenizer_counters' keep_end is fit_pair_prompts' (text, n) cutter
    from rluf_ray.training.pairs import tokenizer_counters

    count, keep_end = tokenizer_counters(_WordTokenizer())
    assert count("a b c") == 4
    assert keep_end("a b c d e", 3) == "d e" and count(keep_end("a b c d e", 3)) == 3
    rows = [{"prompt": "x " * 30 + "Answer:", "chosen": "a", "rejected": "b", "weight": 1.0}]
    out, stats = fit_pair_prompts(rows, 5, count, DEFAULT_TEMPLATE, keep_end)
    assert out[0]["prompt"] == "x x x Answer:" and count(out[0]["prompt"]) == 5
    assert stats.off_template_prompts == stats.truncated_prompts == 1
