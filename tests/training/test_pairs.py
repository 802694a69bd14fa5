"""Reading and fitting weighted pairs in the released format."""

from __future__ import annotations

from rluf_ray.core.text import DEFAULT_TEMPLATE
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
