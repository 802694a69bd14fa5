"""``rluf generate``: N samples per prompt on a Ray Data actor pool, counted into answer tables.

Flow per split (calibration, then test)::

    prompts (Ray Data, streamed; finished prompt ids filtered out)
      -> map_batches(SampleUDF, **plan(cfg))      engine actors: one engine request per batch
      -> map_batches(PartWriter, batch_size=rows_per_file)   tasks: atomic Parquet part files
      -> the driver iterates over tiny per-file summaries only (progress, totals), never the rows

Resume: part files are written atomically and named by the prompt ids they hold, so after a kill a
rerun reads the ids already on disk and generates only the rest (none lost, none duplicated). A run
key (config hash + SFT manifest hash) guards against resuming from parts of another config; ``--force``
starts over. Engine actors that die are restarted by Ray Data and their batch redone.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rluf_ray.config import JUDGE_RESULT_KEYS, RlufConfig
from rluf_ray.core.answers import VarietyStats, answer_table
from rluf_ray.data import splits
from rluf_ray.errors import RlufError
from rluf_ray.io.artifacts import TMP_MARK, ArtifactStore
from rluf_ray.io.engines import Engine, SamplingSpec, check_model_path, make_engine
from rluf_ray.io.ray_runtime import release_on_error
from rluf_ray.schema import GENERATION_SCHEMA, GENERATION_SPLITS, SCORES_ARTIFACT
from rluf_ray.stages.registry import StageContext, StageDef, StageResult

log = logging.getLogger("rluf.generate")

RUN_KEY = "_run.json"
READS: tuple[str, ...] = (
    "model.max_context",
    "data",
    "generation.engine",
    "generation.sampling_num",
    "generation.temperature",
    "generation.top_p",
    "generation.max_new_tokens",
    "generation.seed",
    "generation.score_calibration",
    *JUDGE_RESULT_KEYS,
)
EngineFactory = Callable[[], Engine]


# ---- pure planning ------------------------------------------------------------------------------
def sampling_spec(cfg: RlufConfig) -> SamplingSpec:
    """The sampling parameters of the stage."""
    g = cfg.generation
    return SamplingSpec(
        n=g.sampling_num, temperature=g.temperature, top_p=g.top_p, max_new_tokens=g.max_new_tokens
    )


def engine_options(cfg: RlufConfig) -> dict[str, Any]:
    """Keyword options of :func:`rluf_ray.io.engines.make_engine` for this config."""
    g, r = cfg.generation, cfg.resources
    return {
        "dtype": cfg.model.dtype,
        "max_context": cfg.model.max_context,
        "threads": max(1, int(r.cpus_per_actor)),
        "gpu_memory_utilization": g.vllm_gpu_memory_utilization,
        "enable_prefix_caching": g.vllm_enable_prefix_caching,
        "tensor_parallel_size": g.tensor_parallel_size,
        "seed": g.seed,
    }


def plan(cfg: RlufConfig) -> dict[str, Any]:
    """``map_batches`` keyword arguments of the engine stage (pool size, batch size, resources).

    Pure apart from building the ``ActorPoolStrategy`` object (no Ray is started). Actors that die
    are restarted and their batches retried: Ray Data's actor pool defaults to ``max_restarts=-1``
    and ``max_task_retries=-1`` (passing them again is deprecated in Ray 2.60), as the actor-death
    test checks.
    """
    import ray.data

    g, r = cfg.generation, cfg.resources
    if g.sampling_num < 1:
        raise RlufError(f"generation.sampling_num must be >= 1, got {g.sampling_num}")
    gpus = r.gpus_per_actor
    if g.engine == "vllm" and gpus and g.tensor_parallel_size > gpus:
        raise RlufError(
            f"generation.tensor_parallel_size={g.tensor_parallel_size} needs resources.gpus_per_actor >= "
            f"{g.tensor_parallel_size} (got {gpus})"
        )
    kwargs: dict[str, Any] = {
        "compute": ray.data.ActorPoolStrategy(size=r.engine_actors),
        "batch_size": g.prompts_per_batch,
        "num_cpus": r.cpus_per_actor,
    }
    if gpus:
        kwargs["num_gpus"] = gpus
    return kwargs


def io_task_kwargs(pool: int = 2) -> dict[str, Any]:
    """``map_batches`` kwargs of the light steps (building prompts, writing parts).

    They take no CPU, so they never wait behind engine actors that hold every CPU, and a bounded task
    pool, so Ray does not start a worker process per pending zero-CPU task.
    """
    import ray.data

    return {"num_cpus": 0, "compute": ray.data.TaskPoolStrategy(size=pool)}


def batch_seed(seed: int, prompt_ids: Iterable[str]) -> int:
    """A sampling seed for one batch, stable across reruns and actors (from the ids it holds)."""
    h = hashlib.sha256(f"{seed}:{','.join(prompt_ids)}".encode()).digest()
    return int.from_bytes(h[:4], "little")


def part_name(split: str, prompt_ids: Iterable[str]) -> str:
    """Parquet part file of a group of prompts: named by its ids, so a redone group overwrites itself."""
    digest = hashlib.sha1("\n".join(prompt_ids).encode()).hexdigest()[:20]
    return f"{split}/part-{digest}.parquet"


# ---- Ray Data callables (plain classes, testable without Ray) ------------------------------------
class SampleUDF:
    """Engine actor: fit prompts to the context, sample N per prompt in one call, count answers."""

    def __init__(
        self,
        engine_factory: EngineFactory,
        spec: SamplingSpec,
        template: str,
        prompt_budget: int,
        seed: int,
    ):
        self.engine = engine_factory()
        self.spec = spec
        self.template = template
        self.budget = prompt_budget
        self.seed = seed

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        rows = [
            {"prompt_id": str(p), "post": str(q), "reference": str(r), "split": str(s)}
            for p, q, r, s in zip(
                batch["prompt_id"], batch["post"], batch["reference"], batch["split"], strict=True
            )
        ]
        fitted = list(splits.fit_rows(rows, self.engine.count_tokens, self.budget, self.template))
        ids = [r["prompt_id"] for r in rows]
        completions = self.engine.generate(
            [r["prompt"] for r in fitted], self.spec, seed=batch_seed(self.seed, ids)
        )
        out: dict[str, list[Any]] = {name: [] for name in GENERATION_SCHEMA.names}
        for row, comp in zip(fitted, completions, strict=True):
            table = answer_table(comp.texts, comp.mean_logprobs or None)
            out["prompt_id"].append(row["prompt_id"])
            out["split"].append(row["split"])
            out["prompt"].append(row["prompt"])
            out["reference"].append(row["reference"])
            out["answers"].append(table.answers)
            out["counts"].append(table.counts)
            out["texts"].append(table.texts)
            out["mean_logprobs"].append(table.mean_logprobs)
            out["num_samples"].append(table.num_samples)
            out["truncated"].append(bool(row["truncated"]))
        return out


def rows_to_table(batch: dict[str, Any]) -> pa.Table:
    """A GENERATION_SCHEMA table from a batch of columns (numpy or lists)."""
    cols = {}
    for name in GENERATION_SCHEMA.names:
        values = batch[name]
        cols[name] = [v.tolist() if isinstance(v, np.ndarray) else v for v in values]
    return pa.Table.from_pydict(cols, schema=GENERATION_SCHEMA)


def write_part(batch: dict[str, Any], store: ArtifactStore, stage_dir: str) -> dict[str, list[Any]]:
    """Write a group of generation rows as atomic Parquet part files (one per split); return summaries."""
    table = rows_to_table(batch)
    out: dict[str, list[Any]] = {"split": [], "file": [], "prompts": [], "samples": [], "truncated": []}
    split_col = table.column("split").to_pylist()
    for split in sorted(set(split_col)):
        part = table.filter(pa.array([s == split for s in split_col]))
        name = part_name(split, [str(x) for x in part.column("prompt_id").to_pylist()])
        store.write_parquet(stage_dir, name, part)
        out["split"].append(split)
        out["file"].append(name)
        out["prompts"].append(part.num_rows)
        out["samples"].append(int(sum(part.column("num_samples").to_pylist())))
        out["truncated"].append(int(sum(part.column("truncated").to_pylist())))
    return out


def demo_rows(batch: dict[str, Any], seed: int, split: str, done: frozenset[str]) -> dict[str, list[str]]:
    """Demo prompt rows for index ranges [start, stop), minus finished ids (built on workers, streamed)."""
    indices = [i for a, b in zip(batch["start"], batch["stop"], strict=True) for i in range(int(a), int(b))]
    cols: dict[str, list[str]] = splits.demo_batch(seed, split, indices)
    cols["split"] = [split] * len(indices)
    if not done:
        return cols
    keep = [i for i, pid in enumerate(cols["prompt_id"]) if pid not in done]
    return {k: [v[i] for i in keep] for k, v in cols.items()}


# ---- resume helpers -------------------------------------------------------------------------------
def _part_files(store: ArtifactStore, stage_dir: str, split: str) -> list[str]:
    base = f"{store.stage_dir(stage_dir)}/{split}"
    infos = store.fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True))
    return sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File
        and i.base_name.endswith(".parquet")
        and not i.base_name.startswith(TMP_MARK)
    )


def _remove_tmp(store: ArtifactStore, stage_dir: str, split: str) -> None:
    base = f"{store.stage_dir(stage_dir)}/{split}"
    for info in store.fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True)):
        if info.base_name.startswith(TMP_MARK):
            store.fs.delete_file(info.path)


def finished_ids(store: ArtifactStore, stage_dir: str, split: str) -> set[str]:
    """Prompt ids already written for ``split`` (one small column read per part file)."""
    done: set[str] = set()
    for path in _part_files(store, stage_dir, split):
        ids = pq.read_table(path, columns=["prompt_id"], filesystem=store.fs).column("prompt_id").to_pylist()
        done.update(str(i) for i in ids)
    return done


def scan_split(store: ArtifactStore, stage_dir: str, split: str) -> tuple[VarietyStats, int]:
    """Variety statistics over every part file of a split, streamed file by file; and duplicate ids."""
    stats = VarietyStats()
    seen: set[str] = set()
    dups = 0
    cols = ["prompt_id", "reference", "answers", "counts", "truncated"]
    for path in _part_files(store, stage_dir, split):
        pf = pq.ParquetFile(path, filesystem=store.fs)
        for rb in pf.iter_batches(columns=cols, batch_size=1024):
            d = rb.to_pydict()
            for pid, ref, answers, counts, trunc in zip(*(d[c] for c in cols), strict=True):
                if pid in seen:
                    dups += 1
                    continue
                seen.add(pid)
                stats.add(answers, counts, ref, trunc)
    return stats, dups


def _run_key(cfg: RlufConfig, ctx: StageContext) -> dict[str, Any]:
    """What the samples depend on: the stage's config keys minus the judge's, and the SFT model."""
    from rluf_ray.config import fingerprint

    keys = [k for k in READS if not k.startswith("judge.") and k != "generation.score_calibration"]
    return {
        "config_hash": fingerprint(cfg, keys),
        "sft_manifest": ctx.store.manifest_hash(ctx.upstream_dir("sft")),
        "engine": cfg.generation.engine,
    }


def _prepare_dir(cfg: RlufConfig, ctx: StageContext) -> bool:
    """Keep finished parts of an interrupted run of the same config; else start clean. True if resuming."""
    store, key = ctx.store, _run_key(cfg, ctx)
    old = store.read_json(ctx.dir, RUN_KEY) if store.exists(ctx.dir, RUN_KEY) else None
    resume = old == key and not ctx.options.get("force", False)
    if not resume:
        for split in GENERATION_SPLITS:
            base = f"{store.stage_dir(ctx.dir)}/{split}"
            if store.fs.get_file_info(base).type == pafs.FileType.Directory:
                store.fs.delete_dir(base)
        store.write_json(ctx.dir, RUN_KEY, key)
    for split in GENERATION_SPLITS:
        _remove_tmp(store, ctx.dir, split)
    return resume


# ---- the stage ------------------------------------------------------------------------------------
def default_engine_factory(cfg: RlufConfig, model_path: str) -> EngineFactory:
    """A picklable factory building the configured engine inside an actor."""
    name, opts = cfg.generation.engine, engine_options(cfg)

    def factory() -> Engine:
        return make_engine(name, model_path, **opts)

    return factory


def prompt_dataset(
    cfg: RlufConfig, split: str, done: set[str], blocks: int | None = None
):  # -> ray.data.Dataset
    """The prompts of ``split`` not yet done, as a Ray Data dataset (streamed for the demo source)."""
    import ray.data

    if cfg.data.source == "demo":
        n = splits.split_count(cfg, split)  # type: ignore[arg-type]
        if n == 0:
            raise RlufError(f"the {split} split is empty")
        # Index ranges as in-memory blocks (no read task holding a CPU); documents are built on workers.
        step = max(1, cfg.generation.rows_per_file)
        ranges = [{"start": a, "stop": min(a + step, n)} for a in range(0, n, step)]
        ds = ray.data.from_items(ranges, override_num_blocks=min(len(ranges), blocks or len(ranges)))
        kwargs = {"seed": cfg.data.demo.seed, "split": split, "done": frozenset(done)}
        return ds.map_batches(demo_rows, fn_kwargs=kwargs, batch_size=1, **io_task_kwargs()), n
    rows = splits.load_split(cfg, split)  # type: ignore[arg-type]
    if not rows:
        raise RlufError(f"the {split} split is empty")
    total = len(rows)
    todo = [{**r, "split": split} for r in rows if r["prompt_id"] not in done]
    del rows
    return ray.data.from_items(todo) if todo else None, total


def _drain(
    written: Any, figures: dict[str, dict[str, Any]], t0: float, progress_every_s: float
) -> tuple[int, int]:
    """Run the pipeline, tallying the per-file summaries (tiny rows, never the answers)."""
    prompts = samples = 0
    last = t0
    for summary in written.iter_rows():
        fig = figures[summary["split"]]
        fig["prompts_generated"] += int(summary["prompts"])
        fig["samples_generated"] += int(summary["samples"])
        prompts += int(summary["prompts"])
        samples += int(summary["samples"])
        now = time.perf_counter()
        if now - last >= progress_every_s:
            el = now - t0
            log.info(
                "generate: %d prompts, %.2f prompts/s, %.1f samples/s", prompts, prompts / el, samples / el
            )
            last = now
    return prompts, samples


def generate_splits(
    cfg: RlufConfig, ctx: StageContext, engine_factory: EngineFactory, progress_every_s: float = 10.0
) -> dict[str, dict[str, Any]]:
    """Sample every split through ONE engine actor pool into part files; returns progress figures."""
    store = ctx.store
    figures: dict[str, dict[str, Any]] = {}
    datasets = []
    for split in GENERATION_SPLITS:
        done = finished_ids(store, ctx.dir, split)
        ds, total = prompt_dataset(cfg, split, done)
        figures[split] = {"prompts_total": total, "prompts_resumed": len(done), "prompts_generated": 0,
                          "samples_generated": 0}  # fmt: skip
        if ds is not None and total > len(done):
            datasets.append(ds)
    if not datasets:
        return figures
    ds = datasets[0] if len(datasets) == 1 else datasets[0].union(*datasets[1:])
    sampled = ds.map_batches(
        SampleUDF,
        fn_constructor_kwargs={
            "engine_factory": engine_factory,
            "spec": sampling_spec(cfg),
            "template": cfg.data.prompt_template,
            "prompt_budget": splits.prompt_budget(cfg),
            "seed": cfg.generation.seed,
        },
        **plan(cfg),
    )
    written = sampled.map_batches(
        write_part,
        fn_kwargs={"store": store, "stage_dir": ctx.dir},
        batch_size=cfg.generation.rows_per_file,
        **io_task_kwargs(),
    )
    t0 = time.perf_counter()
    try:
        prompts, samples = _drain(written, figures, t0, progress_every_s)
    except BaseException as exc:
        release_on_error(exc, written)
        del ds, datasets, sampled, written
        raise
    wall = time.perf_counter() - t0
    figures["all"] = {
        "prompts_generated": prompts,
        "samples_generated": samples,
        "wall_s": round(wall, 3),
        "prompts_per_s": round(prompts / wall, 3) if wall else None,
        "samples_per_s": round(samples / wall, 2) if wall else None,
    }
    log.info(
        "generate: %d prompts, %d samples in %.1fs (%.1f samples/s)", prompts, samples, wall, samples / wall
    )
    return figures


def score_calibration_answers(cfg: RlufConfig, ctx: StageContext) -> dict[str, Any]:
    """Judge-score every unique calibration answer against its reference (the test split is not scored).

    Writes ``SCORES_ARTIFACT`` (SCORE_SCHEMA): a failed call is a null score with its reason, never 0.
    Scores are cached by the judge, so a rerun after a crash or a budget stop costs no finished call.
    """
    if not cfg.generation.score_calibration:
        return {"calibration_scored": False, "scoring": "disabled (generation.score_calibration=false)"}
    from rluf_ray.core.judge_scoring import calibration_score_rows
    from rluf_ray.io import judge_service

    table = ctx.store.read_parquet(ctx.dir, "calibration")
    posts = {r["prompt_id"]: r["post"] for r in splits.load_split(cfg, "calibration")}
    items = calibration_score_rows(table.select(["prompt_id", "split", "reference", "answers",
                                                 "texts"]).to_pylist(), posts)  # fmt: skip
    rows, report = judge_service.score_answers(cfg, items, run="generate")
    ctx.store.write_parquet(ctx.dir, SCORES_ARTIFACT, judge_service.scores_table(rows))
    missing = sum(r["score"] is None for r in rows)
    log.info("generate: %d calibration answers scored, %d missing", len(rows) - missing, missing)
    return {"calibration_scored": True, "scores": len(rows), "scores_missing": missing,
            "judge": {k: v for k, v in report.items() if k != "budget"}}  # fmt: skip


def dry_run(cfg: RlufConfig) -> str:
    """What scoring would cost at most: one call per sample of every calibration prompt (an upper bound,
    since only unique answers are scored and the count of unique answers is known only after sampling)."""
    from rluf_ray.core.judge_cost import format_dry_run
    from rluf_ray.core.judge_keys import answer_key
    from rluf_ray.core.judge_prompts import score_request
    from rluf_ray.io import judge_service

    rows = splits.load_split(cfg, "calibration")
    reqs = [score_request(answer_key(r["prompt_id"], str(i)), r["post"], r["reference"], r["reference"])
            for r in rows for i in range(cfg.generation.sampling_num)]  # fmt: skip
    return (
        format_dry_run(judge_service.dry_run(cfg, reqs, "generate")) + " (upper bound: every sample unique)"
    )


def model_path(ctx: StageContext) -> str:
    """The model to sample from: the SFT stage's save_pretrained directory."""
    return ctx.store.local_path(ctx.upstream_dir("sft"), "model")


def run_generation(
    cfg: RlufConfig, ctx: StageContext, engine_factory: EngineFactory | None = None
) -> StageResult:
    """Generate both splits (resumably), then judge-score calibration answers."""
    from rluf_ray.io.ray_runtime import ensure_ray

    sampling_spec(cfg)  # validates sampling_num / token limits before anything is written
    plan(cfg)
    splits.prompt_budget(cfg)
    if engine_factory is None:
        path = model_path(ctx)
        check_model_path(path)
        engine_factory = default_engine_factory(cfg, path)
    for split in GENERATION_SPLITS:  # empty inputs fail before any file is written
        if splits.split_count(cfg, split) == 0:  # type: ignore[arg-type]
            raise RlufError(f"the {split} split is empty: nothing to generate")
    ensure_ray()
    resumed = _prepare_dir(cfg, ctx)
    if resumed:
        log.info("generate: resuming an interrupted run (finished prompts are kept)")
    rows: dict[str, int] = {}
    metrics: dict[str, Any] = {"engine": cfg.generation.engine, "sampling_num": cfg.generation.sampling_num}
    try:
        figures = generate_splits(cfg, ctx, engine_factory)
    except Exception as exc:
        user = _user_error(exc)
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
    metrics.update(score_calibration_answers(cfg, ctx))
    return StageResult(rows=rows, metrics=metrics)


def _user_error(exc: BaseException) -> RlufError | None:
    """The RlufError inside a Ray task failure, if that is what it was."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        if isinstance(cur, RlufError):
            return RlufError(str(cur).splitlines()[0])
        inner = getattr(cur, "cause", None)
        cur = inner if isinstance(inner, BaseException) else (cur.__cause__ or cur.__context__)
        seen += 1
    return None


def run(cfg: RlufConfig, ctx: StageContext) -> StageResult:
    """Stage entry point."""
    if ctx.options.get("dry_run"):
        print(dry_run(cfg))
        return StageResult()
    return run_generation(cfg, ctx)


STAGE = StageDef(
    name="generate",
    artifact_dir="generation",
    upstream=("sft",),
    reads=READS,
    plan_fn=plan,
    run_fn=run,
)
