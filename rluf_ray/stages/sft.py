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

from rluf_ray.config import ModelConfig, RlufConfig, SftConfig, operational, plan_key, plan_type
from rluf_ray.data.embedded import builds_from_texts, is_embedded
from rluf_ray.data.splits import SplitPlan, split_plan
from rluf_ray.errors import RlufError
from rluf_ray.schema import MODEL_DIR, SFT_SUMMARY_ARTIFACT
from rluf_ray.stages.registry import StageContext, StageDef, StageResult
from rluf_ray.training.ray_train import (
    LoraPlan,
    TrainerArgs,
    TrainRun,
    TrainScaling,
    common_trainer_args,
    lora_plan,
    train_scaling,
)

log = logging.getLogger("rluf.sft")

BASE_DIR = "base"  # the embedded tiny Llama built for this run (model.base_model: embedded:tiny-llama)


@plan_type
class SftArgs:
    """TRL SFTConfig arguments (``kwargs()``): the shared ones, completion-only loss, EOS by TRL."""

    common: TrainerArgs
    max_length: int  # sft.max_length capped by model.max_context
    warmup_steps: float  # transformers 5: a float < 1 is a ratio
    weight_decay: float
    completion_only_loss: bool = True
    packing: bool = False

    def kwargs(self) -> dict[str, Any]:
        """The SFTConfig keyword arguments.

        Returns:
            A dict of argument name to value.
        """
        return {**self.common.kwargs(), "max_length": self.max_length, "warmup_steps": self.warmup_steps,
                "weight_decay": self.weight_decay, "completion_only_loss": self.completion_only_loss,
                "packing": self.packing}  # fmt: skip


@plan_type
class EmbeddedModel:
    """The tiny Llama built locally for ``model.base_model: embedded:tiny-llama`` (tokenizer on SFT texts)."""

    vocab_size: int
    hidden_size: int
    layers: int
    heads: int
    seed: int


@plan_type
class SftPlan:
    """Everything SFT takes from the config."""

    trainer_args: SftArgs
    lora: LoraPlan | None
    dtype: str
    max_context: int  # the embedded model's positions
    base_model: str
    embedded: EmbeddedModel | None  # set when the base model is built from the SFT texts
    template: str
    train_split: SplitPlan
    scaling: TrainScaling  # workers, device and threads count; their placement is operational
    max_failures: int = operational()


def trainer_args(sft: SftConfig, model: ModelConfig, use_gpu: bool) -> SftArgs:
    """TRL SFTConfig arguments from the ``sft`` section (completion-only loss; EOS appended by TRL).

    Args:
        sft: The ``sft`` section.
        model: The ``model`` section (its context caps ``max_length``).
        use_gpu: Whether the Train workers hold GPUs.

    Returns:
        The SFT arguments.
    """
    return SftArgs(
        common=common_trainer_args(sft, use_gpu, "sft"),
        max_length=min(sft.max_length, model.max_context),
        warmup_steps=min(sft.warmup_ratio, 0.999999),
        weight_decay=sft.weight_decay,
    )


def plan(cfg: RlufConfig) -> SftPlan:
    """Everything SFT takes from the config: Ray Train scaling, SFTConfig arguments, LoRA, failure
    budget, the base model (and how the embedded one is built), the prompt template and the train split.

    Args:
        cfg: The config.

    Returns:
        The stage's plan (pure: nothing is loaded or started).
    """
    m = cfg.model
    embedded = None
    if builds_from_texts(m.base_model):
        embedded = EmbeddedModel(vocab_size=m.embedded_vocab_size, hidden_size=m.embedded_hidden_size,
                                 layers=m.embedded_layers, heads=m.embedded_heads, seed=cfg.sft.seed)  # fmt: skip
    return SftPlan(
        trainer_args=trainer_args(cfg.sft, m, cfg.resources.use_gpu),
        lora=lora_plan(cfg.sft.lora),
        dtype=m.dtype,
        max_context=m.max_context,
        base_model=m.base_model,
        embedded=embedded,
        template=cfg.data.prompt_template,
        train_split=split_plan(cfg.data, "train"),
        scaling=train_scaling(cfg.resources),
        max_failures=cfg.sft.max_failures,
    )


def run_name(p: SftPlan, ctx: StageContext) -> str:
    """The Ray Train run's name: resumable by a rerun of the same plan, never shared with another.

    Args:
        p: The stage's plan.
        ctx: The run's context (its stage key, when the pipeline set one).

    Returns:
        ``sft-<12 hex digits of the stage key>``.
    """
    return "sft-" + (ctx.fingerprint or plan_key(p))[:12]


def base_model_path(p: SftPlan, ctx: StageContext) -> str:
    """The model SFT starts from: the tiny Llama built into the store (its location); a pretrained
    ``embedded:`` name (built here first, then by each Train worker on its node); else the configured
    path or hub id.

    Args:
        p: The stage's plan.
        ctx: The run's context.

    Returns:
        The base model's location.
    """
    from rluf_ray.data.embedded import resolve_prebuilt
    from rluf_ray.data.tiny_model import build_embedded

    if p.embedded is None:
        if is_embedded(p.base_model):
            try:  # built (or found) here first: a missing package fails before Ray starts
                resolve_prebuilt(p.base_model)
            except ValueError as exc:
                raise RlufError(f"model.base_model: {exc}") from None
        return p.base_model  # workers resolve an embedded name on their own node
    from rluf_ray.data.splits import tokenizer_corpus

    store, e = ctx.store, p.embedded

    def build(out_dir: str) -> None:
        build_embedded(tokenizer_corpus(p.template, p.train_split), out_dir=out_dir, vocab_size=e.vocab_size,
                       hidden_size=e.hidden_size, layers=e.layers, heads=e.heads,
                       max_positions=p.max_context, seed=e.seed)  # fmt: skip

    if store.local:
        out = store.uri(ctx.dir, BASE_DIR)
        build(out)
        return out
    with tempfile.TemporaryDirectory(prefix="rluf-base-") as tmp:  # built in scratch, kept in the store
        build(tmp)
        store.put_dir(ctx.dir, BASE_DIR, tmp)
    return store.uri(ctx.dir, BASE_DIR)


def run(p: SftPlan, ctx: StageContext) -> StageResult:
    """Build (embedded) or load the base model, fine-tune under Ray Train, export ``sft/model``.

    Args:
        p: The stage's plan (trainer arguments, base model, train split).
        ctx: The run's context (store, options, stage key).

    Returns:
        Row counts and metrics for the manifest.
    """
    import ray
    from transformers import AutoTokenizer

    from rluf_ray.data.splits import load_split
    from rluf_ray.runtime.bootstrap import ensure_ray
    from rluf_ray.store.model_cache import local_tokenizer
    from rluf_ray.tracking.runs import train_run
    from rluf_ray.training.ray_train import fit_and_export
    from rluf_ray.training.sft import build_sft_rows, sft_train_loop

    rows = load_split(p.train_split)
    if not rows:
        raise RlufError("the SFT (train) split is empty")
    base = base_model_path(p, ctx)
    try:
        tokenizer = AutoTokenizer.from_pretrained(local_tokenizer(base))
    except OSError as exc:
        raise RlufError(
            f"cannot load the base model's tokenizer from {base!r}: {exc.__class__.__name__}"
        ) from None
    sft_rows, truncated = build_sft_rows(rows, tokenizer, p.trainer_args.max_length, p.template)
    log.info("sft: %d examples (%d prompts truncated), base %s", len(sft_rows), truncated, base)

    ensure_ray()
    with train_run(ctx.tracking, "sft") as report:  # report_to: a child run of run-all's, or none
        metrics = fit_and_export(
            sft_train_loop,
            {
                "model_path": base,
                "dtype": p.dtype,
                "trainer_args": p.trainer_args.kwargs(),
                "lora": None if p.lora is None else p.lora.kwargs(),
                "rows": ray.put(sft_rows),
                "fail_at_step": ctx.options.get("fail_at_step"),  # test hook: FailureConfig resume
            },
            TrainRun(name=run_name(p, ctx), scaling=p.scaling, max_failures=p.max_failures),
            ctx.store,
            ctx.dir,
            "",
            "SFT",
            report,
        )
    summary: dict[str, Any] = {
        "examples": len(sft_rows),
        "truncated_prompts": truncated,
        "base_model": p.base_model,
        "workers": p.scaling.workers,
        **{k: metrics[k] for k in ("train_loss", "global_step", "resumed") if k in metrics},
    }
    ctx.store.write_json(ctx.dir, SFT_SUMMARY_ARTIFACT, summary)
    if not ctx.store.exists(ctx.dir, f"{MODEL_DIR}/config.json"):
        raise RlufError(f"SFT finished but {ctx.store.uri(ctx.dir, MODEL_DIR)} holds no model")
    return StageResult(rows={"examples": len(sft_rows)}, metrics=summary)


STAGE = StageDef(
    name="sft",
    artifact_dir="sft",
    upstream=(),
    plan_fn=plan,
    run_fn=run,
)
