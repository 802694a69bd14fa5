"""Benchmark: the original calibration procedure as a per-answer Python loop vs rluf-ray's vectorised one.

Both sides run the ``cfa`` protocol (the original: random 3-way splits, interpolated percentile,
weights by mean validation set size, threshold from the last split; top-answer labels) on the same
synthetic generation output, with the same seeded splits and the same precomputed FastText
similarities, and must produce identical prediction sets. FastText training and Ray start-up are
timed on their own lines, outside both timers. ``ours_s_10k`` and ``ours_s_100k`` time ours alone on
10,000 and 100,000 calibration prompts with the full grid (the 100k prompts' similarities come from
the same FastText model, trained on the smaller sets' answers). The last line printed is a JSON object.

    rluf bench calibrate [--prompts 50] [--answers 12] [--grid 11] [--splits 50] [--prompts-10k 10000]
                         [--prompts-100k 100000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from typing import Any

import numpy as np

from rluf_ray.conformal.calibration import ConformalSettings, GridMap, calibrate
from rluf_ray.conformal.grid_search import make_permutations
from rluf_ray.conformal.grid_tasks import GridTasks
from rluf_ray.conformal.nonconformity import PaddedAnswerTable, nonconformity, pad_table, score_parts
from rluf_ray.conformal.similarity_model import SimilaritySettings, top_answer_similarities
from rluf_ray.conformal.thresholds import in_set

WORDS = (
    "i my he she landlord rent job boss girlfriend boyfriend friend car money school exam trip dog cat "
    "parents sister brother wedding party apartment roommate work quit moved broke up told asked angry "
    "happy worried loan debt college advice help need want think feel"
).split()


# ---- synthetic generation output ---------------------------------------------------------------
def synthetic(n: int, answers: int, seed: int, samples: int = 60) -> list[dict[str, Any]]:
    """Prompts with ~``answers`` unique answers (most frequent first), counts summing to ``samples``.

    Each prompt draws its answer count from a Poisson around ``answers``, the frequencies from a
    Dirichlet (answers drawn zero times are dropped), short texts from ``WORDS``, and judge scores in
    [0, 1] that fall with an answer's rank.

    Args:
        n: Number of prompts.
        answers: Mean number of unique answers per prompt (at least one each).
        seed: Seed of the generator.
        samples: Samples per prompt; each prompt's ``counts`` sum to it.

    Returns:
        One row per prompt: ``prompt_id`` (``p000000``...), ``answers``, ``counts`` and ``judge``
        (three lists of equal length).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k = max(1, int(rng.poisson(answers - 1)) + 1)
        probs = rng.dirichlet(np.full(k, 2.0))
        drawn = np.sort(rng.multinomial(samples, probs))[::-1]
        counts = [int(c) for c in drawn if c > 0]
        base = list(rng.choice(WORDS, size=8))
        texts: list[str] = []
        while len(texts) < len(counts):
            words = list(base)
            for _ in range(int(rng.integers(1, 4))):
                words[int(rng.integers(0, len(words)))] = str(rng.choice(WORDS))
            t = " ".join(words[: int(rng.integers(4, 9))])
            if t not in texts:
                texts.append(t)
        judge = [float(np.clip(rng.beta(4, 1.5) - 0.08 * j, 0.0, 1.0)) for j in range(len(counts))]
        rows.append({"prompt_id": f"p{i:06d}", "answers": texts, "counts": counts, "judge": judge})
    return rows


# ---- baseline: the original procedure, answer by answer ----------------------------------------
def _score_dict(freq: dict[str, int], w1: float, w2: float, sims: dict[tuple[str, str], float]) -> dict:
    """Scores of one prompt's answers, one answer at a time (the original's loop)."""
    total = sum(freq.values())
    num = 0.0
    for v in freq.values():
        if total > 0:
            num += -(v / total) * math.log(v / total)
    if total <= 1:
        total = 2
    h = num / math.log(total)
    out: dict[str, float] = {}
    top = ""
    for rank, (key, v) in enumerate(freq.items()):
        out[key] = 10 - v / total * 10 + h / 2 * w1
        if rank == 0:
            top = key
        else:
            out[key] -= sims[(key, top)] * w2
    return out


def baseline(
    cal: list[dict],
    test: list[dict],
    sims: dict[tuple[str, str], float],
    values: list[float],
    perms: list[list[int]],
    alphas: list[float],
    accuracy_threshold: float,
    split_num: int = 3,
) -> dict[float, list[list[str]]]:
    """The original calibration (top-answer labels, sentinel 20) and its test sets, per alpha.

    For every alpha it walks the grid of ``(w1, w2)``, splits the calibration prompts 3 ways per
    permutation (calibration, validation, test parts by position mod ``split_num``), takes the
    interpolated percentile threshold, picks the weights with the smallest mean validation set size,
    and keeps the threshold of the last split, answer by answer in Python.

    Args:
        cal: Calibration rows of ``synthetic``.
        test: Test rows of ``synthetic`` (their judge scores are not read).
        sims: ``(answer, top answer)`` -> FastText similarity, for every answer of every row.
        values: Grid values of each weight (the grid is ``values x values``).
        perms: Random permutations of the calibration indices, one per split.
        alphas: Miscoverage levels in (0, 1).
        accuracy_threshold: Judge score at or above which a top answer counts as correct.
        split_num: Number of parts each permutation is cut into (by position modulo).

    Returns:
        Alpha -> one prediction set (answers in frequency order) per test row.
    """
    freqs = [dict(zip(r["answers"], r["counts"], strict=True)) for r in cal]
    top_ok = [r["judge"][0] >= accuracy_threshold for r in cal]
    out: dict[float, list[list[str]]] = {}
    for alpha in alphas:
        best, best_w, best_q = float("inf"), (0.0, 0.0), 0.0
        for w1 in values:
            for w2 in values:
                val_sum = val_q = 0
                q_value = 0.0
                for perm in perms:
                    scores, val, tst = [], [], []
                    for pos, idx in enumerate(perm):
                        if pos % split_num == 0:
                            if top_ok[idx]:
                                d = _score_dict(freqs[idx], w1, w2, sims)
                                scores.append(d[cal[idx]["answers"][0]])
                            else:
                                scores.append(20)
                        elif pos % split_num == 1:
                            val.append(idx)
                        else:
                            tst.append(idx)
                    bar = len(scores)
                    q = np.ceil((bar + 1) * (1 - alpha)) / bar * 100
                    q_value = np.percentile(sorted(scores, reverse=True), q)
                    for idx in val:
                        d = _score_dict(freqs[idx], w1, w2, sims)
                        val_sum += len([k for k, s in d.items() if s <= q_value])
                        val_q += 1
                    for idx in tst:  # the original also sized and scored its test parts
                        d = _score_dict(freqs[idx], w1, w2, sims)
                        _ = [k for k, s in d.items() if s <= q_value]
                avg = val_sum / len(perms) / val_q
                if avg < best:
                    best, best_w, best_q = avg, (w1, w2), q_value
        sets = []
        for r in test:
            d = _score_dict(dict(zip(r["answers"], r["counts"], strict=True)), best_w[0], best_w[1], sims)
            sets.append([k for k, s in d.items() if s <= best_q])
        out[alpha] = sets
    return out


# ---- ours ----------------------------------------------------------------------------------------
def _table(rows: list[dict], sims: dict[tuple[str, str], float], judge: bool = True) -> PaddedAnswerTable:
    return pad_table(
        [r["counts"] for r in rows],
        [[0.0] + [sims[(a, r["answers"][0])] for a in r["answers"][1:]] for r in rows],
        [r["judge"] for r in rows] if judge else None,
        [r["answers"] for r in rows],
        [r["prompt_id"] for r in rows],
    )


def ours(
    cal_t: PaddedAnswerTable,
    test_t: PaddedAnswerTable,
    settings: ConformalSettings,
    map_grid: GridMap,
) -> tuple[dict[float, list[list[str]]], int]:
    """rluf-ray's calibration (Ray tasks over grid chunks) and its test sets per alpha; tasks used.

    Args:
        cal_t: The calibration prompts' padded table (judge scores included).
        test_t: The test prompts' padded table.
        settings: The conformal settings (protocol, alphas, grid, splits, seed).
        map_grid: Runs the grid-search chunks (``GridTasks`` for Ray tasks).

    Returns:
        ``(sets, tasks)``: alpha -> one prediction set per test prompt (answers in table order), and
        the number of grid chunks the calibration used.
    """
    res = calibrate(cal_t, settings, map_grid=map_grid)
    parts = score_parts(test_t)
    out = {}
    for c in res.calibrations:
        member = in_set(nonconformity(parts, c.w1, c.w2), test_t.mask, c.threshold)
        out[c.alpha] = [[test_t.answers[i][j] for j in np.flatnonzero(row)] for i, row in enumerate(member)]
    return out, int(res.report["grid_tasks"])


def main(argv: list[str]) -> int:
    """Run the side-by-side benchmark; the last printed line is JSON.

    Args:
        argv: Command-line arguments after ``rluf bench calibrate`` (see the module docstring).

    Returns:
        The exit status, 0 (differing prediction sets exit through ``SystemExit`` instead).
    """
    ap = argparse.ArgumentParser(prog="rluf bench calibrate")
    ap.add_argument("--prompts", type=int, default=50, help="calibration prompts (and as many test prompts)")
    ap.add_argument("--answers", type=int, default=12, help="mean unique answers per prompt")
    ap.add_argument("--grid", type=int, default=11, help="grid values per weight (0..2)")
    ap.add_argument("--splits", type=int, default=50, help="random splits (random_count)")
    ap.add_argument("--prompts-10k", type=int, default=10_000, help="calibration prompts for ours_s_10k")
    ap.add_argument(
        "--prompts-100k", type=int, default=100_000, help="calibration prompts for ours_s_100k (0: skip)"
    )
    ap.add_argument("--tasks", type=int, default=0, help="Ray tasks (grid chunks); 0: number of CPUs")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of ours (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    cpus = os.cpu_count() or 1
    tasks = args.tasks or cpus
    print(f"machine: {cpus} CPUs, {platform.platform()}, python {platform.python_version()}")
    values = [round(2.0 * i / (args.grid - 1), 10) for i in range(args.grid)] if args.grid > 1 else [0.0]
    alphas = [0.2, 0.5]
    cal = synthetic(args.prompts, args.answers, args.seed)
    test = synthetic(args.prompts, args.answers, args.seed + 1)
    big = synthetic(args.prompts_10k, args.answers, args.seed + 2)
    huge = synthetic(args.prompts_100k, args.answers, args.seed + 3) if args.prompts_100k else []
    print(
        f"data: {len(cal)} calibration + {len(test)} test prompts, "
        f"{np.mean([len(r['answers']) for r in cal]):.1f} unique answers each; grid {len(values)}x{len(values)}, "
        f"{args.splits} splits, alphas {alphas}"
    )

    t0 = time.perf_counter()
    rows = cal + test + big
    sim_lists = top_answer_similarities(
        [r["answers"] for r in rows + huge],
        [a for r in rows for a in r["answers"]],  # the 100k set is scored by the same model
        SimilaritySettings(vector_size=200, epochs=5, seed=args.seed),
    )
    rows += huge
    sims = {
        (a, r["answers"][0]): s
        for r, row in zip(rows, sim_lists, strict=True)
        for a, s in zip(r["answers"], row, strict=True)
    }
    print(f"fasttext_train_and_similarities_s: {time.perf_counter() - t0:.2f} (outside both timers)")

    import ray

    from rluf_ray.runtime.bootstrap import ensure_ray

    started = not ray.is_initialized()
    t0 = time.perf_counter()
    ensure_ray()
    map_grid = GridTasks(chunks=tasks, num_cpus=1)
    warm = pad_table([[3, 2, 1]] * 8, judge=[[0.9, 0.9, 0.9]] * 8)
    warm_settings = ConformalSettings(protocol="cfa", alphas=(0.5,), grid_values=(0.0, 1.0), random_count=1)
    calibrate(warm, warm_settings, map_grid)
    print(
        f"ray_startup_s: {time.perf_counter() - t0:.2f} (outside both timers; includes warming {tasks} workers)"
    )

    try:
        settings = ConformalSettings(
            protocol="cfa",
            label_rule="top_answer",
            alphas=tuple(alphas),
            grid_values=tuple(values),
            random_count=args.splits,
            seed=args.seed,
        )
        perms = make_permutations(len(cal), args.splits, args.seed).tolist()
        t0 = time.perf_counter()
        base_sets = baseline(cal, test, sims, values, perms, alphas, settings.accuracy_threshold)
        baseline_s = time.perf_counter() - t0
        print(f"baseline_s: {baseline_s:.3f} (per-answer Python loop of the original procedure)")

        runs = []
        for _ in range(max(1, args.repeats)):  # median of repeats: a shared 2-core box is noisy
            t0 = time.perf_counter()
            our_sets, used = ours(_table(cal, sims), _table(test, sims, judge=False), settings, map_grid)
            runs.append(time.perf_counter() - t0)
        ours_s = float(np.median(runs))
        print(
            f"ours_s: {ours_s:.4f} (median of {len(runs)}, min {min(runs):.4f}; {used} grid chunk(s): "
            "small inputs are not split below min_cells_per_task, and a single chunk runs on the driver)"
        )
        identical = our_sets == base_sets
        print(f"identical_sets: {identical}")
        if not identical:
            raise SystemExit("prediction sets differ between baseline and ours")

        big_t = _table(big, sims)
        t0 = time.perf_counter()
        _, used_10k = ours(big_t, _table(test, sims, judge=False), settings, map_grid)
        ours_s_10k = time.perf_counter() - t0
        print(
            f"ours_s_10k: {ours_s_10k:.3f} ({len(big)} calibration prompts, cfa protocol, {used_10k} Ray tasks)"
        )
        t0 = time.perf_counter()
        split_settings = ConformalSettings(
            **{**settings.__dict__, "protocol": "split", "label_rule": "any_acceptable"}
        )
        ours(big_t, _table(test, sims, judge=False), split_settings, map_grid)
        ours_split_s_10k = time.perf_counter() - t0
        print(f"ours_split_s_10k: {ours_split_s_10k:.3f} ({len(big)} calibration prompts, split protocol)")
        ours_s_100k = used_100k = None
        if huge:
            huge_t = _table(huge, sims)
            t0 = time.perf_counter()
            _, used_100k = ours(huge_t, _table(test, sims, judge=False), settings, map_grid)
            ours_s_100k = time.perf_counter() - t0
            print(
                f"ours_s_100k: {ours_s_100k:.3f} ({len(huge)} calibration prompts, cfa protocol, "
                f"{used_100k} Ray tasks)"
            )
    finally:
        if started:
            ray.shutdown()
    result = {
        "baseline_s": round(baseline_s, 4),
        "ours_s": round(ours_s, 4),
        "ours_min_s": round(min(runs), 4),
        "ratio": round(baseline_s / ours_s, 1),
        "ours_s_10k": round(ours_s_10k, 3),
        "ours_split_s_10k": round(ours_split_s_10k, 3),
        "ours_s_100k": None if ours_s_100k is None else round(ours_s_100k, 3),
        "identical_sets": identical,
        "cpus": cpus,
        "tasks": used,
        "tasks_10k": used_10k,
        "prompts": len(cal),
        "grid": len(values),
        "splits": args.splits,
        "prompts_10k": len(big),
        "prompts_100k": len(huge),
        "tasks_100k": used_100k,
    }
    print(json.dumps(result))
    return 0
