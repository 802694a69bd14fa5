"""SFT on prompt -> summary data with TRL's SFTTrainer: loss on summary tokens only, EOS after each.

The dataset is TRL's prompt-completion format: ``prompt`` is the rendered template (post body cut to
fit by ``fit_prompt``), ``completion`` is " " + the reference. With that format SFTTrainer
(``completion_only_loss=True``) masks every prompt token (label -100) and appends the tokenizer's
EOS to every completion, so sampling stops after a summary instead of running to max_new_tokens.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from rluf_ray.errors import RlufError
from rluf_ray.schema import CURVES_ARTIFACT
from rluf_ray.training.progress import StepProgressLog, quiet_trainer
from rluf_ray.training.ray_train import (
    add_fault_hooks,
    load_model,
    quiet_params_on_resume,
    report_final,
    resume_checkpoint,
    scratch_dir,
    worker_tracking_ends,
)

MIN_PROMPT_TOKENS = 8


def completion_text(reference: str) -> str:
    """The SFT target: the reference after one space (the prompt ends with the answer cue).

    Args:
        reference: The reference summary (surrounding whitespace is stripped).

    Returns:
        ``" " + reference.strip()``.
    """
    return " " + reference.strip()


def build_sft_rows(
    rows: Iterable[Mapping[str, Any]], tokenizer: Any, max_length: int, template: str
) -> tuple[list[dict[str, str]], int]:
    """Prompt-completion rows whose prompt+completion+EOS fit ``max_length``.

    Args:
        rows: Split rows with ``post`` and ``reference`` (and ``prompt_id``, for errors).
        tokenizer: The HF tokenizer of the model to train, for counting tokens.
        max_length: The token budget of prompt + completion + EOS (``sft.max_length``).
        template: The prompt template, with ``{post}`` where the post goes.

    Returns:
        ``(rows, truncated)``: ``{"prompt", "completion"}`` dicts in input order, and how many
        prompts had their post cut to fit.

    Raises:
        RlufError: A reference leaves fewer than ``MIN_PROMPT_TOKENS`` tokens for its prompt, or the
            template alone does not fit.
    """
    from rluf_ray.common.text import fit_prompt

    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    out: list[dict[str, str]] = []
    truncated = 0
    for row in rows:
        completion = completion_text(row["reference"])
        budget = max_length - len(tokenizer(completion, add_special_tokens=False)["input_ids"]) - 1  # EOS
        if budget < MIN_PROMPT_TOKENS:
            raise RlufError(
                f"prompt {row.get('prompt_id', '?')}: its reference alone needs more than sft.max_length={max_length}"
            )
        try:
            fitted = fit_prompt(row["post"], budget, count, template)
        except ValueError as exc:
            raise RlufError(str(exc)) from None
        truncated += fitted.truncated
        out.append({"prompt": fitted.prompt, "completion": completion})
    return out, truncated


def sft_trainer(model: Any, tokenizer: Any, rows: list[dict[str, str]], args: Any, **kwargs: Any) -> Any:
    """TRL's SFTTrainer on prompt-completion rows (completion-only loss, EOS appended).

    Args:
        model: The causal LM to train.
        tokenizer: Its HF tokenizer (the trainer's ``processing_class``).
        rows: ``{"prompt", "completion"}`` dicts from ``build_sft_rows``.
        args: The ``trl.SFTConfig``; its ``completion_only_loss`` must be True.
        **kwargs: Further SFTTrainer arguments (e.g. ``peft_config``, ``callbacks``).

    Returns:
        The ``trl.SFTTrainer``.

    Raises:
        RlufError: ``rows`` is empty.
        ValueError: ``args.completion_only_loss`` is False.
    """
    from datasets import Dataset
    from trl import SFTTrainer

    if not rows:
        raise RlufError("no SFT examples")
    if not args.completion_only_loss:
        raise ValueError("SFT here trains on the summary only: completion_only_loss must be True")
    return SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, **kwargs
    )


def sft_train_loop(config: dict[str, Any]) -> None:
    """SFT inside a Ray Train worker; resumes from the latest Ray Train checkpoint.

    Ends with ``report_final``: the final model, tokenizer and curves as the last checkpoint, with
    ``train_loss``, ``global_step`` and ``resumed`` as metrics.

    Args:
        config: Ray Train's ``train_loop_config``: ``model_path``, ``dtype``, ``lora`` (see
            ``load_model``), ``trainer_args`` (SFTConfig kwargs), ``rows`` (prompt-completion rows,
            or an ObjectRef to them) and the test hooks ``fail_at_step`` and ``fault``.
    """
    import ray
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
    from trl import SFTConfig

    rows = config["rows"]
    if isinstance(rows, ray.ObjectRef):
        rows = ray.get(rows)
    with scratch_dir("sft") as out_dir:  # the HF output_dir, removed after the loop
        tokenizer, model, peft_config = load_model(config)
        args = SFTConfig(output_dir=out_dir, **config["trainer_args"])
        trainer = sft_trainer(
            model,
            tokenizer,
            rows,
            args,
            peft_config=peft_config,
            callbacks=[RayTrainReportCallback(), StepProgressLog("sft")],
        )
        trainer = quiet_trainer(prepare_trainer(trainer))
        with resume_checkpoint() as ckpt, worker_tracking_ends():
            quiet_params_on_resume(ckpt is not None)
            add_fault_hooks(trainer, config, resumed=ckpt is not None)
            result = trainer.train(resume_from_checkpoint=ckpt)
        curves = os.path.join(out_dir, CURVES_ARTIFACT)
        _write_curves(trainer.state.log_history, curves)
        metrics = {
            "train_loss": float(result.training_loss),
            "global_step": int(trainer.state.global_step),
            "resumed": ckpt is not None,
        }
        report_final(trainer, tokenizer, metrics, curves)


def _write_curves(history: list[dict[str, Any]], path: str) -> None:
    import json

    keys = ("loss", "learning_rate", "grad_norm", "mean_token_accuracy", "entropy")
    with open(path, "w", encoding="utf-8") as f:
        for log in history:
            if "loss" in log and "step" in log:
                row = {"step": int(log["step"]), **{k: float(log[k]) for k in keys if k in log}}
                f.write(json.dumps(row) + "\n")
