"""The cfa protocol's top answer is the first sampled one (the original's), not the most frequent.

One prompt, four samples b, a, a, c (b = "blue", a = "amber", c = "cyan"): most frequent first the answers are [a, b, c] with
counts [2, 1, 1], and the first sampled answer, b, sits at index 1. Judge scores a=0.9, b=0.5, c=0.8
(acceptable at 0.7); similarities sim(a, b)=0.4, sim(a, c)=0.2, sim(b, c)=0.6; weights w1 = w2 = 1.

Hand computation (total 4; H = entropy of (1/4, 1/2, 1/4) / log 4 = 0.75, so w1*H/2 = 0.375):
* cfa, order [b, a, c]:  b = 10 - 2.5 + 0.375 - 0 = 7.875; a = 10 - 5 + 0.375 - 0.4 = 4.975;
  c = 10 - 2.5 + 0.375 - 0.6 = 7.275. top_answer: b is not acceptable -> the sentinel 20;
  any_acceptable: min(a, c) = 4.975.
* split, order [a, b, c]: a = 5.375; b = 7.875 - 0.4 = 7.475; c = 7.875 - 0.2 = 7.675.
  top_answer: a is acceptable -> 5.375; any_acceptable: 5.375.
"""

from __future__ import annotations

import numpy as np
import pytest

from rluf_ray.conformal.answers import prompt_answers
from rluf_ray.conformal.calibration import top_answer_first
from rluf_ray.conformal.nonconformity import nonconformity, pad_table, score_parts
from rluf_ray.conformal.thresholds import acceptable, label_scores

A, B, C = "amber", "blue", "cyan"
SIM = {frozenset((A, B)): 0.4, frozenset((A, C)): 0.2, frozenset((B, C)): 0.6}
JUDGE = {A: 0.9, B: 0.5, C: 0.8}


def _row() -> dict:
    t = prompt_answers([B, A, A, C])
    return {"prompt_id": "p", "answers": t.answers, "counts": t.counts, "texts": t.texts,
            "mean_logprobs": t.mean_logprobs, "first_sampled": t.first_sampled}  # fmt: skip


def _scores(row: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    answers = row["answers"]
    sims = [[0.0] + [SIM[frozenset((answers[0], a))] for a in answers[1:]]]
    table = pad_table([row["counts"]], sims, [[JUDGE[a] for a in answers]], [answers], ["p"])
    return nonconformity(score_parts(table), 1.0, 1.0), acceptable(table.judge, 0.7), answers


def test_the_row_has_first_sampled_and_most_frequent_apart() -> None:
    row = _row()
    assert row["answers"] == [A, B, C] and row["counts"] == [2, 1, 1]
    assert row["first_sampled"] == 1


def test_cfa_puts_the_first_sampled_answer_on_top() -> None:
    row = top_answer_first(_row(), "cfa")
    assert row["answers"] == [B, A, C] and row["counts"] == [1, 2, 1]
    assert row["texts"] == [B, A, C] and row["first_sampled"] == 0
    scores, accept, answers = _scores(row)
    assert scores[0] == pytest.approx([7.875, 4.975, 7.275])
    assert label_scores(scores, accept, "top_answer", no_label=20.0)[0] == 20.0
    assert label_scores(scores, accept, "any_acceptable", no_label=20.0)[0] == pytest.approx(4.975)
    # The scores still belong to the right answers: a's count 2 gives its lower frequency term.
    assert dict(zip(answers, scores[0].tolist(), strict=True))[A] == pytest.approx(4.975)


def test_split_keeps_the_most_frequent_answer_on_top() -> None:
    row = top_answer_first(_row(), "split")
    assert row["answers"] == [A, B, C]
    scores, accept, _ = _scores(row)
    assert scores[0] == pytest.approx([5.375, 7.475, 7.675])
    assert label_scores(scores, accept, "top_answer")[0] == pytest.approx(5.375)
    assert label_scores(scores, accept, "any_acceptable")[0] == pytest.approx(5.375)


def test_rows_without_first_sampled_and_bad_indices() -> None:
    old = {k: v for k, v in _row().items() if k != "first_sampled"}
    assert top_answer_first(old, "cfa")["answers"] == [A, B, C]  # an older artifact: index 0
    assert top_answer_first({**old, "first_sampled": None}, "cfa")["answers"] == [A, B, C]
    with pytest.raises(ValueError, match="first_sampled=3"):
        top_answer_first({**old, "first_sampled": 3}, "cfa")
