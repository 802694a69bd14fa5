"""``rluf generate``: N samples per prompt on the engine pool, counted into answer tables.

Prompts (Ray Data, streamed, finished ids filtered out) -> ``engine_pool.apply`` (engine actors, one
request per batch) -> ``sample_parts.write_parts`` (atomic Parquet parts) -> the driver tallies tiny
per-file summaries, never the rows. Resume: parts are named by the prompt ids they hold, so a rerun
after a kill generates only the ids not on disk yet, if the run key (config hash + SFT manifest) still
matches and not ``--force``. Engine actors that die are restarted by Ray Data and their batch redone.
"""

from __future__ import annotations

import logging
from typing import Any

from rluf_ray.config import RlufConfig, ScoreTemplate, plan_key, plan_type
from rluf_ray.conformal.answers import VarietyStats
from rluf_ray.data import splits
from rluf_ray.data.splits import SplitPlan
from rluf_ray.engines import pool as engine_pool
from rluf_ray.engines.base import SamplingSpec
from rluf_ray.engines.pool import PoolPlan
from rluf_ray.errors import RlufError
from rluf_ray.judge import api as judge_api
from rluf_ray.judge.api import JudgePlan
from rluf_ray.judge.cost import format_dry_run
from rluf_ray.judge.keys import answer_key
from rluf_ray.judge.requests import score_request
from rluf_ray.judge.scoring import calibration_score_rows
from rluf_ray.runtime.bootstrap import releases_on_error, user_error
from rluf_ray.schema import GENERATION_SPLITS, MODEL_DIR, SCORES_ARTIFACT
from rluf_ray.stages.registry import StageContext, StageDef, StageResult
from rluf_ray.store import parts as sample_parts
from rluf_ray.store.artifacts import ArtifactStore
from rluf_ray.store.model_cache import check_model_location

log = logging.getLogger("rluf.generate")

RUN_KEY = "_run.json"


# ---- pure planning ------------------------------------------------------------------------------
@plan_type
class SamplesPlan:
    """What the samples depend on (a killed run resumes only under the same): the pool and the splits."""

    pool: PoolPlan
    splits: tuple[SplitPlan, ...]  # GENERATION_SPLITS, in order
    rows_per_file: int  # prompts per part file: the unit of resume, and the demo's blocks (so batches)

    def split(self, name: str) -> SplitPlan:
        """The plan of one generation split.

        Args:
            name: A split of ``GENERATION_SPLITS``.

        Returns:
            Its plan.
        """
        return next(s for s in self.splits if s.split == name)


@plan_type
class GeneratePlan:
    """Everything ``generate`` takes from the config: the samples, then the calibration scoring."""

    samples: SamplesPlan
    score_calibration: bool
    score_template: ScoreTemplate
    judge: JudgePlan


def plan(cfg: RlufConfig) -> GeneratePlan:
    """Everything the run takes from the config; validates, starts nothing.

    Args:
        cfg: The config.

    Returns:
        The stage's plan.
    """
    g = cfg.generation
    budget = splits.prompt_budget(cfg.model.max_context, g.max_new_tokens)
    spec = SamplingSpec.from_config(g)
    pool = engine_pool.plan(g, cfg.resources, cfg.model, cfg.data.prompt_template, spec, budget)
    split_plans = tuple(splits.split_plan(cfg.data, s) for s in GENERATION_SPLITS)
    return GeneratePlan(
        samples=SamplesPlan(pool=pool, splits=split_plans, rows_per_file=g.rows_per_file),
        score_calibration=g.score_calibration,
        score_template=cfg.judge.templates.score,
        judge=judge_api.judge_plan(cfg, ("score",)),
    )


# ---- resume -------------------------------------------------------------------------------------
def scan_split(store: ArtifactStore, stage_dir: str, split: str) -> tuple[VarietyStats, int]:
    """Variety statistics over every part file of a split, streamed file by file; and duplicate ids.

    Args:
        store: The artifact store.
        stage_dir: The generate stage's artifact directory.
        split: The split whose part files to read.

    Returns:
        ``(stats, duplicates)``: the statistics over each prompt's first row, and how many rows repeated
        a prompt_id already seen.
    """
    stats, seen, dups = VarietyStats(), set(), 0
    cols = ["prompt_id", "reference", "answers", "counts", "truncated"]
    for d in store.iter_part_batches(stage_dir, split, cols):
        for pid, ref, answers, counts, trunc in zip(*(d[c] for c in cols), strict=True):
            if pid in seen:
                dups += 1
                continue
            seen.add(pid)
            stats.add(answers, counts, ref, trunc)
    return stats, dups


def _run_key(samples: SamplesPlan, ctx: StageContext) -> dict[str, Any]:
    """What the samples depend on: the samples' plan (not the judge's) and the SFT model."""
    return {
        "config_hash": plan_key(samples),
        "sft_manifest": ctx.store.manifest_hash(ctx.upstream_dir("sft")),
        "engine": samples.pool.engine,
    }


def _prepare_dir(samples: SamplesPlan, ctx: StageContext) -> bool:
    """Keep finished parts of an interrupted run of the same plan; else start clean. True if resuming."""
    store, key = ctx.store, _run_key(samples, ctx)
    old = store.read_json(ctx.dir, RUN_KEY) if store.exists(ctx.dir, RUN_KEY) else None
    resume = old == key and not ctx.options.get("force", False)
    if not resume:
        for split in GENERATION_SPLITS:
            store.delete_subdir(ctx.dir, split)
        store.write_json(ctx.dir, RUN_KEY, key)
    for split in GENERATION_SPLITS:
        store.remove_temp_files(ctx.dir, split)
    return resume


# ---- the stage ------------------------------------------------------------------------------------
def prompt_dataset(split: SplitPlan, done: set[str], rows_per_file: int, blocks: int | None = None) -> Any:
    """The prompts of ``split`` not yet done, as a Ray Data dataset (streamed for the demo source).

    Args:
        split: The split's plan.
        done: Prompt ids already in part files.
        rows_per_file: Prompts per block of the demo source (``generation.rows_per_file``).
        blocks: At most this many blocks (None: one per ``rows_per_file`` prompts).

    Returns:
        ``(dataset or None when every prompt is done, the split's prompt count)``.
    """
    import ray.data

    name = split.split
    if split.demo is not None:
        n = splits.split_count(split)
        if n == 0:
            raise RlufError(f"the {name} split is empty")
        # Index ranges as in-memory blocks (no read task holding a CPU); documents are built on workers.
        step = max(1, rows_per_file)
        ranges = [{"start": a, "stop": min(a + step, n)} for a in range(0, n, step)]
        ds = ray.data.from_items(ranges, override_num_blocks=min(len(ranges), blocks or len(ranges)))
        kwargs = {"seed": split.demo.seed, "split": name, "done": frozenset(done)}
        return ds.map_batches(
            splits.DemoRows,
            fn_constructor_kwargs=kwargs,
            batch_size=1,
            **engine_pool.io_actor_kwargs(),
        ), n
    rows = splits.load_split(split)
    if not rows:
        raise RlufError(f"the {name} split is empty")
    total = len(rows)
    todo = [{**r, "split": name} for r in rows if r["prompt_id"] not in done]
    del rows
    return ray.data.from_items(todo) if todo else None, total


@releases_on_error  # a failed run frees its engine actors at once
def generate_splits(
    samples: SamplesPlan, ctx: StageContext, engine_factory: Any, progress_every_s: float = 10.0
) -> dict[str, dict[str, Any]]:
    """Sample every split through ONE engine actor pool into part files.

    Args:
        samples: The samples' plan (pool, splits, rows per part file).
        ctx: The run's context.
        engine_factory: Builds each actor's engine.
        progress_every_s: Seconds between progress lines.

    Returns:
        Progress figures per split (and ``all``: the throughput).
    """
    datasets = []
    figures: dict[str, dict[str, Any]] = {}
    for split in GENERATION_SPLITS:
        done = ctx.store.part_values(ctx.dir, split, "prompt_id")
        ds, total = prompt_dataset(samples.split(split), done, samples.rows_per_file)
        figures[split] = {"prompts_total": total, "prompts_resumed": len(done), "prompts_generated": 0,
                          "samples_generated": 0}  # fmt: skip
        if ds is not None and total > len(done):
            datasets.append(ds)
    if not datasets:
        return figures
    ds = datasets[0] if len(datasets) == 1 else datasets[0].union(*datasets[1:])
    sampled = engine_pool.apply(ds, samples.pool, engine_factory)
    written = sample_parts.write_parts(sampled, ctx.store, ctx.dir, samples.rows_per_file)
    figures["all"] = sample_parts.drain(written, figures, progress_every_s)
    return figures


def score_calibration_answers(p: GeneratePlan, ctx: StageContext) -> dict[str, Any]:
    """Judge-score every unique calibration answer against its reference (the test split is not scored).

    Writes ``SCORES_ARTIFACT`` (SCORE_SCHEMA): a failed call is a null score with its reason, never 0.
    Scores are cached by the judge, so a rerun after a crash or a budget stop costs no finished call.

    Args:
        p: The stage's plan (its scoring switch, template and judge).
        ctx: The run's context.

    Returns:
        The scoring's metrics.
    """
    if not p.score_calibration:
        return {"calibration_scored": False, "scoring": "disabled (generation.score_calibration=false)"}
    table = ctx.store.read_parquet(ctx.dir, "calibration")
    posts = {r["prompt_id"]: r["post"] for r in splits.load_split(p.samples.split("calibration"))}
    items = calibration_score_rows(table.select(["prompt_id", "split", "reference", "answers",
                                                 "texts"]).to_pylist(), posts)  # fmt: skip
    j = p.judge
    rows, report = judge_api.score_answers(j.section, items, j.context("generate"), template=p.score_template)
    ctx.store.write_parquet(ctx.dir, SCORES_ARTIFACT, judge_api.scores_table(rows))
    missing = sum(r["score"] is None for r in rows)
    log.info("generate: %d calibration answers scored, %d missing", len(rows) - missing, missing)
    return {"calibration_scored": True, "scores": len(rows), "scores_missing": missing,
            "judge": {k: v for k, v in report.items() if k != "budget"}}  # fmt: skip


def scoring_estimate(p: GeneratePlan) -> str:
    """What scoring would cost at most: one call per sample of every calibration prompt (an upper bound,
    since only unique answers are scored and the count of unique answers is known only after sampling).

    Args:
        p: The stage's plan.

    Returns:
        One line for ``--dry-run``.
    """
    rows = splits.load_split(p.samples.split("calibration"))
    tpl = p.score_template
    reqs = [score_request(answer_key(r["prompt_id"], str(i)), r["post"], r["reference"], r["reference"], tpl)
            for r in rows for i in range(p.samples.pool.sampling.n)]  # fmt: skip
    estimate = judge_api.dry_run(p.judge.section, reqs, p.judge.context("generate"))
    return format_dry_run(estimate) + " (upper bound: every sample unique)"


def run_generation(p: GeneratePlan, ctx: StageContext, engine_factory: Any = None) -> StageResult:
    """Generate both splits (resumably), then judge-score calibration answers.

    Args:
        p: The stage's plan.
        ctx: The run's context.
        engine_factory: Builds each actor's engine (None: the plan's engine on the SFT model).

    Returns:
        Row counts per split and metrics (throughput, variety, scoring).
    """
    from rluf_ray.runtime.bootstrap import ensure_ray

    pool = p.samples.pool
    if engine_factory is None:
        path = ctx.store.uri(ctx.upstream_dir("sft"), MODEL_DIR)  # SFT's save_pretrained folder
        check_model_location(path)
        engine_factory = engine_pool.default_engine_factory(pool, path)
    for split in GENERATION_SPLITS:  # empty inputs fail before any file is written
        if splits.split_count(p.samples.split(split)) == 0:
            raise RlufError(f"the {split} split is empty: nothing to generate")
    ensure_ray()
    if _prepare_dir(p.samples, ctx):
        log.info("generate: resuming an interrupted run (finished prompts are kept)")
    rows: dict[str, int] = {}
    metrics: dict[str, Any] = {"engine": pool.engine, "sampling_num": pool.sampling.n}
    try:
        figures = generate_splits(p.samples, ctx, engine_factory)
    except Exception as exc:
        user = user_error(exc)
        if user is not None:
            raise user from None
        raise
    metrics["throughput"] = figures.pop("all", {})
    for split in GENERATION_SPLITS:
        stats, dups = scan_split(ctx.store, ctx.dir, split)
        if dups:
            raise RlufError(f"{split}: {dups} duplicated prompt ids in the part files")
        rows[split] = stats.prompts
        metrics[split] = {**figures[split], **stats.summary()}
    metrics.update(score_calibration_answers(p, ctx))
    return StageResult(rows=rows, metrics=metrics)


def run(p: GeneratePlan, ctx: StageContext) -> StageResult:
    """Stage entry point: the cost estimate under ``--dry-run``, else :func:`run_generation`.

    Args:
        p: The stage's plan (samples and scoring).
        ctx: The run's context (store, options, stage key); ``options["engine_factory"]`` replaces the
            plan's engine (``rluf bench generate`` times the stage through it; no command sets it).

    Returns:
        Row counts and metrics for the manifest.
    """
    if ctx.options.get("dry_run"):
        print(scoring_estimate(p))
        return StageResult()
    return run_generation(p, ctx, ctx.options.get("engine_factory"))


STAGE = StageDef(
    name="generate",
    artifact_dir="generation",
    upstream=("sft",),
    plan_fn=plan,
    run_fn=run,
)
