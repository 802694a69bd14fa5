"""Stage ``sft``: causal-LM fine-tuning on prompt -> summary under Ray Train's TorchTrainer.

With ``model.base_model: embedded:tiny-llama`` the base model is first built locally (byte-level BPE
tokenizer trained on the SFT texts + a seeded tiny Llama) into ``outputs/sft/base``; a pretrained
embedded model (``embedded:smollm2-135m-instruct``) is built once into the user's cache. Training runs
TRL's SFTTrainer (loss on summary tokens only, EOS after every summary) in each Train worker; HF
checkpoints go through Ray Train checkpointing (``<output_dir>/sft/checkpoints/<run>`` while running,
on disk or in the object store), so a killed run resumes from the last one. The final model +
tokenizer are ``save_pretrained`` into ``<output_dir>/sft/model``, which the generate and train
stages hand to their actors and workers by location (copied to a node cache when remote).
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

from rluf_ray.config import RlufConfig, fingerprint, result_keys
from rluf_ray.data.embedded import builds_from_texts, is_embedded
from rluf_ray.data.splits import split_plan, split_reads
from rluf_ray.errors import RlufError
from rluf_ray.stages.registry import StageContext, StageDef, StageResult
from rluf_ray.training.ray_train import common_trainer_args, lora_kwargs, scaling_config

log = logging.getLogger("rluf.sft")

MODEL_DIR = "model"
BASE_DIR = "base"
CURVES = "curves.jsonl"
SUMMARY = "sft_summary.json"


def trainer_args(cfg: RlufConfig) -> dict[str, Any]:
    """TRL SFTConfig kwargs from the config (completion-only loss; EOS appended by TRL)."""
    s = cfg.sft
    return {
        **common_trainer_args(s, cfg.resources.use_gpu, "sft"),
        "max_length": min(s.max_length, cfg.model.max_context),
        "warmup_steps": min(s.warmup_ratio, 0.999999),  # transformers 5: a float < 1 is a ratio
        "weight_decay": s.weight_decay,
        "completion_only_loss": True,
        "packing": False,
    }


READS: tuple[str, ...] = (
    "model",
    "data.prompt_template",
    *split_reads("train"),
    "sft",
    "resources.train_workers",  # the global batch is workers x per_device_batch_size x accumulation
    "resources.use_gpu",  # CPU and GPU numerics differ
)


def plan(cfg: RlufConfig) -> dict[str, Any]:
    """Everything SFT takes from the config: Ray Train scaling, SFTConfig kwargs, LoRA, failure budget,
    the base model (and how the embedded one is built), the prompt template and the train split."""
    r, m = cfg.resources, cfg.model
    embedded = None
    if builds_from_texts(m.base_model):
        embedded = {"vocab_size": m.embedded_vocab_size, "hidden_size": m.embedded_hidden_size,
                    "layers": m.embedded_layers, "heads": m.embedded_heads, "seed": cfg.sft.seed}  # fmt: skip
    return {
        "scaling_config": scaling_config(
            r.train_workers, r.use_gpu, r.cpus_per_train_worker, r.custom_resources
        ),
        "trainer_args": trainer_args(cfg),
        "lora": lora_kwargs(cfg.sft.lora),
        "max_failures": cfg.sft.max_failures,
        "dtype": m.dtype,
        "max_length": cfg.sft.max_length,  # capped by max_context in trainer_args
        "max_context": m.max_context,
        "base_model": m.base_model,
        "embedded": embedded,
        "template": cfg.data.prompt_template,
        "train_split": split_plan(cfg, "train"),
    }


def run_name(cfg: RlufConfig, ctx: StageContext) -> str:
    """The Ray Train run's name: resumable by a rerun of the same config, never shared with another."""
    return "sft-" + (ctx.fingerprint or fingerprint(cfg, result_keys(cfg, READS)))[:12]


def base_model_path(cfg: RlufConfig, ctx: StageContext, p: dict[str, Any]) -> str:
    """The model SFT starts from: the tiny Llama built into the store (its location); a pretrained
    ``embedded:`` name (built here first, then by each Train worker on its node); else the configured
    path or hub id."""
    from rluf_ray.data.embedded import resolve_prebuilt
    from rluf_ray.data.tiny_model import build_embedded

    if p["embedded"] is None:
        if is_embedded(p["base_model"]):
            try:  # built (or found) here first: a missing package fails before Ray starts
                resolve_prebuilt(p["base_model"])
            except ValueError as exc:
                raise RlufError(f"model.base_model: {exc}") from None
        return str(p["base_model"])  # workers resolve an embedded name on their own node
    from rluf_ray.data.splits import tokenizer_corpus

    store = ctx.store
    if store.local:
        out = store.uri(ctx.dir, BASE_DIR)
        build_embedded(tokenizer_corpus(cfg), out_dir=out, max_positions=p["max_context"], **p["embedded"])
        return out
    with tempfile.TemporaryDirectory(prefix="rluf-base-") as tmp:  # built in scratch, kept in the store
        build_embedded(tokenizer_corpus(cfg), out_dir=tmp, max_positions=p["max_context"], **p["embedded"])
        store.put_dir(ctx.dir, BASE_DIR, tmp)
    return store.uri(ctx.dir, BASE_DIR)


def run(cfg: RlufConfig, ctx: StageContext) -> StageResult:
    """Build (embedded) or load the base model, fine-tune under Ray Train, export ``sft/model``."""
    import ray
    from transformers import AutoTokenizer

    from rluf_ray.data.splits import load_split
    from rluf_ray.runtime.bootstrap import ensure_ray
    from rluf_ray.store.model_cache import local_model
    from rluf_ray.tracking.runs import train_run
    from rluf_ray.training.ray_train import fit_and_export
    from rluf_ray.training.sft import build_sft_rows, sft_train_loop

    p = plan(cfg)
    rows = load_split(cfg, "train")
    if not rows:
        raise RlufError("the SFT (train) split is empty")
    base = base_model_path(cfg, ctx, p)
    try:
        tokenizer = AutoTokenizer.from_pretrained(local_model(base))
    except OSError as exc:
        raise RlufError(
            f"cannot load the base model's tokenizer from {base!r}: {exc.__class__.__name__}"
        ) from None
    sft_rows, truncated = build_sft_rows(rows, tokenizer, p["trainer_args"]["max_length"], p["template"])
    log.info("sft: %d examples (%d prompts truncated), base %s", len(sft_rows), truncated, base)

    ensure_ray()
    with train_run(ctx.tracking, "sft") as report:  # report_to: a child run of run-all's, or none
        metrics = fit_and_export(
            sft_train_loop,
            {
                "model_path": base,
                "dtype": p["dtype"],
                "trainer_args": p["trainer_args"],
                "lora": p["lora"],
                "rows": ray.put(sft_rows),
                "fail_at_step": ctx.options.get("fail_at_step"),  # test hook: FailureConfig resume
            },
            {**p, "run_name": run_name(cfg, ctx)},
            ctx.store,
            ctx.dir,
            "",
            "SFT",
            report,
        )
    summary: dict[str, Any] = {
        "examples": len(sft_rows),
        "truncated_prompts": truncated,
        "base_model": cfg.model.base_model,
        "workers": cfg.resources.train_workers,
        **{k: metrics[k] for k in ("train_loss", "global_step", "resumed") if k in metrics},
    }
    ctx.store.write_json(ctx.dir, SUMMARY, summary)
    if not ctx.store.exists(ctx.dir, f"{MODEL_DIR}/config.json"):
        raise RlufError(f"SFT finished but {ctx.store.uri(ctx.dir, MODEL_DIR)} holds no model")
    return StageResult(rows={"examples": len(sft_rows)}, metrics=summary)


STAGE = StageDef(
    name="sft",
    artifact_dir="sft",
    upstream=(),
    reads=READS,
    plan_fn=plan,
    run_fn=run,
)
