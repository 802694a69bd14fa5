"""The run report's figures as PNG bytes, each from plain data (the HTML builder gathers the data).

Every function returns the PNG bytes and a one-sentence reading of the figure, and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rluf_ray.report.plots import _png, _pyplot


def distinct_answers(per_split: Mapping[str, Sequence[int]], samples: int) -> tuple[bytes, str]:
    """Draw a histogram of distinct (normalised) answers per prompt, one series per split.

    Args:
        per_split: Split (``calibration``, ``test``) -> the number of distinct answers of each prompt.
        samples: The samples drawn per prompt (``generation.sampling_num``).

    Returns:
        The PNG bytes and a sentence with the median and the share of prompts with 3 to 30 answers.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    top = max((max(v) for v in per_split.values() if len(v)), default=1)
    bins = np.arange(0.5, top + 1.5, max(1, top // 30))
    for split, values in sorted(per_split.items()):
        ax.hist(values, bins=bins, alpha=0.55, label=f"{split} ({len(values)} prompts)")
    ax.set_xlabel(f"distinct answers among {samples} samples")
    ax.set_ylabel("prompts")
    ax.legend()
    data = _png(fig)
    plt.close(fig)
    allv = [x for v in per_split.values() for x in v]
    med = float(np.median(allv)) if allv else float("nan")
    share = sum(3 <= x <= 30 for x in allv) / len(allv) if allv else 0.0
    return data, (
        f"Each prompt was sampled {samples} times; the median prompt has {med:g} distinct answers, and "
        f"{share:.0%} of prompts have between 3 and 30 (the range where frequencies carry information)."
    )


def judge_calls(per_stage: Mapping[str, Mapping[str, Any]]) -> tuple[bytes, str]:
    """Draw judgements, API calls, cache hits and missing judgements per stage, with the spend in the title.

    Args:
        per_stage: Stage -> its judge ledger (``scored``, ``missing``, ``calls``, ``cache_hits``,
            ``dollars``; absent keys count 0).

    Returns:
        The PNG bytes and a sentence with the totals and the spend.
    """
    plt = _pyplot()
    names = list(per_stage)

    def col(key: str) -> list[int]:
        return [int(per_stage[n].get(key, 0)) for n in names]

    calls, hits, missing = col("calls"), col("cache_hits"), col("missing")
    judged = [s + m for s, m in zip(col("scored"), missing, strict=True)]
    dollars = sum(float(per_stage[n].get("dollars", 0.0)) for n in names)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for i, (vals, label) in enumerate(((judged, "judgements"), (calls, "API calls"), (hits, "cache hits"),
                                       (missing, "missing"))):  # fmt: skip
        ax.bar(x + (i - 1.5) * 0.2, vals, 0.2, label=label)
    ax.set_xticks(x, names)
    ax.set_ylabel("count")
    ax.set_title(f"judge spend ${dollars:.4f}")
    ax.legend()
    data = _png(fig)
    plt.close(fig)
    return data, (
        f"{sum(judged):,} judgements took {sum(calls):,} API calls ({sum(hits):,} answered from the cache; an "
        f"offline judge makes none) for ${dollars:.4f}; {sum(missing):,} are missing (recorded with their "
        "reason, never scored)."
    )


def coverage(per_alpha: Mapping[str, Mapping[str, Any]]) -> tuple[bytes, str]:
    """Draw held-out coverage against its target 1 - alpha, and the mean set size, per alpha.

    Args:
        per_alpha: Alpha (as a string) -> the calibration report's entry (``coverage_mean``,
            ``set_size_mean``, ``trivial``; absent values are NaN).

    Returns:
        The PNG bytes and a sentence per alpha (trivial levels flagged).
    """
    plt = _pyplot()
    alphas = sorted(per_alpha, key=float)
    cov = [float(per_alpha[a].get("coverage_mean", float("nan"))) for a in alphas]
    size = [float(per_alpha[a].get("set_size_mean", float("nan"))) for a in alphas]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.4))
    x = np.arange(len(alphas))
    ax1.bar(x, cov, 0.5, label="held-out coverage")
    ax1.scatter(x, [1 - float(a) for a in alphas], color="red", zorder=3, label="target 1 - alpha")
    ax1.set_xticks(x, [f"alpha={a}" for a in alphas])
    ax1.set_ylim(0, 1.05)
    ax1.legend(loc="lower right")
    ax2.bar(x, size, 0.5, color="tab:orange")
    ax2.set_xticks(x, [f"alpha={a}" for a in alphas])
    ax2.set_ylabel("mean set size")
    data = _png(fig)
    plt.close(fig)
    parts = []
    for a, c, s in zip(alphas, cov, size, strict=True):
        flag = " (trivial: every answer in every set)" if per_alpha[a].get("trivial") else ""
        parts.append(f"alpha={a}: coverage {c:.2f} against {1 - float(a):.2f}, {s:.1f} answers per set{flag}")
    return data, "; ".join(parts) + "."


def weight_histogram(hist: Mapping[str, int], mean: float, zero_share: float) -> tuple[bytes, str]:
    """Draw the pairs per weight value.

    Args:
        hist: Weight value (as a string) -> the number of pairs with it.
        mean: The mean pair weight.
        zero_share: The share of pairs with weight 0, in [0, 1].

    Returns:
        The PNG bytes and a sentence with the pair count, the mean and the zero-weight share.
    """
    plt = _pyplot()
    keys = sorted(hist, key=float)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.bar([f"{float(k):g}" for k in keys], [hist[k] for k in keys])
    ax.set_xlabel("pair weight")
    ax.set_ylabel("pairs")
    data = _png(fig)
    plt.close(fig)
    return data, (
        f"{sum(hist.values()):,} pairs, mean weight {mean:.3f}; {zero_share:.0%} have weight 0 and do not "
        "train the cfa arm (the released data of the original: 23.7%)."
    )


def dpo_curves(curves: Mapping[str, Sequence[Mapping[str, float]]]) -> tuple[bytes, str]:
    """Draw loss and reward accuracy per logged step, one line per (arm, seed).

    Args:
        curves: Label of an (arm, seed) run -> its logged rows (``step``, and ``loss`` and
            ``rewards/accuracies`` where logged).

    Returns:
        The PNG bytes and a sentence with each run's final logged loss.
    """
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    finals = []
    for label, rows in sorted(curves.items()):
        steps = [r["step"] for r in rows]
        ax1.plot(steps, [r.get("loss", float("nan")) for r in rows], label=label)
        ax2.plot(steps, [r.get("rewards/accuracies", float("nan")) for r in rows], label=label)
        if rows:
            finals.append(f"{label} {rows[-1].get('loss', float('nan')):.3f}")
    ax1.set_xlabel("step")
    ax1.set_ylabel("DPO loss")
    ax2.set_xlabel("step")
    ax2.set_ylabel("reward accuracy")
    ax1.legend(fontsize=8)
    data = _png(fig)
    plt.close(fig)
    return data, "Weighted DPO training; final logged loss: " + ", ".join(finals) + "."


def win_rate_forest(rows: Sequence[Mapping[str, Any]]) -> tuple[bytes, str]:
    """Draw win rates with their 95% intervals, one row per pair of arms; 0.5 marks a tie.

    Args:
        rows: The evaluation report's ``win_rates`` entries (``a``, ``b``, ``win_rate``, ``ci_low``,
            ``ci_high``, ``n``), top to bottom.

    Returns:
        The PNG bytes and a sentence with each pair's win rate, interval and prompt count.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.7 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows, strict=True):
        lo, hi, wr = float(r["ci_low"]), float(r["ci_high"]), float(r["win_rate"])
        ax.plot([lo, hi], [yi, yi], color="black")
        ax.plot([wr], [yi], "o", color="tab:blue")
    ax.axvline(0.5, color="grey", linestyle="--")
    ax.set_yticks(y, [f"{r['a']} vs {r['b']}" for r in rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate of the first (ties count 1/2), 95% paired bootstrap interval")
    data = _png(fig)
    plt.close(fig)
    said = [f"{r['a']} vs {r['b']} {float(r['win_rate']):.2f} [{float(r['ci_low']):.2f}, "
            f"{float(r['ci_high']):.2f}] over {r['n']} prompts" for r in rows]  # fmt: skip
    return data, "; ".join(said) + ". An interval that contains 0.5 shows no difference."
