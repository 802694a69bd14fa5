"""Stage ``train``: weighted DPO on the weighted pairs under Ray Train's TorchTrainer, one run per
training unit (arm, seed).

Reads ``outputs/weights/weighted_pairs.jsonl`` (or ``dpo.pairs_path`` / ``rluf train --pairs PATH``,
the original released format), starts the policy from ``outputs/sft/model`` with the SFT model as
reference (or the LoRA adapters disabled). Arms (``dpo.arms``): ``cfa`` trains with the CFA weights,
``dpo`` is the same trainer on the same pairs with every weight 1.0 (same prompt fitting, same
zero-weight dropping, seed, steps, schedule and reduction). Each arm runs once per seed
(``dpo.seeds``, default ``[dpo.seed]``), one unit after the other. Per unit, under
``outputs/training/<arm>/seed-<seed>/``: ``model/`` (HF format), ``curves.jsonl`` (loss, reward
accuracy, reward margins, mean weight per logged step) and ``train_summary.json`` (with the unit's
key); ``outputs/training/train_summary.json`` lists every unit.

A unit whose summary and model exist for the same unit key is skipped on a rerun; ``rluf train --arm
cfa|dpo`` trains one arm's units only, and the stage is complete (manifest written) once every
configured unit exists. Ray Train checkpoints live in the unit's ``checkpoints/`` while it runs, so a
killed run (or a failed worker, through FailureConfig) resumes from the last one; they are removed once
the unit's model is exported.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from rluf_ray.config import DpoConfig, RlufConfig, operational, plan_key, plan_type
from rluf_ray.errors import RlufError
from rluf_ray.schema import (
    CURVES_ARTIFACT,
    MODEL_DIR,
    TRAIN_SUMMARY_ARTIFACT,
    WEIGHTED_PAIRS_ARTIFACT,
    train_unit_dir,
)
from rluf_ray.stages.registry import StageContext, StageDef, StageResult, UnitRecord
from rluf_ray.store.artifacts import ArtifactStore, file_sha256, manifest_digest
from rluf_ray.training.losses import drop_zero_enabled
from rluf_ray.training.ray_train import (
    LoraPlan,
    TrainerArgs,
    TrainRun,
    TrainScaling,
    common_trainer_args,
    lora_plan,
    train_scaling,
)

log = logging.getLogger("rluf.train")

STAGE_DIR = "training"
UNIT_RUN = "_unit.json"  # the key of the unit being trained (a killed unit resumes only under it)


@plan_type
class DpoArgs:
    """WeightedDPOConfig arguments (``kwargs()``): TRL DPOConfig plus the weighting."""

    common: TrainerArgs
    beta: float
    loss_type: str
    label_smoothing: float
    rpo_alpha: float
    weight_reduction: str
    max_length: int
    precompute_ref_log_probs: bool

    def kwargs(self) -> dict[str, Any]:
        """The WeightedDPOConfig keyword arguments.

        Returns:
            A dict of argument name to value.
        """
        return {**self.common.kwargs(), "beta": self.beta, "loss_type": [self.loss_type],
                "label_smoothing": self.label_smoothing, "rpo_alpha": self.rpo_alpha,
                "weight_reduction": self.weight_reduction, "max_length": self.max_length, "precompute_ref_log_probs": self.precompute_ref_log_probs}  # fmt: skip


@plan_type
class TrainPlan:
    """Everything DPO takes from the config: trainer arguments, LoRA, the prompt budget (raw), the
    template, the arms and the seeds; Ray Train scaling, failure budget and the pairs file's path."""

    trainer_args: DpoArgs  # its seed is dpo.seed; each unit trains with its own
    lora: LoraPlan | None
    dtype: str
    max_prompt_length: int
    max_context: int
    template: str
    drop_zero: bool  # zero-weight pairs dropped, once, before the arms' rows (dpo.drop_zero_weight, or
    # on with the normalized reduction); the trainer filters none
    arms: tuple[str, ...]
    seeds: tuple[int, ...]  # dpo.seeds, or (dpo.seed,)
    pairs_path: str | None = operational()  # an external pairs file: its bytes are hashed (inputs)
    scaling: TrainScaling  # workers, device and threads count; their placement is operational
    max_failures: int = operational()

    def units(self) -> list[tuple[str, int]]:
        """Every (arm, seed) training unit, in training order (arm by arm, seed by seed).

        Returns:
            The units.
        """
        return [(arm, seed) for arm in self.arms for seed in self.seeds]


def trainer_args(dpo: DpoConfig, use_gpu: bool) -> DpoArgs:
    """WeightedDPOConfig arguments (TRL DPOConfig + weighting) from the ``dpo`` section.

    Args:
        dpo: The ``dpo`` section.
        use_gpu: Whether the Train workers hold GPUs.

    Returns:
        The DPO arguments.
    """
    d = dpo
    return DpoArgs(
        common=common_trainer_args(d, use_gpu, "dpo"),
        beta=d.beta,
        loss_type=d.loss_type,
        label_smoothing=d.label_smoothing,
        rpo_alpha=d.rpo_alpha,
        weight_reduction=d.reduction,
        max_length=d.max_length,
        precompute_ref_log_probs=d.precompute_ref_log_probs,
    )


def plan(cfg: RlufConfig) -> TrainPlan:
    """Everything DPO takes from the config.

    Args:
        cfg: The config.

    Returns:
        The stage's plan.
    """
    d = cfg.dpo
    return TrainPlan(
        trainer_args=trainer_args(d, cfg.resources.use_gpu),
        lora=lora_plan(d.lora),
        dtype=cfg.model.dtype,
        max_prompt_length=d.max_prompt_length,
        max_context=cfg.model.max_context,
        template=cfg.data.prompt_template,
        drop_zero=drop_zero_enabled(d.reduction, d.drop_zero_weight),
        arms=tuple(d.arms),
        seeds=tuple(d.run_seeds()),
        pairs_path=d.pairs_path,
        scaling=train_scaling(cfg.resources),
        max_failures=d.max_failures,
    )


def unit_plan(p: TrainPlan, seed: int) -> TrainPlan:
    """What one unit trains with: the stage's plan without the arms and seeds lists, at its own seed.

    Args:
        p: The stage's plan.
        seed: The unit's seed.

    Returns:
        The unit's plan.
    """
    args = replace(p.trainer_args, common=replace(p.trainer_args.common, seed=seed))
    return replace(p, arms=(), seeds=(), trainer_args=args)


unit_dir = train_unit_dir  # ``<arm>/seed-<seed>`` inside ``training/``


def run_name(unit_hash: str, arm: str, seed: int) -> str:
    """A unit's Ray Train run name: resumable by a rerun of the same unit, never shared with another.

    Args:
        unit_hash: The hash of the unit's key (its first 12 characters are used).
        arm: The unit's arm.
        seed: The unit's seed.

    Returns:
        ``dpo-<hash[:12]>-<arm>-s<seed>``.
    """
    return f"dpo-{unit_hash[:12]}-{arm}-s{seed}"


def unit_key(
    p: TrainPlan, arm: str, seed: int, inputs: dict[str, str], upstream: dict[str, str | None]
) -> dict[str, Any]:
    """What one unit's model depends on: the unit's plan (its own arm and seed in place of the
    arms/seeds lists, so adding a seed or an arm keeps the finished units), the external inputs' hashes
    and the upstream manifests (the SFT model, the weighted pairs).

    Args:
        p: The stage's plan.
        arm: The unit's arm.
        seed: The unit's seed.
        inputs: The external inputs' hashes (``inputs(p)``).
        upstream: The upstream stages' manifest hashes.

    Returns:
        The unit key (JSON-able), kept in the unit's summary.
    """
    return {
        "config_hash": plan_key(unit_plan(p, seed)),
        "inputs": dict(sorted(inputs.items())),
        "upstream": dict(sorted(upstream.items())),
        "arm": arm,
        "seed": seed,
    }


def select_units(units: list[tuple[str, int]], arm: str | None) -> list[tuple[str, int]]:
    """The units this run trains: every configured unit, or only those of ``arm`` (``rluf train --arm``).

    Args:
        units: The configured units as (arm, seed).
        arm: Train only this arm's units (None: all).

    Returns:
        The selected units, in configured order.

    Raises:
        RlufError: ``arm`` has no configured unit.
    """
    if arm is None:
        return list(units)
    picked = [u for u in units if u[0] == arm]
    if not picked:
        arms = sorted({a for a, _ in units})
        raise RlufError(f"train --arm {arm}: dpo.arms is {arms}; add {arm} to dpo.arms to train it")
    return picked


def missing_message(missing: list[tuple[str, int]]) -> str:
    """One line naming the units still to train and the command that finishes the stage.

    Args:
        missing: The units not yet trained as (arm, seed); not empty.

    Returns:
        The message (``rluf train --arm <arm>`` when a single arm is missing, else ``rluf train``).
    """
    names = ", ".join(unit_dir(a, s) for a, s in missing)
    arms = sorted({a for a, _ in missing})
    cmd = f"rluf train --arm {arms[0]}" if len(arms) == 1 else "rluf train"
    return f"units still missing: {names}; run `{cmd}` to finish the stage"


def recorded_unit(store: ArtifactStore, stage_dir: str, unit: str) -> dict[str, Any] | None:
    """The unit's summary when its model and summary both exist (whatever key it records), else None.

    Args:
        store: The artifact store.
        stage_dir: The train stage's artifact directory.
        unit: The unit's directory (``<arm>/seed-<seed>``).

    Returns:
        The unit's summary, or None when the unit has no finished output.
    """
    if not (
        store.exists(stage_dir, f"{unit}/{TRAIN_SUMMARY_ARTIFACT}")
        and store.exists(stage_dir, f"{unit}/{MODEL_DIR}/config.json")
    ):
        return None
    summary = store.read_json(stage_dir, f"{unit}/{TRAIN_SUMMARY_ARTIFACT}")
    return summary if isinstance(summary, dict) else None


def unit_done(ctx: StageContext, unit: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """The unit's summary when its model and summary exist for this very key, else None.

    Args:
        ctx: The run's context.
        unit: The unit's directory (``<arm>/seed-<seed>``).
        key: The unit key the summary must record.

    Returns:
        The unit's summary, or None when the unit is still to train.
    """
    summary = recorded_unit(ctx.store, ctx.dir, unit)
    return summary if summary is not None and summary.get("unit_key") == key else None


def unit_records(p: TrainPlan, store: ArtifactStore, upstream: dict[str, str | None]) -> list[UnitRecord]:
    """Every configured unit's key now and the key its finished output records (``rluf status``).

    Args:
        p: The stage's plan.
        store: The artifact store.
        upstream: The needed upstream stages' manifest hashes now (``needs(p)``; None where absent).

    Returns:
        One record per (arm, seed) unit, in training order; ``started`` when a run of this very key
        left its checkpoints (the next run resumes it).
    """
    inputs_hash = inputs(p)
    records = []
    for arm, seed in p.units():
        unit = unit_dir(arm, seed)
        key = unit_key(p, arm, seed, inputs_hash, upstream)
        summary = recorded_unit(store, STAGE_DIR, unit)
        recorded = summary.get("unit_key") if summary is not None else None
        began = (
            store.exists(STAGE_DIR, f"{unit}/{UNIT_RUN}")
            and store.read_json(STAGE_DIR, f"{unit}/{UNIT_RUN}") == key
        )
        records.append(UnitRecord(unit, key, recorded, started=summary is None and began))
    return records


def prepare_unit(ctx: StageContext, unit: str, key: dict[str, Any], force: bool) -> None:
    """Keep the checkpoints of a killed run of the same unit key (to resume); else start the unit clean.

    Args:
        ctx: The run's context.
        unit: The unit's directory (``<arm>/seed-<seed>``).
        key: The unit key of this run, recorded when the unit starts clean.
        force: Start clean even when the recorded key matches.
    """
    store = ctx.store
    old = (
        store.read_json(ctx.dir, f"{unit}/{UNIT_RUN}")
        if store.exists(ctx.dir, f"{unit}/{UNIT_RUN}")
        else None
    )
    if force or old != key:
        store.delete_subdir(ctx.dir, unit)
        store.write_json(ctx.dir, f"{unit}/{UNIT_RUN}", key)


def load_pairs(pairs_path: str | None, ctx: StageContext) -> tuple[list[dict[str, Any]], str]:
    """The weighted pairs (external file or the weights stage's artifact) and where they came from.

    Args:
        pairs_path: An external pairs file (``dpo.pairs_path``), or None for the weights stage's.
        ctx: The run's context.

    Returns:
        ``(rows, source)``.
    """
    from rluf_ray.store.artifacts import read_file_bytes
    from rluf_ray.training.pairs import parse_jsonl_pairs, read_jsonl_pairs

    if pairs_path:  # a local path or a URI (s3://...): read through pyarrow's filesystems
        text = read_file_bytes(pairs_path).decode("utf-8")
        return parse_jsonl_pairs(text.splitlines(), pairs_path), pairs_path
    store = ctx.store
    weights_dir = ctx.upstream_dir("assign-weights")
    if not store.exists(weights_dir, WEIGHTED_PAIRS_ARTIFACT):
        raise RlufError(
            f"no {weights_dir}/{WEIGHTED_PAIRS_ARTIFACT}: run `rluf assign-weights` or pass --pairs"
        )
    path = store.path(weights_dir, WEIGHTED_PAIRS_ARTIFACT)
    if store.local:
        return read_jsonl_pairs(path), path
    from rluf_ray.training.pairs import _check_row

    rows = [
        _check_row(r, f"{path}:{i + 1}")
        for i, r in enumerate(store.iter_jsonl(weights_dir, WEIGHTED_PAIRS_ARTIFACT))
    ]
    if not rows:
        raise RlufError(f"{path}: no weighted pairs")
    return rows, path


def run(p: TrainPlan, ctx: StageContext) -> StageResult:
    """Fit prompts once, then train every selected (arm, seed) unit not yet done under Ray Train;
    export each unit's model and curves; complete once every configured unit exists.

    Args:
        p: The stage's plan (trainer arguments, arms, seeds).
        ctx: The run's context (store, options, stage key).

    Returns:
        Row counts and metrics for the manifest.
    """
    from transformers import AutoTokenizer

    from rluf_ray.runtime.bootstrap import ensure_ray
    from rluf_ray.store.model_cache import local_tokenizer
    from rluf_ray.tracking.runs import train_run
    from rluf_ray.training.dpo_loop import dpo_train_loop
    from rluf_ray.training.pairs import (
        arm_rows,
        drop_zero_weight_pairs,
        fit_pair_prompts,
        tokenizer_counters,
    )
    from rluf_ray.training.ray_train import fit_and_export

    units = p.units()
    selected = select_units(units, ctx.options.get("arm"))
    force = bool(ctx.options.get("force", False))
    sft_model = ctx.store.uri(ctx.upstream_dir("sft"), MODEL_DIR)
    if not ctx.store.exists(ctx.upstream_dir("sft"), f"{MODEL_DIR}/config.json"):
        raise RlufError(f"no SFT model at {sft_model}: run `rluf sft` first")
    raw, source = load_pairs(p.pairs_path, ctx)
    tokenizer = AutoTokenizer.from_pretrained(local_tokenizer(sft_model))
    count, keep_end = tokenizer_counters(tokenizer)
    max_prompt_tokens = min(p.max_prompt_length, p.max_context)
    pairs, stats = fit_pair_prompts(raw, max_prompt_tokens, count, p.template, keep_end)
    if stats.zero_weight == stats.pairs:
        raise RlufError(
            f"{source}: every one of the {stats.pairs} pairs has weight 0 for the cfa arm: nothing to "
            "train on, and the dpo arm (the same pairs at weight 1) is no baseline without it "
            "(see weights/summary.json: the prediction sets left every answer out)"
        )
    dropped = 0
    if p.drop_zero:  # once, for every arm alike (the trainer filters nothing)
        pairs, dropped = drop_zero_weight_pairs(pairs)
    log.info(
        "train: %d pairs from %s (%d prompts truncated, %d zero-weight%s); units %s",
        stats.pairs,
        source,
        stats.truncated_prompts,
        stats.zero_weight,
        ", dropped" if dropped else "",
        ", ".join(unit_dir(a, s) for a, s in selected),
    )
    pair_stats = {
        "source": source,
        "pairs": stats.pairs,
        "truncated_prompts": stats.truncated_prompts,
        "off_template_prompts": stats.off_template_prompts,
        "zero_weight_pairs": stats.zero_weight,
        "dropped_zero_weight": dropped,
        "reduction": p.trainer_args.weight_reduction,
        "workers": p.scaling.workers,
    }
    inputs_hash = inputs(p)
    upstream = {u: ctx.store.manifest_hash(ctx.upstream_dir(u)) for u in needs(p)}
    keys = {u: unit_key(p, u[0], u[1], inputs_hash, upstream) for u in units}

    done: dict[tuple[str, int], dict[str, Any]] = {}
    for arm, seed in units:
        unit = unit_dir(arm, seed)
        key = keys[(arm, seed)]
        summary = None if (force and (arm, seed) in selected) else unit_done(ctx, unit, key)
        if summary is not None:
            done[(arm, seed)] = summary
            if (arm, seed) in selected:
                log.info("train: %s is done for this config, skipped", unit)
            continue
        if (arm, seed) not in selected:
            continue
        import ray

        ensure_ray()
        prepare_unit(ctx, unit, key, force)
        rows = arm_rows(pairs, arm)
        log.info("train: unit %s on %d pairs (seed %d)", unit, len(rows), seed)
        with train_run(ctx.tracking, f"train-{arm}-seed{seed}") as report:  # a child run, or none
            metrics = fit_and_export(
                dpo_train_loop,
                {
                    "model_path": sft_model,
                    "dtype": p.dtype,
                    "trainer_args": unit_plan(p, seed).trainer_args.kwargs(),
                    "lora": None if p.lora is None else p.lora.kwargs(),
                    "pairs": ray.put(rows),
                    "fail_at_step": ctx.options.get("fail_at_step"),  # test hook: FailureConfig resume
                    "label": f"dpo {unit}",  # the step progress lines name the unit
                },
                TrainRun(
                    name=run_name(manifest_digest(key), arm, seed),
                    scaling=p.scaling,
                    max_failures=p.max_failures,
                ),
                ctx.store,
                ctx.dir,
                f"{unit}/",
                f"DPO training ({unit})",
                report,
            )
        summary = {
            "arm": arm,
            "seed": seed,
            "unit_key": key,
            **pair_stats,
            "trained_pairs": len(rows),
            "mean_weight": sum(r["weight"] for r in rows) / len(rows) if rows else 0.0,
            **{k: metrics[k] for k in ("train_loss", "global_step", "resumed") if k in metrics},
        }
        ctx.store.write_json(ctx.dir, f"{unit}/{TRAIN_SUMMARY_ARTIFACT}", summary)
        done[(arm, seed)] = summary

    missing = [u for u in units if u not in done]
    listed = [
        {"dir": unit_dir(a, s), "model": f"{unit_dir(a, s)}/{MODEL_DIR}",
         "curves": f"{unit_dir(a, s)}/{CURVES_ARTIFACT}", **{k: v for k, v in done[(a, s)].items() if k != "unit_key"}}
        for a, s in units if (a, s) in done
    ]  # fmt: skip
    overall = {
        **pair_stats,
        "arms": list(p.arms),
        "seeds": list(p.seeds),
        "units": listed,
        "missing": [unit_dir(a, s) for a, s in missing],
    }
    ctx.store.write_json(ctx.dir, TRAIN_SUMMARY_ARTIFACT, overall)
    return StageResult(
        rows={"pairs": stats.pairs, "trained_pairs": stats.pairs - dropped, "units": len(listed)},
        metrics=overall,
        complete=not missing,
        missing=missing_message(missing) if missing else "",
    )


def needs(p: TrainPlan) -> tuple[str, ...]:
    """With an external pairs file the weights stage is not needed.

    Args:
        p: The stage's plan.

    Returns:
        The upstream stages.
    """
    return ("sft",) if p.pairs_path else ("sft", "assign-weights")


def inputs(p: TrainPlan) -> dict[str, str]:
    """The content hash of an external pairs file (its path is not hashed: its bytes are).

    Args:
        p: The stage's plan.

    Returns:
        ``{"pairs_sha256": ...}``, or empty without an external file.
    """
    if not p.pairs_path:
        return {}
    return {"pairs_sha256": file_sha256(p.pairs_path)}


STAGE = StageDef(
    name="train",
    artifact_dir=STAGE_DIR,
    upstream=("sft", "assign-weights"),
    plan_fn=plan,
    run_fn=run,
    needs_fn=needs,
    inputs_fn=inputs,
    sticky=("dpo.pairs_path",),
    units_fn=unit_records,
)
