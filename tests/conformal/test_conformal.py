"""Nonconformity scores, labels, thresholds and the cfa protocol, pinned to hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rluf_ray.conformal import calibration as cb
from rluf_ray.conformal import grid_search as gs
from rluf_ray.conformal import nonconformity as nc
from rluf_ray.conformal import thresholds as th


def _reference_scores(counts: list[int], sims: list[float], w1: float, w2: float) -> list[float]:
    """The original's per-answer loop, written out independently (a Python dict walk)."""
    total = sum(counts)
    num = 0.0
    for v in counts:
        num += -(v / total) * math.log(v / total)
    if total <= 1:
        total = 2
    h = num / math.log(total)
    out = []
    for rank, v in enumerate(counts):
        s = 10 - v / total * 10 + h / 2 * w1
        if rank:
            s -= sims[rank] * w2
        out.append(s)
    return out


def test_worked_example_from_the_issue():
    table = nc.pad_table([[6, 3, 1], [1]], sims=[[0.0, 0.5, 0.2], [0.0]])
    assert nc.normalized_entropy(table.counts)[0] == pytest.approx(0.389973, abs=1e-6)
    parts = nc.score_parts(table)
    s = nc.nonconformity(parts, np.array([1.0, 1.0]), np.array([0.0, 1.0]))
    np.testing.assert_allclose(s[0, 0], [4.194986, 7.194986, 9.194986], atol=1e-6)
    np.testing.assert_allclose(s[1, 0], [4.194986, 6.694986, 8.994986], atol=1e-6)
    assert s[0, 1, 0] == 5.0 and s[1, 1, 0] == 5.0  # single count: total taken as 2 in both places
    assert np.isinf(s[:, 1, 1:]).all()  # padding never enters a set


def test_vectorised_grid_is_bit_identical_to_the_per_answer_loop():
    rng = np.random.default_rng(0)
    counts = [sorted(rng.integers(1, 20, size=rng.integers(1, 9)).tolist(), reverse=True) for _ in range(40)]
    sims = [[0.0] + rng.uniform(-0.2, 1.0, size=len(c) - 1).tolist() for c in counts]
    parts = nc.score_parts(nc.pad_table(counts, sims))
    w1, w2 = gs.weight_grid([0.0, 0.4, 1.2, 2.0])
    grid = nc.nonconformity(parts, w1, w2)
    for g in range(len(w1)):
        for i, (c, s) in enumerate(zip(counts, sims, strict=True)):
            ref = _reference_scores(c, s, float(w1[g]), float(w2[g]))
            assert grid[g, i, : len(c)].tolist() == ref


def test_weight_grid_order_is_w1_major():
    w1, w2 = gs.weight_grid([0.0, 1.0, 2.0])
    assert w1.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert w2.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2]


def test_labels_any_acceptable_and_top_answer_with_missing_scores():
    scores = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, np.inf], [4.0, 5.0, 6.0]])
    judge = np.array([[0.2, 0.9, 0.8], [np.nan, 0.7, np.nan], [0.1, np.nan, 0.3]])
    acc = th.acceptable(judge, 0.7)
    assert acc.tolist() == [[False, True, True], [False, True, False], [False, False, False]]
    assert th.label_scores(scores, acc, "any_acceptable").tolist() == [2.0, 2.0, math.inf]
    assert th.label_scores(scores, acc, "top_answer").tolist() == [math.inf, math.inf, math.inf]
    assert th.label_scores(scores, acc, "top_answer", no_label=20.0).tolist() == [20.0, 20.0, 20.0]
    assert th.has_label(judge, "any_acceptable").tolist() == [True, True, True]
    assert th.has_label(judge, "top_answer").tolist() == [True, False, True]


def test_threshold_is_the_order_statistic_not_a_percentile():
    scores = np.arange(1.0, 11.0)[::-1].copy()  # 10 scores, unsorted
    assert th.order_stat_rank(10, 0.2) == 9  # ceil(11 * 0.8) = 9
    assert th.conformal_threshold(scores, 0.2) == 9.0
    assert np.percentile(scores, 80) == pytest.approx(8.2)  # what an interpolated percentile gives
    assert th.conformal_threshold(scores, 0.5) == 6.0  # ceil(5.5) = 6
    assert th.order_stat_rank(4, 0.2) == 4  # n = 1/alpha - 1 is just enough: k = n
    batched = th.conformal_threshold(np.stack([scores, scores + 1]), 0.2)
    assert batched.tolist() == [9.0, 10.0]


def test_too_small_calibration_set_is_a_clear_error():
    with pytest.raises(th.ConformalError, match=r"n=3.*alpha=0\.2|alpha=0\.2.*n=3"):
        th.conformal_threshold(np.ones(3), 0.2)
    with pytest.raises(th.ConformalError, match=r"alpha=0\.1.*n=8"):
        th.cfa_threshold(np.ones(8), 0.1)


def test_cfa_threshold_uses_the_original_interpolated_percentile():
    scores = np.arange(1.0, 11.0)
    # q = ceil(11 * 0.8) / 10 * 100 = 90; linear interpolation at index 8.1 -> 9.1
    assert th.cfa_threshold(scores, 0.2) == pytest.approx(9.1)
    # n = 2, alpha = 0.5: q = ceil(1.5) / 2 * 100 = 100 -> the maximum
    assert th.cfa_threshold(np.array([4.0, 2.0]), 0.5) == 4.0


def _cfa_case() -> nc.PaddedAnswerTable:
    # P0 {6,3,1}: H=0.389973; P1 {6,1,1,1,1}: H=0.533110; P2 {5,5}: top unacceptable;
    # P3 {8,2}: H=0.217322; P4 {4,4,2}: top unacceptable; P5 {9,1}: H=0.141182. No similarity term.
    counts = [[6, 3, 1], [6, 1, 1, 1, 1], [5, 5], [8, 2], [4, 4, 2], [9, 1]]
    judge = [[0.9, 0.1, 0.1], [0.8, 0, 0, 0, 0], [0.2, 0.9], [0.9, 0.1], [0.5, 0.5, 0.5], [0.95, 0.1]]
    return nc.pad_table(counts, judge=judge)


def test_cfa_protocol_pinned_to_hand_computed_results():
    table = _cfa_case()
    parts = nc.score_parts(table)
    accept = th.acceptable(table.judge, 0.7)
    # perm B first, perm A last: parts by position mod 3 -> cal {0, 3}, val {1, 4}, test {2, 5}
    perms = np.array([[5, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]])
    stats = gs.grid_chunk_cfa(
        parts, accept, "top_answer", np.array([0.0, 1.0]), np.array([0.0, 0.0]), perms, [0.5], 3
    )
    # Labels (top answer if acceptable else 20): w1=0 [4, 4, 20, 2, 20, 1];
    # w1=1 [4.194986, 4.266555, 20, 2.108661, 20, 1.070591]. n_cal = 2, q = 100 -> max.
    # Split B: cal {P5, P2} -> thr 20: val P4 3 + P1 5 = 8; test P3 2, P0 3, both covered.
    # Split A: cal {P0, P3} -> thr 4 (w1=0) / 4.194986 (w1=1):
    #   val P1: 4 <= 4 -> 1 (w1=0), 4.266555 > 4.194986 -> 0 (w1=1); P4 -> 0.
    #   test P2 -> 0 answers, uncovered (label 20); P5 -> 1 answer, covered.
    # Mean validation size as the original: total / R / (R * n_val): 9/2/4 and 8/2/4.
    np.testing.assert_allclose(stats.mean_size[0], [1.125, 1.0])
    np.testing.assert_allclose(stats.test_size[0], [1.5, 1.5])
    np.testing.assert_allclose(stats.test_coverage[0], [0.75, 0.75])
    np.testing.assert_allclose(stats.last_threshold[0], [4.0, 4.194986], atol=1e-6)
    assert gs.choose(stats.mean_size[0]) == 1  # w1 = 1 gives the smaller validation sets
    # Final sets with w1=1 and the last split's threshold (P0's top score, 4.194986):
    # {6,1,1,1,1}: 4.266555 out; {7,3}: H=0.265295 -> 3.132647 in, 7.132647 out; {6,3,1}: top in (equal).
    test = nc.pad_table([[6, 1, 1, 1, 1], [7, 3], [6, 3, 1]])
    thr = float(stats.last_threshold[0, 1])
    member = th.in_set(nc.nonconformity(nc.score_parts(test), 1.0, 0.0), test.mask, thr)
    sets = [list(np.flatnonzero(row)) for row in member]  # each prompt's answers in its set, in order
    assert sets == [[], [0], [0]]


def test_cfa_calibrate_end_to_end_matches_the_chunk_result():
    table = _cfa_case()
    settings = cb.ConformalSettings(
        protocol="cfa", label_rule="top_answer", alphas=(0.5,), grid_values=(0.0, 1.0), random_count=2
    )
    res = cb.calibrate(table, settings)
    (cal,) = res.calibrations
    assert res.surfaces[0.5].shape == (2, 2)
    assert cal.alpha == 0.5 and cal.n_calibration == 2
    assert res.counts["prompts_no_acceptable"] == 2 and res.counts["prompts_single_answer"] == 0


def _point_by_point(func, shared, w1, w2, cells_per_point):
    """A GridMap that runs every grid point as its own chunk."""
    return [func(**shared, w1=w1[i : i + 1], w2=w2[i : i + 1]) for i in range(len(w1))]


def test_chunking_does_not_change_the_result():
    rng = np.random.default_rng(3)
    counts = [sorted(rng.integers(1, 12, size=rng.integers(1, 7)).tolist(), reverse=True) for _ in range(60)]
    sims = [[0.0] + rng.uniform(0, 1, size=len(c) - 1).tolist() for c in counts]
    judge = [rng.uniform(0, 1, size=len(c)).tolist() for c in counts]
    table = nc.pad_table(counts, sims, judge)
    for protocol in ("split", "cfa"):
        settings = cb.ConformalSettings(protocol=protocol, random_count=5, grid_values=(0.0, 0.5, 1.0, 1.5))
        one = cb.calibrate(table, settings)
        many = cb.calibrate(table, settings, map_grid=_point_by_point)
        assert one.report["grid_tasks"] == 1 and many.report["grid_tasks"] == 16
        assert one.calibrations == many.calibrations
        for a in settings.alphas:
            np.testing.assert_array_equal(one.surfaces[a], many.surfaces[a])


def test_bad_input_counts_and_small_set_error():
    counts = [[5], [3, 2], [2, 2, 1], [4, 1]]
    judge = [[0.9], [np.nan, np.nan], [0.1, 0.2, np.nan], [0.8, 0.1]]
    table = nc.pad_table(counts, judge=judge)
    c = cb.input_counts(table, 0.7, "any_acceptable")
    assert c == {
        "prompts": 4,
        "answers": 8,
        "answers_missing_score": 3,
        "prompts_unlabelled": 1,
        "prompts_single_answer": 1,
        "prompts_no_acceptable": 1,
    }
    with pytest.raises(th.ConformalError, match=r"alpha=0\.2: n=3 labelled prompts.*n >= 14"):
        cb.calibrate(table, cb.ConformalSettings(alphas=(0.2,), random_count=2))


def test_split_protocol_size_error_names_n_alpha_and_the_minimum() -> None:
    settings = cb.ConformalSettings(alphas=(0.2, 0.5), grid_values=(0.0, 1.0), random_count=3, seed=1)
    table = nc.PaddedAnswerTable(
        counts=np.ones((12, 2), dtype=np.int64), sim=np.zeros((12, 2)), judge=np.full((12, 2), 0.9)
    )
    with pytest.raises(th.ConformalError, match=r"alpha=0\.2: n=12 .*n >= 14"):
        cb.check_sizes(table, settings)
    assert [m for m in range(1, 40) if cb._split_sizes_ok(m, 0.2, settings)][0] == 14


def test_cfa_coverage_counts_only_acceptable_answers():
    """A split whose calibration part holds a prompt without an acceptable answer gets threshold 20 (the
    original's no-label score): every answer is in the set, but a test prompt with no acceptable answer
    is still not covered. perm [2, 0, 4, 3, 1, 5]: cal {P2, P3} -> thr max(20, 2) = 20; test {P4, P5}."""
    table = _cfa_case()
    parts = nc.score_parts(table)
    accept = th.acceptable(table.judge, 0.7)
    perms = np.array([[2, 0, 4, 3, 1, 5]])
    stats = gs.grid_chunk_cfa(parts, accept, "top_answer", np.array([0.0]), np.array([0.0]), perms, [0.5], 3)
    assert stats.last_threshold[0, 0] == gs.CFA_NO_LABEL
    assert stats.test_size[0, 0] == pytest.approx((3 + 2) / 2)  # every answer of P4 and P5 is in
    assert stats.test_coverage[0, 0] == pytest.approx(0.5)  # P5 covered; P4 (top 0.5 < 0.7) is not


def _mostly_unacceptable(n: int, bad: int) -> nc.PaddedAnswerTable:
    """n prompts of two answers; the first ``bad`` have no acceptable answer (all judged 0.1)."""
    counts = [[3, 1]] * n
    judge = [[0.1, 0.1] if i < bad else [0.9, 0.1] for i in range(n)]
    return nc.pad_table(counts, judge=judge)


def test_infinite_threshold_is_trivial_and_reports_true_coverage():
    """60% of prompts have no acceptable answer, alpha = 0.5: the order statistic lands on an infinite
    label, so every answer is in every set. Coverage is the share of held-out prompts that have an
    acceptable answer (computed here from the same halves), not the 1.0 that inf <= inf would give."""
    table = _mostly_unacceptable(40, 24)
    settings = cb.ConformalSettings(alphas=(0.5,), grid_values=(0.0, 1.0), random_count=20, seed=3)
    res = cb.calibrate(table, settings)
    rep = res.report["per_alpha"]["0.5"]
    assert math.isinf(res.calibrations[0].threshold) and rep["trivial"] is True
    _, cal = gs.tuning_calibration_split(40, settings.tuning_fraction, settings.seed)
    good = np.arange(40) >= 24
    perms = gs.make_permutations(len(cal), settings.random_count, settings.seed + 2)
    m = (len(cal) + 1) // 2
    expected = float(np.mean([good[cal][p[m:]].mean() for p in perms]))
    assert rep["coverage_mean"] == pytest.approx(expected)
    assert rep["coverage_mean"] < 0.7


def test_a_healthy_level_is_not_trivial():
    table = _mostly_unacceptable(40, 4)
    settings = cb.ConformalSettings(alphas=(0.5,), grid_values=(0.0, 1.0), random_count=20, seed=3)
    res = cb.calibrate(table, settings)
    assert math.isfinite(res.calibrations[0].threshold)
    assert res.report["per_alpha"]["0.5"]["trivial"] is False
