"""The Ray Train loop of weighted DPO: one ``WeightedDPOTrainer`` per Train worker."""

from __future__ import annotations

import json
import os
from typing import Any

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


def dpo_train_loop(config: dict[str, Any]) -> None:
    """Train weighted DPO inside a Ray Train worker; resumes from the latest Ray Train checkpoint.

    Ends with ``report_final``: the final model, tokenizer and curves as the last checkpoint, with
    ``train_loss``, ``global_step`` and ``resumed`` as metrics.

    Args:
        config: Ray Train's ``train_loop_config``: ``model_path`` (the SFT model), ``dtype``,
            ``trainer_args`` (WeightedDPOConfig kwargs), ``lora`` (peft LoraConfig kwargs or None),
            ``pairs`` (rows, or an ObjectRef to them), ``label`` (the progress lines' name, default
            ``"dpo"``) and the test hooks ``fail_at_step`` and ``fault``.
    """
    import ray
    from datasets import Dataset
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

    from rluf_ray.training.weighted_dpo import (
        CurveLogger,
        WeightedDPOConfig,
        WeightedDPOTrainer,
        curves_from_history,
    )

    pairs = config["pairs"]
    if isinstance(pairs, ray.ObjectRef):
        pairs = ray.get(pairs)
    with scratch_dir("dpo") as out_dir:  # the HF output_dir, removed after the loop
        curves = os.path.join(out_dir, CURVES_ARTIFACT)
        tokenizer, model, peft_config = load_model(config)
        args = WeightedDPOConfig(output_dir=out_dir, **config["trainer_args"])
        trainer: Any = WeightedDPOTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(pairs),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[
                CurveLogger(os.path.join(out_dir, "live_curves.jsonl")),
                RayTrainReportCallback(),
                StepProgressLog(config.get("label", "dpo")),
            ],
        )
        trainer = quiet_trainer(prepare_trainer(trainer))
        with resume_checkpoint() as ckpt, worker_tracking_ends():
            quiet_params_on_resume(ckpt is not None)
            add_fault_hooks(trainer, config, resumed=ckpt is not None)
            result = trainer.train(resume_from_checkpoint=ckpt)
        rows = curves_from_history(trainer.state.log_history)  # restored from the checkpoint on resume
        with open(curves, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        metrics = {
            "train_loss": float(result.training_loss),
            "global_step": int(trainer.state.global_step),
            "resumed": ckpt is not None,
        }
        report_final(trainer, tokenizer, metrics, curves)
