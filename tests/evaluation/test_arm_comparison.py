"""Three-arm evaluation logic: pairs and seeds, order per item, reply mapping, drops, win rates and rubric."""

from __future__ import annotations

import numpy as np
import pytest

from rluf_ray.evaluation import arm_comparison as arms
from rluf_ray.evaluation.intervals import bootstrap_mean


def test_arm_pairs_follow_cfa_dpo_sft_order() -> None:
    assert arms.arm_pairs(["sft", "dpo", "cfa"]) == [("cfa", "dpo"), ("cfa", "sft"), ("dpo", "sft")]
    assert arms.arm_pairs(["sft", "cfa"]) == [("cfa", "sft")]
    assert arms.arm_pairs(["sft", "rluf"]) == [("sft", "rluf")]  # unknown arms follow the named ones


def test_seed_pairs() -> None:
    # a trained arm against sft: each seed with sft's single (unseeded) predictions
    assert arms.seed_pairs({2, 1}, {None}) == [(1, 1, None), (2, 2, None)]
    assert arms.seed_pairs({None}, {3}) == [(3, None, 3)]
    # two trained arms: seed s with seed s (only the seeds both have)
    assert arms.seed_pairs({1, 2, 3}, {3, 2, 5}) == [(2, 2, 2), (3, 3, 3)]
    assert arms.seed_pairs({None}, {None}) == [(None, None, None)]


def test_order_is_per_item_seeded_and_reply_maps_back() -> None:
    firsts = [arms.first_shown(7, "cfa", "sft", 1, f"p{i}") for i in range(400)]
    assert firsts == [arms.first_shown(7, "cfa", "sft", 1, f"p{i}") for i in range(400)]  # deterministic
    assert set(firsts) == {"cfa", "sft"}
    assert abs(firsts.count("sft") - 200) < 40  # a fair coin: 200 +- 2 sd
    other = [arms.first_shown(8, "cfa", "sft", 1, f"p{i}") for i in range(400)]
    assert other != firsts  # the evaluation seed decides the order
    # A shown first: "output 1 wins" is A's win; B shown first (flipped): it is A's loss.
    assert arms.outcome_of("cfa", "cfa", 1) == 1.0 and arms.outcome_of("cfa", "cfa", 2) == 0.0
    assert arms.outcome_of("cfa", "sft", 1) == 0.0 and arms.outcome_of("cfa", "sft", 2) == 1.0
    with pytest.raises(ValueError):
        arms.outcome_of("cfa", "cfa", 0)


def test_comparison_items_tie_and_missing_prediction() -> None:
    preds = {}
    for pid in ("p1", "p2", "p3"):
        preds[("sft", None, pid)] = f"sft says {pid}"
        for s in (1, 2):
            preds[("cfa", s, pid)] = f"cfa{s} says {pid}"
            preds[("dpo", s, pid)] = f"dpo{s} says {pid}"
    preds[("dpo", 1, "p1")] = "  cfa1 says p1\n"  # identical to cfa seed 1 after stripping
    del preds[("dpo", 2, "p3")]  # p3 lacks a prediction: no items, dropped
    items, missing = arms.comparison_items(preds, eval_seed=0)
    assert missing == {"p3": ["dpo/2"]}
    # 3 pairs x 2 seeds x 2 prompts
    assert len(items) == 12 and {it.prompt_id for it in items} == {"p1", "p2"}
    assert [(it.a, it.b) for it in items[::4]] == [("cfa", "dpo"), ("cfa", "sft"), ("dpo", "sft")]
    ties = [(it.a, it.b, it.seed, it.prompt_id) for it in items if it.tie]
    assert ties == [("cfa", "dpo", 1, "p1")]
    vs_sft = [it for it in items if it.b == "sft"]
    assert {(it.a_seed, it.b_seed, it.seed) for it in vs_sft} == {(1, None, 1), (2, None, 2)}
    for it in items:
        assert it.first == arms.first_shown(0, it.a, it.b, it.seed, it.prompt_id)


def _rubric(model: str, pid: str, acc: float | None, rel: float | None, error: str | None = None) -> dict:
    if error:
        acc = rel = None
    return {"model": model, "seed": None, "prompt_id": pid, "accuracy": acc, "relevance": rel, "error": error}


def _cmp(a: str, b: str, pid: str, outcome: float | None, error: str | None = None) -> dict:
    return {"a": a, "b": b, "seed": None, "prompt_id": pid, "first": a, "outcome": outcome, "error": error}


def test_missing_judgement_drops_the_prompt_for_every_comparison() -> None:
    comparisons = [
        _cmp("cfa", "dpo", "p1", 0.5),  # a tie (identical predictions)
        _cmp("cfa", "dpo", "p2", 1.0),
        _cmp("cfa", "dpo", "p3", 0.0),
        _cmp("cfa", "sft", "p1", 1.0),
        _cmp("cfa", "sft", "p2", None, "timeout: read"),  # the missing judgement: p2 goes everywhere
        _cmp("cfa", "sft", "p3", 1.0),
        _cmp("dpo", "sft", "p1", 0.0),
        _cmp("dpo", "sft", "p2", 1.0),
        _cmp("dpo", "sft", "p3", 0.5),
        _cmp("dpo", "sft", "p4", 1.0),
    ]
    rubric = [
        _rubric("cfa", "p1", 8, 6),
        _rubric("cfa", "p2", 0, 0),
        _rubric("cfa", "p3", 6, 4),
        _rubric("dpo", "p1", 5, 5),
        _rubric("dpo", "p2", 10, 10),
        _rubric("dpo", "p3", 3, 5),
        _rubric("sft", "p1", 2, 2),
        _rubric("sft", "p2", 9, 9),
        _rubric("sft", "p3", 4, 0),
        _rubric("sft", "p4", 0, 0, "parse: no json"),
    ]
    out = arms.summarise(comparisons, rubric, ("accuracy", "relevance"), n_boot=200, seed=1)
    d = out["dropped"]
    assert d["prompt_ids"] == {"p2": ["timeout"], "p4": ["parse"]}
    assert (d["prompts"], d["of"], d["kept"]) == (2, 4, 2)
    assert d["by_reason"] == {"parse": 1, "timeout": 1}
    assert d["failed_judgements"] == {"comparisons": 1, "rubric": 1}
    got = {(w["a"], w["b"]): w for w in out["win_rates"]}
    assert [(w["a"], w["b"]) for w in out["win_rates"]] == [("cfa", "dpo"), ("cfa", "sft"), ("dpo", "sft")]
    # Over p1 and p3 only: cfa-dpo (0.5 + 0) / 2, cfa-sft (1 + 1) / 2, dpo-sft (0 + 0.5) / 2.
    assert got[("cfa", "dpo")]["win_rate"] == 0.25
    cd = got[("cfa", "dpo")]
    assert (cd["wins"], cd["ties"], cd["losses"]) == (0, 1, 1)
    assert got[("cfa", "sft")]["win_rate"] == 1.0 and got[("cfa", "sft")]["ci_low"] == 1.0
    assert got[("dpo", "sft")]["win_rate"] == 0.25
    assert all(w["n"] == 2 and w["seeds"] == 1 for w in out["win_rates"])
    # Rubric means over p1 and p3: cfa accuracy (8 + 6) / 2 = 7, overall ((8+6)/2 + (6+4)/2) / 2 = 6.
    assert out["rubric"]["cfa"]["axes"]["accuracy"]["mean"] == 7.0
    assert out["rubric"]["cfa"]["overall"]["mean"] == 6.0
    assert out["rubric"]["sft"]["overall"]["mean"] == 2.0  # (2 + 2) / 2 and (4 + 0) / 2
    assert out["rubric"]["dpo"]["n"] == 2
    # The interval is the bootstrap over the kept prompts, with the same seed.
    iv = bootstrap_mean(np.array([7.0, 5.0]), n_boot=200, seed=1)  # cfa overall per prompt: 7, 5
    assert (
        out["rubric"]["cfa"]["overall"]["ci_low"] == iv.low
        and out["rubric"]["cfa"]["overall"]["ci_high"] == iv.high
    )


def test_seeds_form_rows_of_the_outcome_matrix() -> None:
    rows = [
        {"a": "cfa", "b": "sft", "seed": s, "prompt_id": p, "outcome": v, "error": None}
        for s, p, v in [(1, "p1", 1.0), (1, "p2", 0.0), (2, "p1", 0.5), (2, "p2", 0.5)]
    ]
    seeds, arr = arms.outcome_matrix(rows, "cfa", "sft", ["p1", "p2"])
    assert seeds == [1, 2]
    np.testing.assert_array_equal(arr, [[1.0, 0.0], [0.5, 0.5]])
    with pytest.raises(ValueError, match="no outcome"):
        arms.outcome_matrix(rows, "cfa", "sft", ["p1", "p3"])
