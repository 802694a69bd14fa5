"""evaluate: 4-axis rubric judging of held-out predictions, per-model means and win rates."""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa

from rluf_ray.config import JUDGE_RESULT_KEYS, RlufConfig, judge_result_settings
from rluf_ray.core.judge_cost import format_dry_run
from rluf_ray.core.judge_keys import rubric_key
from rluf_ray.core.judge_parsing import RUBRIC_AXES
from rluf_ray.core.judge_prompts import JudgeRequest, rubric_request
from rluf_ray.core.metrics import axis_means, win_rate
from rluf_ray.data.splits import load_split, split_plan, split_reads
from rluf_ray.errors import RlufError
from rluf_ray.io import judge_service
from rluf_ray.schema import EVAL_SCORE_SCHEMA, EVAL_SCORES_ARTIFACT, PREDICTIONS_ARTIFACT
from rluf_ray.stages.registry import StageContext, StageDef, StageResult

log = logging.getLogger("rluf.evaluate")

POLICY, BASELINE = "cfa", "sft"


def evaluation_judge_config(cfg: RlufConfig) -> RlufConfig:
    """The config the rubric judge runs with: the judge section with evaluation.model."""
    if cfg.judge.provider == "offline":
        return cfg
    return cfg.model_copy(update={"judge": cfg.judge.model_copy(update={"model": cfg.evaluation.model})})


def build_requests(predictions: list[dict[str, Any]], posts: dict[str, str]) -> list[JudgeRequest]:
    """One rubric request per (model, prompt)."""
    return [
        rubric_request(
            rubric_key(p["model"], p["prompt_id"]),
            posts.get(p["prompt_id"], p["prompt"]),
            p["reference"],
            p["prediction"],
        )  # fmt: skip
        for p in predictions
    ]


def summarise(rows: list[dict[str, Any]], axes: tuple[str, ...]) -> dict[str, Any]:
    """Per-model axis means and overall, and the policy's win rate against the baseline."""
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    models: dict[str, Any] = {}
    overall: dict[str, dict[str, float]] = {}
    for model, mrows in sorted(by_model.items()):
        ok = [r for r in mrows if r["error"] is None]
        means = axis_means(ok, axes)
        overall[model] = {r["prompt_id"]: sum(r[a] for a in axes) / len(axes) for r in ok}
        vals = list(overall[model].values())
        models[model] = {"n": len(mrows), "missing": len(mrows) - len(ok), "axes": means,
                         "overall": sum(vals) / len(vals) if vals else math.nan}  # fmt: skip
    out: dict[str, Any] = {"models": models}
    if POLICY in overall and BASELINE in overall:
        wr = win_rate(overall[POLICY], overall[BASELINE])
        out["win_rate"] = {"policy": POLICY, "baseline": BASELINE, "wins": wr.wins, "ties": wr.ties,
                           "losses": wr.losses, "rate": wr.rate}  # fmt: skip
    return out


def markdown(summary: dict[str, Any], axes: tuple[str, ...]) -> str:
    """A small report table."""
    lines = ["# Evaluation", "", "| model | n | missing | " + " | ".join(axes) + " | overall |",
             "|---" * (len(axes) + 4) + "|"]  # fmt: skip
    for model, m in summary["models"].items():
        cells = " | ".join(f"{m['axes'][a]:.2f}" for a in axes)
        lines.append(f"| {model} | {m['n']} | {m['missing']} | {cells} | {m['overall']:.2f} |")
    if "win_rate" in summary:
        w = summary["win_rate"]
        lines += ["", f"Win rate of {w['policy']} over {w['baseline']}: {w['rate']:.3f} "
                      f"({w['wins']} wins, {w['ties']} ties, {w['losses']} losses)"]  # fmt: skip
    return "\n".join(lines) + "\n"


def run(cfg: RlufConfig, ctx: StageContext) -> StageResult:
    """Judge every prediction on the rubric; write scores, a JSON report and a markdown table."""
    axes = tuple(cfg.evaluation.axes)
    unknown = set(axes) - set(RUBRIC_AXES)
    if unknown:
        raise RlufError(f"evaluation.axes: {sorted(unknown)} not in the rubric's axes {list(RUBRIC_AXES)}")
    store = ctx.store
    try:
        predictions = store.read_parquet(ctx.upstream_dir("infer"), PREDICTIONS_ARTIFACT).to_pylist()
    except (FileNotFoundError, OSError) as exc:
        raise RlufError(f"evaluate: inference predictions missing ({exc})") from None
    posts = {r["prompt_id"]: r["post"] for r in load_split(cfg, "eval")}
    reqs = build_requests(predictions, posts)
    jcfg = evaluation_judge_config(cfg)
    if ctx.options.get("dry_run"):
        print(format_dry_run(judge_service.dry_run(jcfg, reqs, "evaluate")))
        return StageResult()
    results, report = judge_service.judge_requests(
        jcfg, reqs, run="evaluate", batch=cfg.evaluation.use_batch_api
    )
    if report.get("budget_exhausted"):
        raise RlufError(f"evaluate: judge.max_dollars={cfg.judge.max_dollars} reached; finished calls are "
                        "cached, raise the cap and rerun")  # fmt: skip
    by_key = {r.key: r for r in results}
    rows, failures = [], Counter()
    for req, pred in zip(reqs, predictions, strict=True):
        res = by_key[req.key]
        row: dict[str, Any] = {"prompt_id": pred["prompt_id"], "model": pred["model"], "error": res.error}
        for axis in RUBRIC_AXES:
            row[axis] = float(res.value[axis]) if res.ok else None
        if not res.ok:
            failures[(res.error or "unknown").split(":", 1)[0]] += 1
        rows.append(row)
    store.write_parquet(ctx.dir, EVAL_SCORES_ARTIFACT, pa.Table.from_pylist(rows, schema=EVAL_SCORE_SCHEMA))
    summary = summarise(rows, axes)
    summary["missing_by_reason"] = dict(failures)
    summary["judge"] = {k: v for k, v in report.items() if k != "budget"}
    store.write_json(ctx.dir, "report.json", summary)
    store.write_bytes(ctx.dir, "report.md", markdown(summary, axes).encode())
    if "win_rate" in summary:
        log.info("evaluate: win rate %s vs %s = %.3f", POLICY, BASELINE, summary["win_rate"]["rate"])
    return StageResult(rows={"scored": len(rows) - sum(failures.values()), "missing": sum(failures.values())},
                       metrics={k: summary[k] for k in ("models", "win_rate") if k in summary})  # fmt: skip


def plan(cfg: RlufConfig) -> dict[str, Any]:
    """The rubric axes, the judge settings the rubric runs with, and the eval posts."""
    e = cfg.evaluation
    return {
        "axes": list(e.axes),
        "use_batch_api": e.use_batch_api,
        "judge": judge_result_settings(evaluation_judge_config(cfg).judge),
        "eval_split": split_plan(cfg, "eval"),
    }


STAGE = StageDef(
    name="evaluate",
    artifact_dir="evaluation",
    upstream=("infer",),
    reads=("evaluation", *(k for k in JUDGE_RESULT_KEYS if k != "judge.model"), *split_reads("eval")),
    plan_fn=plan,
    run_fn=run,
)
