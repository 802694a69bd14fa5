"""Stage calibrate: split-conformal prediction sets for the test prompts.

Reads generate's frequency tables (calibration and test splits) and judge scores, trains the FastText
similarity model on the run's text (sampled answers of both splits, references and prompts; the SFT
data could be added later; ``io.similarity_model``), fans the (w1, w2) grid search out as Ray CPU
tasks over chunks of grid points (``io.grid_tasks``), reduces on the driver (``core.calibration``),
and writes:

- ``prediction_sets.parquet`` (PREDICTION_SET_SCHEMA): every (test prompt, alpha, answer in the set);
- ``calibration.json``: chosen weights, thresholds and calibration sizes per alpha;
- ``report.json``: coverage and set sizes on held-out calibration prompts, input counts, grid surfaces;
- ``set_size_surface.png`` and ``set_size_hist.png``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import pyarrow as pa

from rluf_ray.config import RlufConfig, operational, plan_data, plan_type
from rluf_ray.conformal.calibration import (
    Calibration,
    ConformalSettings,
    calibrate,
    check_sizes,
    top_answer_first,
)
from rluf_ray.conformal.grid_tasks import GridTasks
from rluf_ray.conformal.nonconformity import PaddedAnswerTable, nonconformity, pad_table, score_parts
from rluf_ray.conformal.similarity_model import SimilaritySettings, top_answer_similarities
from rluf_ray.conformal.thresholds import in_set
from rluf_ray.errors import RlufError
from rluf_ray.report.plots import plot_hist, plot_surface
from rluf_ray.schema import PREDICTION_SET_SCHEMA, PREDICTION_SETS_ARTIFACT, SCORES_ARTIFACT
from rluf_ray.stages.registry import StageContext, StageDef, StageResult

log = logging.getLogger("rluf.calibrate")

CALIBRATION_JSON = "calibration.json"
REPORT_JSON = "report.json"
SURFACE_PNG = "set_size_surface.png"
HIST_PNG = "set_size_hist.png"


@plan_type
class CalibratePlan:
    """Everything calibrate takes from the config: the core's settings, the FastText settings, and how
    the grid search fans out (one Ray CPU task of ``num_cpus`` per chunk of grid points)."""

    grid_points: int
    conformal: ConformalSettings
    similarity: SimilaritySettings
    num_cpus: float = operational()
    chunks: int = operational()
    min_cells_per_task: int = operational()

    def grid_tasks(self) -> GridTasks:
        """The grid search's fan-out.

        Returns:
            The chunk map ``calibrate`` takes.
        """
        return GridTasks(
            chunks=self.chunks, min_cells_per_task=self.min_cells_per_task, num_cpus=self.num_cpus
        )


def plan(cfg: RlufConfig) -> CalibratePlan:
    """Every config-derived value ``run`` uses (no Ray objects).

    Args:
        cfg: The config (its ``conformal`` section and ``resources.cpus_per_task``).

    Returns:
        The stage's plan.
    """
    c = cfg.conformal
    values = tuple(c.weights_range.values())
    points = len(values) ** 2
    return CalibratePlan(
        grid_points=points,
        conformal=ConformalSettings(
            protocol=c.protocol,
            label_rule=c.label_rule,
            alphas=tuple(c.quantile_bars),
            accuracy_threshold=c.accuracy_threshold,
            grid_values=values,
            random_count=c.random_count,
            split_num=c.split_num,
            tuning_fraction=c.tuning_fraction,
            seed=c.seed,
        ),
        similarity=SimilaritySettings(
            vector_size=c.similarity_vector_size, epochs=c.similarity_epochs, seed=c.seed
        ),
        num_cpus=cfg.resources.cpus_per_task,
        chunks=max(1, min(c.grid_chunks, points)),
        min_cells_per_task=c.min_cells_per_task,
    )


# ---- inputs --------------------------------------------------------------------------------------
def _rows(table: pa.Table) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    rows.sort(key=lambda r: str(r["prompt_id"]))  # parquet part order must not matter
    return rows


def load_inputs(
    ctx: StageContext, protocol: str = "split"
) -> tuple[list[dict], list[dict], dict[tuple[str, str], float | None]]:
    """Calibration rows, test rows and judge scores keyed by (prompt_id, answer); each row's answers
    in ``protocol``'s order (``cfa``: the first sampled first, see ``top_answer_first``).

    Args:
        ctx: The run's context (its store holds the generate stage's artifacts).
        protocol: The conformal protocol (``split`` or ``cfa``), which sets the answers' order.

    Returns:
        ``(cal, test, scores)``: the calibration and test rows sorted by prompt_id, and the judge score
        of each (prompt_id, answer) (None where missing or NaN).

    Raises:
        RlufError: The generation artifacts are missing or unreadable, a row has no answers or answers
            and counts of different lengths, or a row cannot be reordered.
    """
    gen = ctx.upstream_dir("generate")
    try:
        cal = _rows(ctx.store.read_parquet(gen, "calibration"))
        test = _rows(ctx.store.read_parquet(gen, "test"))
        scores_tab = ctx.store.read_parquet(gen, SCORES_ARTIFACT)
    except (FileNotFoundError, OSError) as exc:
        raise RlufError(f"calibrate: generation artifacts missing or unreadable ({exc})") from None
    scores: dict[tuple[str, str], float | None] = {}
    for r in scores_tab.to_pylist():
        v = r["score"]
        scores[(r["prompt_id"], r["answer"])] = None if v is None or math.isnan(v) else float(v)
    for r in cal + test:
        if not r["answers"]:
            raise RlufError(f"calibrate: prompt {r['prompt_id']} has no answers")
        if len(r["answers"]) != len(r["counts"]):
            raise RlufError(f"calibrate: prompt {r['prompt_id']} has answers and counts of different lengths")
    if protocol == "cfa":
        old = sum(r.get("first_sampled") is None for r in cal + test)
        if old:
            log.info("calibrate: %d generation rows without first_sampled (an older artifact): the most "
                     "frequent answer is taken as the first sampled", old)  # fmt: skip
        try:
            cal = [top_answer_first(r, protocol) for r in cal]
            test = [top_answer_first(r, protocol) for r in test]
        except ValueError as exc:
            raise RlufError(f"calibrate: {exc}") from None
    return cal, test, scores


def corpus_of(rows: list[dict]) -> list[str]:
    """The similarity model's training text: every sampled answer, reference and prompt of the run.

    Args:
        rows: Generation rows (``answers``, and optionally ``texts``, ``reference``, ``prompt``).

    Returns:
        The non-empty texts, answers, references and prompts, row by row.
    """
    out: list[str] = []
    for r in rows:
        out.extend(t for t in (r.get("texts") or []) if t)
        out.extend(a for a in r["answers"] if a)
        for key in ("reference", "prompt"):
            if r.get(key):
                out.append(r[key])
    return out


def build_tables(
    cal: list[dict], test: list[dict], scores: dict[tuple[str, str], float | None], sims: list[list[float]]
) -> tuple[PaddedAnswerTable, PaddedAnswerTable]:
    """Padded tables for both splits (``sims`` covers cal rows then test rows).

    Args:
        cal: The calibration rows (``counts``, ``answers``, ``prompt_id``).
        test: The test rows.
        scores: (prompt_id, answer) -> judge score (None: missing).
        sims: Per row, each answer's similarity to the top answer: cal rows, then test rows.

    Returns:
        ``(cal_table, test_table)``; only the calibration table carries judge scores.
    """
    judge = [[scores.get((r["prompt_id"], a)) for a in r["answers"]] for r in cal]
    cal_t = pad_table(
        [r["counts"] for r in cal],
        sims[: len(cal)],
        judge,
        [r["answers"] for r in cal],
        [r["prompt_id"] for r in cal],
    )
    test_t = pad_table(
        [r["counts"] for r in test],
        sims[len(cal) :],
        None,
        [r["answers"] for r in test],
        [r["prompt_id"] for r in test],
    )
    return cal_t, test_t


# ---- outputs -------------------------------------------------------------------------------------
def json_safe(obj: Any) -> Any:
    """Non-finite floats as strings ("inf", "nan"), so the JSON artifacts stay strict JSON.

    Args:
        obj: A JSON-like value (dicts, lists, tuples, scalars), walked recursively.

    Returns:
        ``obj`` with every non-finite float as a string (tuples become lists).
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def set_rows(test: PaddedAnswerTable, cals: list[Calibration]) -> tuple[pa.Table, dict[float, np.ndarray]]:
    """Prediction-set rows for every alpha, and each alpha's set sizes.

    Args:
        test: The test split's padded table.
        cals: What calibration decided per alpha (weights and threshold).

    Returns:
        ``(table, sizes)``: one PREDICTION_SET_SCHEMA row per (alpha, prompt, answer in the set), and
        alpha -> set size per test prompt, shape (P,).
    """
    cols: dict[str, list[Any]] = {"prompt_id": [], "alpha": [], "answer": [], "nonconformity": []}
    sizes: dict[float, np.ndarray] = {}
    parts = score_parts(test)
    for c in cals:
        scores = nonconformity(parts, c.w1, c.w2)
        member = in_set(scores, test.mask, c.threshold)
        sizes[c.alpha] = member.sum(axis=1)
        for i, j in zip(*np.nonzero(member), strict=True):
            cols["prompt_id"].append(test.prompt_ids[i])
            cols["alpha"].append(c.alpha)
            cols["answer"].append(test.answers[i][j])
            cols["nonconformity"].append(float(scores[i, j]))
    return pa.table(cols, schema=PREDICTION_SET_SCHEMA), sizes


def run(p: CalibratePlan, ctx: StageContext) -> StageResult:
    """Calibrate on the calibration split and write prediction sets for the test split.

    Args:
        p: The stage's plan (settings and fan-out).
        ctx: The run's context (store, options, stage key).

    Returns:
        Row counts and metrics for the manifest.
    """
    cal, test, scores = load_inputs(ctx, p.conformal.protocol)
    if not cal:
        raise RlufError("calibrate: the calibration split is empty")

    settings = p.conformal
    zero_sims = [[0.0] * len(r["answers"]) for r in cal + test]
    check_sizes(build_tables(cal, test, scores, zero_sims)[0], settings)  # fail before FastText

    t0 = time.perf_counter()
    sims = top_answer_similarities([r["answers"] for r in cal + test], corpus_of(cal + test), p.similarity)
    t_sim = time.perf_counter() - t0
    cal_t, test_t = build_tables(cal, test, scores, sims)

    t0 = time.perf_counter()
    result = calibrate(cal_t, settings, map_grid=p.grid_tasks())
    t_grid = time.perf_counter() - t0

    table, sizes = set_rows(test_t, result.calibrations)
    n_sets = ctx.store.write_parquet(ctx.dir, PREDICTION_SETS_ARTIFACT, table)
    chosen = {
        str(k.alpha): {"w1": k.w1, "w2": k.w2, "threshold": k.threshold, "n_calibration": k.n_calibration}
        for k in result.calibrations
    }
    ctx.store.write_json(
        ctx.dir,
        CALIBRATION_JSON,
        json_safe({"protocol": settings.protocol, "label_rule": settings.label_rule, "per_alpha": chosen}),
    )
    test_sizes = {
        str(a): {
            "mean": float(s.mean()) if s.size else 0.0,
            "median": float(np.median(s)) if s.size else 0.0,
            "empty": int((s == 0).sum()),
        }
        for a, s in sizes.items()
    }
    test_counts = {
        "prompts": len(test),
        "prompts_single_answer": int((test_t.mask.sum(axis=1) == 1).sum()) if len(test) else 0,
    }
    report = {
        **result.report,
        "calibration_inputs": result.counts,
        "test_inputs": test_counts,
        "test_set_size": test_sizes,
        "surfaces": {str(a): s.round(6).tolist() for a, s in result.surfaces.items()},
        "timing_s": {"similarity": round(t_sim, 3), "grid_search": round(t_grid, 3)},
        "plan": plan_data(p),
    }
    ctx.store.write_json(ctx.dir, REPORT_JSON, json_safe(report))
    values = list(result.report["grid_values"])
    ctx.store.write_bytes(ctx.dir, SURFACE_PNG, plot_surface(result.surfaces, values, result.calibrations))
    ctx.store.write_bytes(ctx.dir, HIST_PNG, plot_hist(sizes))
    log.info("calibrate: %s", {a: (v["w1"], v["w2"], round(v["threshold"], 4)) for a, v in chosen.items()})
    for a, v in result.report["per_alpha"].items():
        if v["trivial"]:
            log.warning("calibrate: alpha=%s is trivial: %d of %d labelled calibration prompts have no acceptable "
                        "answer (more than alpha), so every set holds every answer; true coverage %.3f", a,
                        result.counts["prompts_no_acceptable"], result.report["n_labelled"], v["coverage_mean"])  # fmt: skip
    metrics = {
        f"alpha_{a}": {
            "coverage_mean": v.get("coverage_mean"),
            "set_size_mean": v.get("set_size_mean"),
            "threshold": v["threshold"],
            "trivial": v["trivial"],
        }
        for a, v in result.report["per_alpha"].items()
    }
    metrics.update({"inputs": result.counts, "timing_s": report["timing_s"]})
    return StageResult(
        rows={"prediction_sets": n_sets, "test_prompts": len(test)}, metrics=json_safe(metrics)
    )


STAGE = StageDef(
    name="calibrate",
    artifact_dir="calibration",
    upstream=("generate",),
    plan_fn=plan,
    run_fn=run,
)
