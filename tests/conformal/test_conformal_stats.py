"""Seeded statistical checks: split-conformal coverage and nested sets."""

from __future__ import annotations

import numpy as np

from rluf_ray.conformal import calibration as cb
from rluf_ray.conformal import nonconformity as nc
from rluf_ray.conformal import thresholds as th


def _synthetic_table(n: int, seed: int) -> nc.PaddedAnswerTable:
    """Exchangeable prompts: random frequency tables, similarities and judge scores."""
    rng = np.random.default_rng(seed)
    counts, sims, judge = [], [], []
    for _ in range(n):
        k = int(rng.integers(1, 10))
        c = np.sort(rng.multinomial(60, rng.dirichlet(np.ones(k))))[::-1]
        c = c[c > 0].tolist()
        counts.append(c)
        sims.append([0.0] + rng.uniform(0, 1, len(c) - 1).tolist())
        judge.append(rng.beta(2, 1, len(c)).tolist())
    return nc.pad_table(counts, sims, judge)


def _split_conformal_coverage(
    scores: np.ndarray, alpha: float, n_cal: int, repeats: int, seed: int
) -> np.ndarray:
    """Empirical coverage of the order-statistic threshold over random cal/test splits of ``scores``."""
    rng = np.random.default_rng(seed)
    out = np.empty(repeats)
    for r in range(repeats):
        perm = rng.permutation(scores.shape[0])
        thr = th.conformal_threshold(scores[perm[:n_cal]], alpha)
        out[r] = float(th.coverage(scores[perm[n_cal:]], thr))
    return out


def test_mean_coverage_lies_in_the_split_conformal_band():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=2000)  # continuous: no ties
    for alpha, n_cal in ((0.2, 19), (0.1, 29), (0.5, 9)):
        cov = _split_conformal_coverage(scores, alpha, n_cal, repeats=3000, seed=1)
        lo, hi = 1 - alpha, 1 - alpha + 1 / (n_cal + 1)
        err = 3 * cov.std() / np.sqrt(len(cov))  # sampling error of the mean
        assert lo - err <= cov.mean() <= hi + err, (alpha, cov.mean(), lo, hi)


def test_coverage_of_acceptable_answers_on_synthetic_generation_tables():
    table = _synthetic_table(600, seed=5)
    parts = nc.score_parts(table)
    accept = th.acceptable(table.judge, 0.7)
    label = th.label_scores(nc.nonconformity(parts, 1.0, 0.6), accept, "any_acceptable")
    scores = nc.nonconformity(parts, 1.0, 0.6)
    rng = np.random.default_rng(9)
    alpha, n_cal = 0.2, 49
    hits = []
    for _ in range(400):
        perm = rng.permutation(len(label))
        thr = th.conformal_threshold(label[perm[:n_cal]], alpha)
        test = perm[n_cal:]
        member = th.in_set(scores[test], table.mask[test], thr)
        hits.append((member & accept[test]).any(axis=1).mean())  # set holds an acceptable answer
    hits = np.asarray(hits)
    err = 3 * hits.std() / np.sqrt(len(hits))
    assert hits.mean() >= 1 - alpha - err
    assert hits.mean() <= 1 - alpha + 1 / (n_cal + 1) + err


def test_sets_are_nested_for_the_same_weights():
    table = _synthetic_table(300, seed=7)
    parts = nc.score_parts(table)
    accept = th.acceptable(table.judge, 0.7)
    cal, test = np.arange(0, 150), np.arange(150, 300)
    cal_parts = nc.ScoreParts(parts.freq_term[cal], parts.half_entropy[cal], parts.sim[cal], parts.mask[cal])
    for w1, w2 in ((0.0, 0.0), (1.2, 0.4), (2.0, 2.0)):
        t50 = cb.final_threshold(cal_parts, accept[cal], "any_acceptable", w1, w2, 0.5)
        t20 = cb.final_threshold(cal_parts, accept[cal], "any_acceptable", w1, w2, 0.2)
        assert t50 <= t20
        scores = nc.nonconformity(parts, w1, w2)[test]
        small = th.in_set(scores, table.mask[test], t50)
        large = th.in_set(scores, table.mask[test], t20)
        assert not (small & ~large).any()
        assert large.sum() > small.sum()


def test_split_protocol_end_to_end_reports_valid_coverage():
    table = _synthetic_table(400, seed=11)
    res = cb.calibrate(table, cb.ConformalSettings(random_count=40, grid_values=(0.0, 1.0, 2.0)))
    for cal in res.calibrations:
        rep = res.report["per_alpha"][str(cal.alpha)]
        n_t = rep["n_threshold"]
        err = 3 * rep["coverage_std"] / np.sqrt(40)
        assert rep["coverage_mean"] >= 1 - cal.alpha - err - 0.02
        assert rep["coverage_mean"] <= 1 - cal.alpha + 1 / (n_t + 1) + err + 0.02
        assert cal.n_calibration == 200
