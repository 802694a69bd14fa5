"""Stage ``train``: weighted DPO on the weighted pairs under Ray Train's TorchTrainer.

Reads ``outputs/weights/weighted_pairs.jsonl`` (or ``dpo.pairs_path`` / ``rluf train --pairs PATH``,
the original released format), starts the policy from ``outputs/sft/model`` with the SFT model as
reference (or the LoRA adapters disabled), and writes ``outputs/training/model`` (HF format),
``curves.jsonl`` (loss, reward accuracy, reward margins, mean weight per logged step) and
``train_summary.json``. Ray Train checkpoints live in ``outputs/training/checkpoints/<run>`` while
the run is going, so a killed run (or a failed worker, through FailureConfig) resumes from the
last one; they are removed once the final model is exported.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from rluf_ray.config import DpoConfig, RlufConfig, fingerprint, result_keys
from rluf_ray.core.dpo_loss import drop_zero_enabled
from rluf_ray.errors import RlufError
from rluf_ray.io.artifacts import file_sha256
from rluf_ray.schema import WEIGHTED_PAIRS_ARTIFACT
from rluf_ray.stages.registry import StageContext, StageDef, StageResult
from rluf_ray.training.ray_train import common_trainer_args, lora_kwargs, scaling_config

log = logging.getLogger("rluf.train")

MODEL_DIR = "model"
CURVES = "curves.jsonl"
SUMMARY = "train_summary.json"
CHECKPOINTS = "checkpoints"


def trainer_args(cfg: RlufConfig) -> dict[str, Any]:
    """WeightedDPOConfig kwargs (TRL DPOConfig + weighting) from the config."""
    d = cfg.dpo
    return {
        **common_trainer_args(d, cfg.resources.use_gpu, "dpo"),
        "beta": d.beta,
        "loss_type": [d.loss_type],
        "label_smoothing": d.label_smoothing,
        "weight_reduction": d.reduction,
        "drop_zero_weight": drop_zero_enabled(d.reduction, d.drop_zero_weight),
        "max_length": d.max_length,
        "precompute_ref_log_probs": d.precompute_ref_log_probs,
    }


READS: tuple[str, ...] = (
    *(f"dpo.{k}" for k in DpoConfig.model_fields if k != "pairs_path"),  # the pairs file's bytes count
    "model.dtype",
    "model.max_context",
    "data.prompt_template",
)


def plan(cfg: RlufConfig) -> dict[str, Any]:
    """Everything DPO takes from the config: Ray Train scaling, trainer args, LoRA, failure budget,
    the prompt budget (raw), the template, and the pairs' source."""
    r = cfg.resources
    return {
        "scaling_config": scaling_config(r.train_workers, r.use_gpu, r.cpus_per_train_worker),
        "trainer_args": trainer_args(cfg),
        "lora": lora_kwargs(cfg.dpo.lora),
        "max_failures": cfg.dpo.max_failures,
        "dtype": cfg.model.dtype,
        "max_prompt_length": cfg.dpo.max_prompt_length,
        "max_context": cfg.model.max_context,
        "template": cfg.data.prompt_template,
        "pairs_path": cfg.dpo.pairs_path,
        "drop_zero_weight": cfg.dpo.drop_zero_weight,  # None: resolved by the reduction in trainer_args
    }


def run_name(cfg: RlufConfig, ctx: StageContext) -> str:
    """The Ray Train run's name: resumable by a rerun of the same inputs, never shared with another."""
    return "dpo-" + (ctx.fingerprint or fingerprint(cfg, result_keys(cfg, READS)))[:12]


def load_pairs(cfg: RlufConfig, ctx: StageContext) -> tuple[list[dict[str, Any]], str]:
    """The weighted pairs (external file or the weights stage's artifact) and where they came from."""
    from rluf_ray.training.pairs import read_jsonl_pairs

    if cfg.dpo.pairs_path:
        return read_jsonl_pairs(cfg.dpo.pairs_path), cfg.dpo.pairs_path
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


def run(cfg: RlufConfig, ctx: StageContext) -> StageResult:
    """Fit prompts, train weighted DPO under Ray Train, export the final model and curves."""
    from transformers import AutoTokenizer

    from rluf_ray.io.ray_runtime import ensure_ray
    from rluf_ray.training.dpo_loop import dpo_train_loop
    from rluf_ray.training.pairs import fit_pair_prompts, tokenizer_counters
    from rluf_ray.training.ray_train import fit_and_export

    p = plan(cfg)
    sft_model = ctx.store.local_path(ctx.upstream_dir("sft"), MODEL_DIR)
    if not os.path.isfile(os.path.join(sft_model, "config.json")):
        raise RlufError(f"no SFT model at {sft_model}: run `rluf sft` first")
    raw, source = load_pairs(cfg, ctx)
    tokenizer = AutoTokenizer.from_pretrained(sft_model)
    count, keep_end = tokenizer_counters(tokenizer)
    max_prompt_tokens = min(p["max_prompt_length"], p["max_context"])
    pairs, stats = fit_pair_prompts(raw, max_prompt_tokens, count, p["template"], keep_end)
    if stats.zero_weight == stats.pairs:
        raise RlufError(
            f"{source}: every one of the {stats.pairs} pairs has weight 0: nothing to train on "
            "(see weights/summary.json: the prediction sets left every answer out)"
        )
    dropped = stats.zero_weight if p["trainer_args"]["drop_zero_weight"] else 0
    log.info(
        "train: %d pairs from %s (%d prompts truncated, %d zero-weight%s)",
        stats.pairs,
        source,
        stats.truncated_prompts,
        stats.zero_weight,
        ", dropped" if dropped else "",
    )

    import ray

    ensure_ray()
    metrics = fit_and_export(
        dpo_train_loop,
        {
            "model_path": sft_model,
            "dtype": p["dtype"],
            "trainer_args": p["trainer_args"],
            "lora": p["lora"],
            "pairs": ray.put(pairs),
            "fail_at_step": ctx.options.get("fail_at_step"),  # test hook: exercises FailureConfig resume
        },
        {**p, "run_name": run_name(cfg, ctx)},
        ctx.store.local_path(ctx.dir, CHECKPOINTS),
        ctx.store.local_path(ctx.dir, MODEL_DIR),
        ctx.store.local_path(ctx.dir, CURVES),
        "DPO training",
    )
    summary = {
        "source": source,
        "pairs": stats.pairs,
        "truncated_prompts": stats.truncated_prompts,
        "off_template_prompts": stats.off_template_prompts,
        "zero_weight_pairs": stats.zero_weight,
        "dropped_zero_weight": dropped,
        "reduction": cfg.dpo.reduction,
        "workers": cfg.resources.train_workers,
        **{k: metrics[k] for k in ("train_loss", "global_step", "resumed") if k in metrics},
    }
    ctx.store.write_json(ctx.dir, SUMMARY, summary)
    return StageResult(
        rows={"pairs": stats.pairs, "trained_pairs": stats.pairs - dropped},
        metrics=summary,
    )


def needs(cfg: RlufConfig) -> tuple[str, ...]:
    """With an external pairs file the weights stage is not needed."""
    return ("sft",) if cfg.dpo.pairs_path else ("sft", "assign-weights")


def inputs(cfg: RlufConfig) -> dict[str, str]:
    """The content hash of an external pairs file (its path is not hashed: its bytes are)."""
    if not cfg.dpo.pairs_path:
        return {}
    return {"pairs_sha256": file_sha256(cfg.dpo.pairs_path)}


STAGE = StageDef(
    name="train",
    artifact_dir="training",
    upstream=("sft", "assign-weights"),
    reads=READS,
    plan_fn=plan,
    run_fn=run,
    needs_fn=needs,
    inputs_fn=inputs,
    sticky=("dpo.pairs_path",),
)
