"""feedback: pairwise AI preferences over each test prompt's unique answers -> DPO pairs.

Every unordered pair of a prompt's unique answers (or a seeded sample of them, when
``feedback.max_pairs_per_prompt`` caps it) goes to the judge as an AlpacaFarm-style record
(instruction, input, output_1, output_2). The order of the two outputs is randomised per pair
(``rluf_ray.training.feedback_pairs``), so position bias averages out; the share of "output 1 wins" is reported.
A comparison that finally fails is recorded with its reason and yields no pair.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

from rluf_ray.config import PairwiseTemplate, RlufConfig, operational, plan_type
from rluf_ray.data.splits import SplitPlan, load_split, split_plan
from rluf_ray.errors import RlufError
from rluf_ray.judge import api as judge_api
from rluf_ray.judge.api import JudgePlan
from rluf_ray.judge.cost import format_dry_run
from rluf_ray.judge.keys import pair_key
from rluf_ray.judge.requests import JudgeRequest, instruction_of, pairwise_request
from rluf_ray.schema import PAIRS_ARTIFACT
from rluf_ray.stages.registry import StageContext, StageDef, StageResult
from rluf_ray.training.feedback_pairs import PairTask, chosen_rejected, pair_tasks

log = logging.getLogger("rluf.feedback")

ANNOTATIONS_ARTIFACT = "annotations.jsonl"


@plan_type
class FeedbackPlan:
    """The annotation run's settings: pair selection, the judge, the instruction and the test posts."""

    max_pairs_per_prompt: int | None
    debias_order: bool
    seed: int
    judge: JudgePlan
    pairwise_template: PairwiseTemplate
    template: str  # the prompt template: its instruction part heads every comparison
    test_split: SplitPlan
    use_batch_api: bool = operational()


def plan(cfg: RlufConfig) -> FeedbackPlan:
    """Everything feedback takes from the config.

    Args:
        cfg: The config.

    Returns:
        The stage's plan.
    """
    f = cfg.feedback
    return FeedbackPlan(
        max_pairs_per_prompt=f.max_pairs_per_prompt,
        debias_order=f.debias_order,
        seed=f.seed,
        judge=judge_api.judge_plan(cfg, ("pairwise",)),
        pairwise_template=cfg.judge.templates.pairwise,
        template=cfg.data.prompt_template,
        test_split=split_plan(cfg.data, "test"),
        use_batch_api=f.use_batch_api,
    )


def feedback_requests(
    p: FeedbackPlan, rows: list[dict[str, Any]], posts: dict[str, str]
) -> tuple[list[JudgeRequest], dict[str, tuple[PairTask, dict[str, Any]]]]:
    """Pairwise judge requests for every selected pair.

    Args:
        p: The stage's plan (pair selection, template, pairwise template).
        rows: Generation rows of the test split (prompt_id, prompt, reference, answers, texts).
        posts: prompt_id -> the raw post.

    Returns:
        The requests, and request key -> (pair task, generation row).
    """
    instruction = instruction_of(p.template)
    reqs: list[JudgeRequest] = []
    index: dict[str, tuple[PairTask, dict[str, Any]]] = {}
    for row in rows:
        pid, answers, texts = row["prompt_id"], list(row["answers"]), list(row["texts"])
        post = posts.get(pid, row["prompt"])
        for task in pair_tasks(pid, answers, p.max_pairs_per_prompt, p.seed, p.debias_order):
            key = pair_key(pid, task.first, task.second)
            reqs.append(
                pairwise_request(
                    key,
                    instruction,
                    post,
                    texts[task.first],
                    texts[task.second],
                    row["reference"],
                    p.pairwise_template,
                )
            )
            index[key] = (task, row)
    return reqs, index


def run(p: FeedbackPlan, ctx: StageContext) -> StageResult:
    """Annotate pairs with the judge and write DPO pairs plus every annotation (failures included).

    Args:
        p: The stage's plan (pair selection, judge, templates, test split).
        ctx: The run's context (store, options, stage key).

    Returns:
        Row counts and metrics for the manifest.
    """
    store = ctx.store
    try:
        table = store.read_parquet(ctx.upstream_dir("generate"), "test")
    except (FileNotFoundError, OSError) as exc:
        raise RlufError(f"feedback: generation test split missing ({exc})") from None
    rows = sorted(table.select(["prompt_id", "prompt", "reference", "answers", "texts"]).to_pylist(),
                  key=lambda r: r["prompt_id"])  # fmt: skip
    posts = {r["prompt_id"]: r["post"] for r in load_split(p.test_split)}
    reqs, index = feedback_requests(p, rows, posts)
    j, jctx, batch = p.judge, p.judge.context("feedback"), p.use_batch_api
    if ctx.options.get("dry_run"):
        print(format_dry_run(judge_api.dry_run(j.section, reqs, jctx, use_batch_api=batch)))
        return StageResult()
    if not reqs:
        raise RlufError("feedback: no prompt has two or more unique answers to compare")
    log.info("feedback: %d comparisons over %d prompts", len(reqs), len(rows))
    results, report = judge_api.judge(j.section, reqs, jctx, use_batch_api=batch)
    if report.get("budget_exhausted"):
        raise RlufError(
            f"feedback: judge.max_dollars={p.judge.section.max_dollars} reached; finished calls are cached, "
            "raise the cap and rerun"
        )
    failures: Counter[str] = Counter()
    position_1 = 0

    def pairs() -> Iterator[dict[str, Any]]:
        nonlocal position_1
        for res in results:
            task, row = index[res.key]
            if not res.ok:
                failures[(res.error or "unknown").split(":", 1)[0]] += 1
                continue
            position_1 += int(res.value == 1)
            win, lose = chosen_rejected(task, int(res.value))
            yield {
                "prompt_id": row["prompt_id"],
                "prompt": row["prompt"],
                "chosen": row["texts"][win],
                "rejected": row["texts"][lose],
                "chosen_answer": row["answers"][win],
                "rejected_answer": row["answers"][lose],
            }

    def annotations() -> Iterator[dict[str, Any]]:
        for res in results:
            task, _ = index[res.key]
            yield {"prompt_id": task.prompt_id, "output_1": task.first, "output_2": task.second,
                   "flipped": task.flipped, "preference": res.value, "error": res.error,
                   "cached": res.cached}  # fmt: skip

    n_pairs = store.write_jsonl(ctx.dir, PAIRS_ARTIFACT, pairs())
    store.write_jsonl(ctx.dir, ANNOTATIONS_ARTIFACT, annotations())
    if n_pairs == 0:
        raise RlufError(f"feedback: every comparison failed ({dict(failures)})")
    metrics = {
        "comparisons": len(reqs),
        "pairs": n_pairs,
        "missing": sum(failures.values()),
        "missing_by_reason": dict(failures),
        "output_1_win_share": position_1 / n_pairs,
        "judge": {k: v for k, v in report.items() if k != "budget"},
    }
    log.info("feedback: %d pairs, %d missing, output-1 win share %.3f", n_pairs, metrics["missing"],
             metrics["output_1_win_share"])  # fmt: skip
    return StageResult(rows={"pairs": n_pairs, "comparisons": len(reqs)}, metrics=metrics)


STAGE = StageDef(
    name="feedback",
    artifact_dir="feedback",
    upstream=("generate",),
    plan_fn=plan,
    run_fn=run,
)
