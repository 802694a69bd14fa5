"""``rluf bench generate``: N samples per prompt, the original loop vs our engine path, side by side.

Fixed shape so figures compare across runs: a 2-layer, 128-wide Llama (head_dim 64) with a byte-level
BPE tokenizer, prompts of about 200 tokens, exactly 32 new tokens per sample (min = max new tokens),
temperature 0.35, float32, the same total number of threads on both sides.

* baseline (the original approach, honestly done): transformers ``generate`` with its KV cache, one
  sample per call, N calls per prompt.
* ours: the engine adapter the generate stage uses (``hf``: one ``generate`` call per batch of
  prompts with ``num_return_sequences=N``, log-probs included; ``vllm``: ``SamplingParams(n=N)``).

The last line printed is a JSON object with ``engine``, ``baseline_samples_per_s``,
``ours_samples_per_s`` and ``ratio``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rluf bench generate", description=__doc__.splitlines()[0])
    p.add_argument("--engine", choices=("hf", "vllm"), default="hf")
    p.add_argument("--samples", type=int, default=60, help="samples per prompt (N)")
    p.add_argument("--prompts", type=int, default=8, help="prompts for our engine path")
    p.add_argument("--baseline-prompts", type=int, default=1, help="prompts for the one-sample-per-call loop")
    p.add_argument("--prompt-tokens", type=int, default=200)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="total threads, both sides")
    p.add_argument(
        "--actors",
        type=int,
        default=None,
        help="engine actors sharing the threads (default: hf one per 1 thread; vllm 1)",
    )
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--temperature", type=float, default=0.35)
    p.add_argument("--vllm-memory", type=float, default=0.3, help="vLLM memory share (CPU build: RAM share)")
    p.add_argument("--seed", type=int, default=0)
    return p


def build_bench_model(out_dir: Path, hidden: int, layers: int, seed: int) -> Path:
    """The benchmark's tiny Llama (head_dim 64) and tokenizer, saved with save_pretrained."""
    from rluf_ray.data import demo
    from rluf_ray.data.tiny_model import build_embedded

    return build_embedded(
        demo.corpus_texts(seed, 300), out_dir, hidden_size=hidden, layers=layers, heads=max(1, hidden // 64),
        max_positions=1024, seed=seed,
    )  # fmt: skip


def make_prompts(tokenizer, count: int, target_tokens: int, seed: int) -> list[str]:
    """``count`` prompts of about ``target_tokens`` tokens built from demo documents."""
    from rluf_ray.core.text import render_prompt
    from rluf_ray.data import demo

    prompts, i = [], 0
    for k in range(count):
        body: list[str] = []
        while True:
            body.append(demo.make_doc(seed, "test", i).post)
            i += 1
            text = render_prompt(" ".join(body))
            if len(tokenizer(text)["input_ids"]) >= target_tokens:
                break
        # trim to the target at a word boundary
        words = " ".join(body).split()
        while len(tokenizer(render_prompt(" ".join(words)))["input_ids"]) > target_tokens:
            words = words[:-1]
        prompts.append(render_prompt(" ".join(words)))
        del k
    return prompts


def run_baseline(
    model_dir: Path, prompts: list[str], n: int, new_tokens: int, temperature: float, threads: int
) -> dict:
    """One sample per ``generate`` call, N calls per prompt (KV cache on, same dtype and threads)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    torch.manual_seed(0)
    enc0 = tok(prompts[0], return_tensors="pt")
    with torch.inference_mode():  # warm-up, not timed
        model.generate(**enc0, do_sample=True, temperature=temperature, top_k=0, max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, pad_token_id=tok.pad_token_id)  # fmt: skip
    samples = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for prompt in prompts:
            enc = tok(prompt, return_tensors="pt")
            for _ in range(n):
                out = model.generate(**enc, do_sample=True, temperature=temperature, top_k=0, use_cache=True,
                                     max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                     pad_token_id=tok.pad_token_id)  # fmt: skip
                assert out.shape[1] - enc["input_ids"].shape[1] == new_tokens
                samples += 1
    wall = time.perf_counter() - t0
    return {"samples": samples, "wall_s": round(wall, 3), "samples_per_s": samples / wall}


class EngineActor:
    """One engine in a Ray actor (the generate stage's actor pool, without Ray Data around it)."""

    def __init__(self, engine_name: str, model_dir: str, threads: int, vllm_memory: float):
        from rluf_ray.io.engines import make_engine

        self.engine = make_engine(engine_name, model_dir, threads=threads, max_context=1024,
                                  gpu_memory_utilization=vllm_memory, seed=0)  # fmt: skip

    def generate(self, prompts: list[str], spec, seed: int) -> int:
        return sum(len(c.texts) for c in self.engine.generate(prompts, spec, seed=seed))


def run_ours(engine_name: str, model_dir: Path, prompts: list[str], n: int, new_tokens: int, temperature: float,
             threads: int, vllm_memory: float, actors: int = 1) -> dict:  # fmt: skip
    """Our engine path: every prompt's N samples in one request, each actor's prompts in one call.

    ``actors`` > 1 splits the same total threads over several engine actors (as the stage's pool
    does); each is warmed up at its timed shape before the clock starts, as the baseline is.
    """
    from rluf_ray.io.engines import SamplingSpec

    spec = SamplingSpec(n=n, temperature=temperature, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    if actors <= 1:
        actor = EngineActor(engine_name, str(model_dir), threads, vllm_memory)
        actor.generate(prompts, spec, seed=1)  # warm-up at the timed shape, not timed
        t0 = time.perf_counter()
        samples = actor.generate(prompts, spec, seed=0)
        wall = time.perf_counter() - t0
        del actor  # vLLM shuts its engine process down here, before the JSON line
        gc.collect()
    else:
        import ray

        from rluf_ray.io.ray_runtime import ensure_ray

        ensure_ray(num_cpus=threads)
        per = max(1, threads // actors)
        handles = [ray.remote(EngineActor).options(num_cpus=per).remote(engine_name, str(model_dir), per, vllm_memory)
                   for _ in range(actors)]  # fmt: skip
        chunks = [prompts[k::actors] for k in range(actors)]
        ray.get([h.generate.remote(c, spec, 1) for h, c in zip(handles, chunks, strict=True)])  # warm-up
        t0 = time.perf_counter()
        samples = sum(ray.get([h.generate.remote(c, spec, 0) for h, c in zip(handles, chunks, strict=True)]))
        wall = time.perf_counter() - t0
        for h in handles:
            ray.kill(h)
    assert samples == n * len(prompts)
    return {"samples": samples, "wall_s": round(wall, 3), "samples_per_s": samples / wall}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.actors is None:
        args.actors = args.threads if args.engine == "hf" else 1
    from transformers import AutoTokenizer

    machine = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    with tempfile.TemporaryDirectory(prefix="rluf-bench-gen-") as tmp:
        model_dir = build_bench_model(Path(tmp) / "model", args.hidden, args.layers, args.seed)
        tok = AutoTokenizer.from_pretrained(model_dir)
        prompts = make_prompts(tok, max(args.prompts, args.baseline_prompts), args.prompt_tokens, args.seed)
        lengths = [len(tok(p)["input_ids"]) for p in prompts]
        print(f"machine: {machine}")
        print(f"shape: {args.layers} layers x {args.hidden} wide, head_dim 64, prompts {lengths} tokens, "
              f"{args.new_tokens} new tokens, N={args.samples}, threads={args.threads}")  # fmt: skip
        base = run_baseline(model_dir, prompts[: args.baseline_prompts], args.samples, args.new_tokens,
                            args.temperature, args.threads)  # fmt: skip
        print(f"baseline (1 sample per generate call): {base['samples']} samples in {base['wall_s']}s = "
              f"{base['samples_per_s']:.2f} samples/s")  # fmt: skip
        ours = run_ours(args.engine, model_dir, prompts[: args.prompts], args.samples, args.new_tokens,
                        args.temperature, args.threads, args.vllm_memory, args.actors)  # fmt: skip
        print(f"ours ({args.engine}, N per request, {args.prompts} prompts over {args.actors} actor(s), "
              f"{args.threads} threads in all): {ours['samples']} samples in "
              f"{ours['wall_s']}s = {ours['samples_per_s']:.2f} samples/s")  # fmt: skip
    result = {
        "engine": args.engine,
        "baseline_samples_per_s": round(base["samples_per_s"], 3),
        "ours_samples_per_s": round(ours["samples_per_s"], 3),
        "ratio": round(ours["samples_per_s"] / base["samples_per_s"], 2),
        "samples_per_prompt": args.samples,
        "new_tokens": args.new_tokens,
        "prompt_tokens": round(sum(lengths) / len(lengths), 1),
        "threads": args.threads,
        "actors": args.actors,
        "machine": machine,
    }
    sys.stderr.flush()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
