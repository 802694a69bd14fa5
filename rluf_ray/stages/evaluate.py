"""evaluate: three-arm evaluation of held-out predictions: pairwise win rates and rubric means, each
with a paired bootstrap 95% interval over prompts (and seeds).

For every pair of arms present (cfa-dpo, cfa-sft, dpo-sft) and every seed pairing and prompt, one
pairwise judge request (the feedback task and template; the arm shown first is drawn per item from
``evaluation.seed``); identical predictions are a tie without a call. Every (model, seed, prompt)
gets the 4-axis rubric. A prompt with any missing judgement is dropped for all arms alike and counted
(``rluf_ray.evaluation.arm_comparison``).

Artifacts (``outputs/evaluation/``): ``report.json`` (win_rates, rubric, dropped, judge),
``report.md``, ``scores.parquet`` (EVAL_SCORE_SCHEMA) and ``comparisons.parquet``
(EVAL_COMPARISON_SCHEMA).
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from rluf_ray.config import JudgeConfig, PairwiseTemplate, RlufConfig, RubricTemplate, operational, plan_type
from rluf_ray.data.splits import SplitPlan, load_split, split_plan
from rluf_ray.errors import RlufError
from rluf_ray.evaluation import arm_comparison as arms
from rluf_ray.evaluation.intervals import TIE
from rluf_ray.judge import api as judge_api
from rluf_ray.judge.api import JudgePlan
from rluf_ray.judge.cost import format_dry_run
from rluf_ray.judge.keys import comparison_key, parse_seeded_rubric_key, seeded_rubric_key
from rluf_ray.judge.parsing import RUBRIC_AXES
from rluf_ray.judge.requests import JudgeRequest, instruction_of, pairwise_request, rubric_request
from rluf_ray.schema import (
    EVAL_COMPARISON_SCHEMA,
    EVAL_COMPARISONS_ARTIFACT,
    EVAL_SCORE_SCHEMA,
    EVAL_SCORES_ARTIFACT,
    PREDICTIONS_ARTIFACT,
)
from rluf_ray.stages.registry import StageContext, StageDef, StageResult

log = logging.getLogger("rluf.evaluate")

N_BOOT = 2000  # bootstrap resamples of every interval
LEVEL = 0.95  # interval level

PredKey = tuple[str, int | None, str]  # (model, seed, prompt_id)


@plan_type
class EvaluatePlan:
    """The rubric axes, the evaluation seed, the judge (with ``evaluation.model``), the instruction,
    the templates and the eval posts."""

    axes: tuple[str, ...]
    seed: int
    judge: JudgePlan
    template: str  # the prompt template: its instruction part heads every pairwise comparison
    rubric_template: RubricTemplate
    pairwise_template: PairwiseTemplate
    eval_split: SplitPlan
    use_batch_api: bool = operational()


def evaluation_judge_config(judge: JudgeConfig, model: str) -> JudgeConfig:
    """The judge section the evaluation runs with: ``judge`` with ``evaluation.model`` (when set).

    Args:
        judge: The ``judge`` section.
        model: The evaluation's judge model (``evaluation.model``, else ``judge.model``; a provider
            that needs no model ignores it).

    Returns:
        The evaluation's judge section.
    """
    return judge.model_copy(update={"model": model})


def plan(cfg: RlufConfig) -> EvaluatePlan:
    """Everything evaluate takes from the config.

    Args:
        cfg: The config.

    Returns:
        The stage's plan.
    """
    e, t = cfg.evaluation, cfg.judge.templates
    return EvaluatePlan(
        axes=tuple(e.axes),
        seed=e.seed,
        judge=judge_api.judge_plan(
            cfg, ("pairwise", "rubric"), evaluation_judge_config(cfg.judge, e.model or cfg.judge.model)
        ),
        template=cfg.data.prompt_template,
        rubric_template=t.rubric,
        pairwise_template=t.pairwise,
        eval_split=split_plan(cfg.data, "eval"),
        use_batch_api=e.use_batch_api,
    )


def index_predictions(predictions: list[dict[str, Any]]) -> dict[PredKey, dict[str, Any]]:
    """(model, seed, prompt_id) -> prediction row; a duplicate is an error.

    Args:
        predictions: Prediction rows (``model``, ``seed``, ``prompt_id``, ...).

    Returns:
        Each row keyed by its (model, seed, prompt_id).

    Raises:
        RlufError: Two rows share a key.
    """
    out: dict[PredKey, dict[str, Any]] = {}
    for p in predictions:
        key = (p["model"], p.get("seed"), p["prompt_id"])
        if key in out:
            raise RlufError(f"evaluate: two predictions for model {key[0]}, seed {key[1]}, prompt {key[2]}")
        out[key] = p
    return out


def evaluation_requests(
    p: EvaluatePlan, preds: dict[PredKey, dict[str, Any]], posts: dict[str, str]
) -> tuple[list[arms.ComparisonItem], dict[str, list[str]], list[JudgeRequest], list[JudgeRequest]]:
    """Comparison items, prompts missing a prediction, pairwise requests (ties need none), rubric requests.

    Args:
        p: The stage's plan (seed, templates).
        preds: (model, seed, prompt_id) -> prediction row.
        posts: prompt_id -> the raw post.

    Returns:
        ``(items, missing, pairwise requests, rubric requests)``.
    """
    items, missing = arms.comparison_items({k: pred["prediction"] for k, pred in preds.items()}, p.seed)
    instruction = instruction_of(p.template)
    pairwise = []
    for it in items:
        if it.tie:
            continue
        pa_, pb_ = preds[(it.a, it.a_seed, it.prompt_id)], preds[(it.b, it.b_seed, it.prompt_id)]
        out_1, out_2 = (pa_, pb_) if it.first == it.a else (pb_, pa_)
        pairwise.append(
            pairwise_request(
                comparison_key(it.a, it.b, it.seed, it.prompt_id),
                instruction,
                posts.get(it.prompt_id, pa_["prompt"]),
                out_1["prediction"],
                out_2["prediction"],
                pa_["reference"],
                p.pairwise_template,
            )
        )
    rubric = [
        rubric_request(
            seeded_rubric_key(m, s, pid),
            posts.get(pid, pred["prompt"]),
            pred["reference"],
            pred["prediction"],
            p.rubric_template,
        )
        for (m, s, pid), pred in sorted(
            preds.items(), key=lambda kv: (kv[0][0], *arms.seed_order(kv[0][1]), kv[0][2])
        )
    ]
    return items, missing, pairwise, rubric


def markdown(report: dict[str, Any], axes: tuple[str, ...]) -> str:
    """Readable tables of the win rates and the rubric means.

    Args:
        report: The evaluation report (``win_rates``, ``rubric``, ``dropped``).
        axes: The rubric axes, in column order.

    Returns:
        The Markdown text, ending with a newline.
    """
    pct = int(round(LEVEL * 100))
    lines = ["# Evaluation", "", f"## Win rates (ties count one half; paired bootstrap {pct}% interval)", "",
             "| A | B | win rate of A | interval | n | seeds | wins | ties | losses |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for w in report["win_rates"]:
        lines.append(f"| {w['a']} | {w['b']} | {w['win_rate']:.3f} | [{w['ci_low']:.3f}, {w['ci_high']:.3f}] | "
                     f"{w['n']} | {w['seeds']} | {w['wins']} | {w['ties']} | {w['losses']} |")  # fmt: skip
    lines += ["", f"## Rubric means (0-10; {pct}% interval)", "",
              "| model | n | seeds | " + " | ".join(axes) + " | overall |", "|---" * (len(axes) + 4) + "|"]  # fmt: skip
    for model, r in report["rubric"].items():
        cells = [r["axes"][a] for a in axes] + [r["overall"]]
        text = " | ".join(f"{c['mean']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]" for c in cells)
        lines.append(f"| {model} | {r['n']} | {r['seeds']} | {text} |")
    d = report["dropped"]
    lines += [
        "",
        f"Dropped prompts (a missing judgement or prediction for any arm): {d['prompts']} of {d['of']}",
    ]
    if d["by_reason"]:
        lines.append("Reasons: " + ", ".join(f"{k} {v}" for k, v in d["by_reason"].items()))
    return "\n".join(lines) + "\n"


def run(p: EvaluatePlan, ctx: StageContext) -> StageResult:
    """Judge every comparison item and every prediction's rubric; write the report, scores and comparisons.

    Args:
        p: The stage's plan (axes, seed, judge, templates, eval split).
        ctx: The run's context (store, options, stage key).

    Returns:
        Row counts and metrics for the manifest.
    """
    axes = p.axes
    unknown = set(axes) - set(RUBRIC_AXES)
    if unknown:
        raise RlufError(f"evaluation.axes: {sorted(unknown)} not in the rubric's axes {list(RUBRIC_AXES)}")
    store = ctx.store
    try:
        predictions = store.read_parquet(ctx.upstream_dir("infer"), PREDICTIONS_ARTIFACT).to_pylist()
    except (FileNotFoundError, OSError) as exc:
        raise RlufError(f"evaluate: inference predictions missing ({exc})") from None
    preds = index_predictions(predictions)
    models = arms.ordered_arms(m for m, _, _ in preds)
    if len(models) < 2:
        raise RlufError(f"evaluate: predictions of at least two models needed, got {models}")
    posts = {r["prompt_id"]: r["post"] for r in load_split(p.eval_split)}
    items, missing, pairwise, rubric = evaluation_requests(p, preds, posts)
    if not items and not missing:
        raise RlufError("evaluate: no comparison to make (the arms share no seed)")
    reqs = [*pairwise, *rubric]
    j, jctx, batch = p.judge, p.judge.context("evaluate"), p.use_batch_api
    if ctx.options.get("dry_run"):
        print(format_dry_run(judge_api.dry_run(j.section, reqs, jctx, use_batch_api=batch)))
        return StageResult()
    results, report = judge_api.judge(j.section, reqs, jctx, use_batch_api=batch)
    if report.get("budget_exhausted"):
        raise RlufError(f"evaluate: judge.max_dollars={p.judge.section.max_dollars} reached; finished calls are "
                        "cached, raise the cap and rerun")  # fmt: skip
    by_key = {r.key: r for r in results}
    comparisons = []
    for it in items:
        row: dict[str, Any] = {
            "a": it.a,
            "b": it.b,
            "seed": it.seed,
            "prompt_id": it.prompt_id,
            "first": it.first,
        }
        if it.tie:
            row.update(outcome=TIE, error=None)
        else:
            res = by_key[comparison_key(it.a, it.b, it.seed, it.prompt_id)]
            outcome = arms.outcome_of(it.a, it.first, int(res.value)) if res.ok else None
            row.update(outcome=outcome, error=res.error)
        comparisons.append(row)
    scores = []
    for req in rubric:
        res = by_key[req.key]
        model, seed, pid = parse_seeded_rubric_key(req.key)
        srow: dict[str, Any] = {"prompt_id": pid, "model": model, "seed": seed, "error": res.error}
        for axis in RUBRIC_AXES:
            srow[axis] = float(res.value[axis]) if res.ok else None
        scores.append(srow)
    store.write_parquet(ctx.dir, EVAL_SCORES_ARTIFACT, pa.Table.from_pylist(scores, schema=EVAL_SCORE_SCHEMA))
    store.write_parquet(ctx.dir, EVAL_COMPARISONS_ARTIFACT,
                        pa.Table.from_pylist(comparisons, schema=EVAL_COMPARISON_SCHEMA))  # fmt: skip
    out = arms.summarise(comparisons, scores, axes, missing, n_boot=N_BOOT, level=LEVEL, seed=p.seed)
    if out["dropped"]["kept"] == 0:
        raise RlufError(f"evaluate: every prompt was dropped ({out['dropped']['by_reason']})")
    out["judge"] = {k: v for k, v in report.items() if k != "budget"}
    out["interval"] = {"level": LEVEL, "n_boot": N_BOOT, "seed": p.seed}
    store.write_json(ctx.dir, "report.json", out)
    store.write_bytes(ctx.dir, "report.md", markdown(out, axes).encode())
    for w in out["win_rates"]:
        log.info("evaluate: %s over %s %.3f [%.3f, %.3f] (n=%d)", w["a"], w["b"], w["win_rate"], w["ci_low"],
                 w["ci_high"], w["n"])  # fmt: skip
    failed = out["dropped"]["failed_judgements"]
    metrics = {
        "win_rates": out["win_rates"],
        "rubric_overall": {m: r["overall"] for m, r in out["rubric"].items()},
        "dropped_prompts": out["dropped"]["prompts"],
    }
    return StageResult(rows={"comparisons": len(comparisons), "scored": len(scores) - failed["rubric"],
                             "missing": failed["comparisons"] + failed["rubric"]},
                       metrics=metrics)  # fmt: skip


STAGE = StageDef(
    name="evaluate",
    artifact_dir="evaluation",
    upstream=("infer",),
    plan_fn=plan,
    run_fn=run,
)
