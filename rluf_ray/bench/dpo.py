"""Benchmark: weighted DPO step time vs TRL's DPOTrainer, and the saving of dropping zero-weight pairs.

Both trainers get the same tiny model (same init), the same pre-collated batches and the same
optimiser; a "step" is the trainer's ``training_step`` (forward of policy and reference, loss,
backward) plus ``optimizer.step()``. Steps of the two are interleaved (order alternating) and the
median of the warm steps is reported. ``drop_zero_speedup`` is the wall time of one epoch of our
trainer over a dataset with ``--zero-share`` zero-weight pairs (23.7%: the full released data) with
those pairs kept, divided by the same epoch with them dropped before training (the fastest of
``--epochs`` interleaved repeats each, since other processes only ever add time).

Last line: JSON with trl_step_s, ours_step_s, overhead_ratio, drop_zero_speedup.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from typing import Any

WORDS = (
    "the rent went up my landlord said a cat slept on mat all day i ran far and lost stamina "
    "after two weeks of travel we moved to a new city job offer friend told me to eat more"
).split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_pairs(
    n: int, zero_share: float, prompt_words: int, answer_words: int, seed: int
) -> list[dict[str, Any]]:
    """Deterministic synthetic pairs in the released format; exactly round(n*zero_share) have weight 0.

    The other pairs weigh 0.5, 0.65 or 0.8; prompts, chosen and rejected answers are random words.

    Args:
        n: Number of pairs.
        zero_share: Share of zero-weight pairs, in [0, 1].
        prompt_words: Words in each prompt's text.
        answer_words: Words in each chosen and rejected answer.
        seed: Seed of the generator.

    Returns:
        ``n`` rows with ``prompt``, ``chosen``, ``rejected`` and ``weight``.
    """
    rng = random.Random(seed)
    zeros = set(rng.sample(range(n), round(n * zero_share)))
    return [
        {
            "prompt": f"Please summarize this text:\n{_text(rng, prompt_words)}\nSummary:",
            "chosen": " " + _text(rng, answer_words),
            "rejected": " " + _text(rng, answer_words),
            "weight": 0.0 if i in zeros else rng.choice([0.5, 0.65, 0.8]),
        }
        for i in range(n)
    ]


def _build(cls: Any, args_cls: Any, model_dir: str, rows: list[dict], batch: int, extra: dict) -> Any:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tempfile.mkdtemp(prefix="rluf-bench-dpo-")
    args = args_cls(
        output_dir=out, use_cpu=True, per_device_train_batch_size=batch, report_to="none", beta=0.1,
        max_length=512, seed=0, save_strategy="no", gradient_checkpointing=False, dataset_num_proc=None,
        disable_tqdm=True, **extra,
    )  # fmt: skip
    trainer = cls(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    trainer.current_gradient_accumulation_steps = 1
    trainer.optimizer = torch.optim.AdamW(trainer.model.parameters(), lr=1e-5)
    return trainer


def _step(trainer: Any, batch: dict) -> float:
    t0 = time.perf_counter()
    trainer.training_step(trainer.model, dict(batch))
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def _epoch(trainer: Any) -> float:
    t0 = time.perf_counter()
    for batch in trainer.get_train_dataloader():
        trainer.training_step(trainer.model, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main(argv: list[str]) -> int:
    """Run the benchmark (step time, then the drop-zero epoch); the last printed line is JSON.

    Args:
        argv: Command-line arguments after ``rluf bench dpo`` (``--steps``, ``--batch``, ...).

    Returns:
        The exit status, 0.
    """
    p = argparse.ArgumentParser(prog="rluf bench dpo", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30, help="timed steps per trainer (>= 20 for the report)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps per trainer")
    p.add_argument("--batch", type=int, default=8, help="pairs per step")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--prompt-words", type=int, default=120)
    p.add_argument("--answer-words", type=int, default=24)
    p.add_argument("--pairs", type=int, default=128, help="pairs in the drop-zero epoch")
    p.add_argument(
        "--zero-share", type=float, default=0.237, help="share of zero-weight pairs (full data: 23.7%%)"
    )
    p.add_argument("--epochs", type=int, default=3, help="repeats of the drop-zero epoch (median)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    a = p.parse_args(argv)

    import torch
    from trl import DPOConfig, DPOTrainer

    from rluf_ray.data.tiny_model import build_embedded
    from rluf_ray.training.pairs import drop_zero_weight_pairs
    from rluf_ray.training.weighted_dpo import WeightedDPOConfig, WeightedDPOTrainer

    threads = a.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    print(
        f"machine: {platform.platform()} cpus={os.cpu_count()} torch_threads={threads} torch={torch.__version__}"
    )
    pairs = make_pairs(max(a.pairs, a.batch * (a.steps + a.warmup)), 0.0, a.prompt_words, a.answer_words, 0)
    texts = [r["prompt"] + r["chosen"] + r["rejected"] for r in pairs[:200]]
    model_dir = str(build_embedded(texts, tempfile.mkdtemp(prefix="rluf-bench-model-"), vocab_size=512,
                                   hidden_size=a.hidden, layers=a.layers, heads=a.hidden // 64, seed=0))  # fmt: skip
    print(f"model: {a.layers}-layer {a.hidden}-wide Llama (head_dim 64), batch {a.batch} pairs")

    # 1. step time, same batches, interleaved
    n_steps = a.steps + a.warmup
    rows = pairs[: a.batch * n_steps]
    ours = _build(WeightedDPOTrainer, WeightedDPOConfig, model_dir, rows, a.batch, {})
    trl = _build(DPOTrainer, DPOConfig, model_dir, [{k: v for k, v in r.items() if k != "weight"} for r in rows],
                 a.batch, {})  # fmt: skip
    ds = ours.train_dataset
    batches = [
        ours.data_collator([ds[j] for j in range(i * a.batch, (i + 1) * a.batch)]) for i in range(n_steps)
    ]
    t_trl: list[float] = []
    t_ours: list[float] = []
    for i, b in enumerate(batches):
        plain = {k: v for k, v in b.items() if k != "weight"}
        if i % 2 == 0:
            tt, to = _step(trl, plain), _step(ours, b)
        else:
            to, tt = _step(ours, b), _step(trl, plain)
        if i >= a.warmup:
            t_trl.append(tt)
            t_ours.append(to)
    trl_s, ours_s = statistics.median(t_trl), statistics.median(t_ours)
    print(f"step time (median of {len(t_trl)} warm steps): TRL DPOTrainer {trl_s * 1e3:.1f} ms, "
          f"weighted {ours_s * 1e3:.1f} ms, overhead {ours_s / trl_s:.3f}x")  # fmt: skip

    # 2. one epoch with zero-weight pairs kept vs dropped before training
    epoch_rows = make_pairs(a.pairs, a.zero_share, a.prompt_words, a.answer_words, 1)
    kept_rows, dropped = drop_zero_weight_pairs(epoch_rows)  # as `rluf train` drops them
    keep = _build(WeightedDPOTrainer, WeightedDPOConfig, model_dir, epoch_rows, a.batch, {})
    drop = _build(WeightedDPOTrainer, WeightedDPOConfig, model_dir, kept_rows, a.batch, {})
    _epoch(keep), _epoch(drop)  # warm
    t_keep, t_drop = [], []
    for _ in range(a.epochs):
        t_keep.append(_epoch(keep))
        t_drop.append(_epoch(drop))
    keep_s, drop_s = min(t_keep), min(t_drop)  # min: the least disturbed epoch on a shared machine
    print(f"epoch over {a.pairs} pairs with {dropped} zero-weight ({a.zero_share:.1%}): "
          f"kept {keep_s:.2f} s, dropped {drop_s:.2f} s, speedup {keep_s / drop_s:.3f}x")  # fmt: skip
    print(json.dumps({
        "trl_step_s": round(trl_s, 6),
        "ours_step_s": round(ours_s, 6),
        "overhead_ratio": round(ours_s / trl_s, 4),
        "drop_zero_speedup": round(keep_s / drop_s, 4),
        "zero_share": a.zero_share,
        "steps": len(t_trl),
        "batch": a.batch,
        "cpus": os.cpu_count(),
    }))  # fmt: skip
    return 0
