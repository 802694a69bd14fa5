"""``rluf bench generate``: N samples per prompt, the original loop vs our engine path, side by side.

Fixed shape so figures compare across runs: by default a 2-layer, 128-wide Llama (head_dim 64) with a
byte-level BPE tokenizer; ``--model embedded:smollm2-135m-instruct`` (or a local model folder) runs the
same comparison on a real pretrained 30-layer model. Prompts of about 200 tokens, exactly 32 new tokens
per sample (min = max new tokens), temperature 0.35, float32, the same total number of threads on both
sides.

* baseline (the original approach, honestly done): transformers ``generate`` with its KV cache, one
  sample per call, N calls per prompt.
* ours: the engine adapter that the engine pool (``rluf_ray.engines.pool``) builds in its actors
  (``hf``: one ``generate`` call per batch of prompts with ``num_return_sequences=N``, log-probs
  included; ``vllm``: ``SamplingParams(n=N)``).

The last line printed is a JSON object with ``engine``, ``baseline_samples_per_s``,
``ours_samples_per_s`` and ``ratio``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rluf_ray.engines import registry as engine_registry


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rluf bench generate", description=__doc__.splitlines()[0])
    p.add_argument("--engine", choices=engine_registry.names(), default="hf")
    p.add_argument(
        "--model",
        default=None,
        help="model to sample from: an embedded: name with prebuilt weights or a local folder "
        "(default: the benchmark's seeded tiny Llama, built per run)",
    )
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
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per side; medians are reported")
    p.add_argument("--seed", type=int, default=0)
    return p


def build_bench_model(out_dir: Path, hidden: int, layers: int, seed: int) -> Path:
    """The benchmark's tiny Llama (head_dim 64) and tokenizer, saved with save_pretrained.

    The tokenizer is trained on 300 demo training documents of ``seed``; the model has
    ``max(1, hidden // 64)`` heads and a context of 1024 tokens.

    Args:
        out_dir: Folder to save into (created when missing).
        hidden: Model width (a multiple of 64 keeps head_dim at 64).
        layers: Number of decoder layers.
        seed: Seed of the corpus and of the model's initialisation.

    Returns:
        ``out_dir``.
    """
    from rluf_ray.data import demo
    from rluf_ray.data.tiny_model import build_embedded

    return build_embedded(
        demo.corpus_texts(seed, 300), out_dir, hidden_size=hidden, layers=layers, heads=max(1, hidden // 64),
        max_positions=1024, seed=seed,
    )  # fmt: skip


def resolve_bench_model(name: str | None, tmp: Path, args: argparse.Namespace) -> tuple[Path, str]:
    """The model folder to benchmark and a one-line description of it.

    Args:
        name: ``--model``: an ``embedded:`` name with prebuilt weights, a local folder, or ``None`` for
            the seeded tiny Llama built into ``tmp/model``.
        tmp: Scratch folder of this run.
        args: The parsed command line (``hidden``, ``layers`` and ``seed`` shape the tiny Llama).

    Returns:
        ``(model folder, description)``.

    Raises:
        SystemExit: The folder has no ``config.json``.
    """
    if name is None:
        path = build_bench_model(tmp / "model", args.hidden, args.layers, args.seed)
        return path, f"{args.layers} layers x {args.hidden} wide, head_dim 64 (seeded tiny Llama)"
    from rluf_ray.data.embedded import is_embedded, resolve_prebuilt

    path = resolve_prebuilt(name) if is_embedded(name) else Path(name)
    if not (path / "config.json").is_file():
        raise SystemExit(f"rluf bench generate: no model folder at {path} (config.json missing)")
    cfg = json.loads((path / "config.json").read_text())
    return path, f"{name}: {cfg.get('num_hidden_layers')} layers x {cfg.get('hidden_size')} wide"


def make_prompts(tokenizer, count: int, target_tokens: int, seed: int) -> list[str]:
    """``count`` prompts of about ``target_tokens`` tokens built from demo documents.

    Consecutive test-split demo posts are joined until the rendered prompt reaches ``target_tokens``,
    then words are cut from the end until it fits; no two prompts share a document.

    Args:
        tokenizer: The model's tokenizer (a transformers tokenizer), which measures the length.
        count: Number of prompts.
        target_tokens: Most tokens per rendered prompt (special tokens included).
        seed: Seed of the demo documents.

    Returns:
        The rendered prompts.
    """
    from rluf_ray.common.text import render_prompt
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


class Baseline:
    """The original loop: one sample per ``generate`` call, N calls per prompt (KV cache on).

    Args:
        model_dir: The save_pretrained folder to load.
        prompts: The prompts to sample.
        n: Samples per prompt.
        new_tokens: New tokens per sample (exactly: min = max).
        temperature: Sampling temperature (> 0).
        threads: Torch threads of this process.
    """

    def __init__(
        self, model_dir: Path, prompts: list[str], n: int, new_tokens: int, temperature: float, threads: int
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.prompts, self.n, self.new_tokens, self.temperature = prompts, n, new_tokens, temperature
        self._sample(self.tok(prompts[0], return_tensors="pt"))  # warm-up at the timed shape, not timed

    def _sample(self, enc) -> None:
        import torch

        with torch.inference_mode():
            out = self.model.generate(**enc, do_sample=True, temperature=self.temperature, top_k=0, use_cache=True,
                                      max_new_tokens=self.new_tokens, min_new_tokens=self.new_tokens,
                                      pad_token_id=self.tok.pad_token_id)  # fmt: skip
        assert out.shape[1] - enc["input_ids"].shape[1] == self.new_tokens

    def run(self) -> tuple[int, float]:
        """(samples, seconds) of one timed round.

        Returns:
            ``(samples drawn, wall seconds)`` over every prompt's N calls.
        """
        samples = 0
        t0 = time.perf_counter()
        for prompt in self.prompts:
            enc = self.tok(prompt, return_tensors="pt")
            for _ in range(self.n):
                self._sample(enc)
                samples += 1
        return samples, time.perf_counter() - t0


class EngineActor:
    """One engine in a Ray actor (the engine pool's actor, without Ray Data around it).

    Args:
        engine_name: A registered engine name.
        model_dir: The save_pretrained folder the engine loads.
        threads: CPUs of the actor (``resources.cpus_per_actor``: the hf engine's torch threads).
        vllm_memory: vLLM's memory share (``generation.vllm_gpu_memory_utilization``).
    """

    def __init__(self, engine_name: str, model_dir: str, threads: int, vllm_memory: float):
        from rluf_ray.config import GenerationConfig, ModelConfig, ResourcesConfig
        from rluf_ray.engines.pool import EngineFactory

        # the options the pipeline would give this engine for these settings (the rest at defaults)
        options = engine_registry.options_for(
            engine_name,
            GenerationConfig(seed=0, vllm_gpu_memory_utilization=vllm_memory),
            ModelConfig(max_context=1024),
            ResourcesConfig(cpus_per_actor=threads),
        )
        self.engine = EngineFactory(engine_name, model_dir, options)()

    def generate(self, prompts: list[str], spec, seed: int) -> int:
        """Sample one batch through the engine.

        Args:
            prompts: The rendered prompts.
            spec: How to sample (a ``SamplingSpec``).
            seed: The engine call's seed.

        Returns:
            The number of samples drawn (``spec.n`` per prompt).
        """
        return sum(len(c.texts) for c in self.engine.generate(prompts, spec, seed=seed))

    def close(self) -> None:
        """Release the engine."""
        self.engine.close()


class Ours:
    """Our engine path: each prompt's N samples in one request, each actor's prompts in one call.

    ``actors`` > 1 splits the same total threads over several engine actors (as the stage's pool
    does); everything is warmed up at the timed shape before the clock starts, as the baseline is.
    """

    def __init__(self, engine_name: str, model_dir: Path, prompts: list[str], n: int, new_tokens: int,
                 temperature: float, threads: int, vllm_memory: float, actors: int):  # fmt: skip
        from rluf_ray.engines.base import SamplingSpec

        self.spec = SamplingSpec(
            n=n, temperature=temperature, max_new_tokens=new_tokens, min_new_tokens=new_tokens
        )
        self.expected = n * len(prompts)
        self.actors = actors
        if actors <= 1:
            self.local = EngineActor(engine_name, str(model_dir), threads, vllm_memory)
            self.prompts = prompts
        else:
            import ray

            from rluf_ray.runtime.bootstrap import ensure_ray

            ensure_ray(num_cpus=threads)
            per = max(1, threads // actors)
            # Any: Ray's ActorHandle[EngineActor] types the methods without their ``.remote``
            self.handles: list[Any] = [
                ray.remote(EngineActor)
                .options(num_cpus=per)
                .remote(engine_name, str(model_dir), per, vllm_memory)
                for _ in range(actors)
            ]
            self.chunks = [prompts[k::actors] for k in range(actors)]
        self._round(seed=1)  # warm-up

    def _round(self, seed: int) -> int:
        if self.actors <= 1:
            return self.local.generate(self.prompts, self.spec, seed)
        import ray

        return sum(
            ray.get(
                [
                    h.generate.remote(c, self.spec, seed)
                    for h, c in zip(self.handles, self.chunks, strict=True)
                ]
            )
        )

    def run(self, seed: int = 0) -> tuple[int, float]:
        """One timed round: every prompt's N samples, each actor's prompts in one engine call.

        Args:
            seed: The engine calls' seed.

        Returns:
            ``(samples drawn, wall seconds)``.
        """
        t0 = time.perf_counter()
        samples = self._round(seed)
        wall = time.perf_counter() - t0
        assert samples == self.expected
        return samples, wall

    def close(self) -> None:
        """Close the engine(s); with actors, close each one and kill it."""
        if self.actors <= 1:
            self.local.close()  # vLLM shuts its engine process down here, before the JSON line
            del self.local
            gc.collect()
        else:
            import ray

            for h in self.handles:
                ray.get(h.close.remote())
                ray.kill(h)


def main(argv: list[str] | None = None) -> int:
    """Run the side-by-side benchmark; the last printed line is JSON.

    Args:
        argv: Command-line arguments (``None``: ``sys.argv[1:]``); see ``_parser`` for the options.

    Returns:
        The exit status, 0.
    """
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
        model_dir, model_desc = resolve_bench_model(args.model, Path(tmp), args)
        tok = AutoTokenizer.from_pretrained(model_dir)
        prompts = make_prompts(tok, max(args.prompts, args.baseline_prompts), args.prompt_tokens, args.seed)
        lengths = [len(tok(p)["input_ids"]) for p in prompts]
        print(f"machine: {machine}")
        print(f"shape: {model_desc}, prompts {lengths} tokens, "
              f"{args.new_tokens} new tokens, N={args.samples}, threads={args.threads}")  # fmt: skip
        # The baseline runs first, alone: none of our engine processes (or Ray) exist yet, so nothing of
        # ours competes with it for the CPU. Several rounds each; medians are reported.
        base = Baseline(model_dir, prompts[: args.baseline_prompts], args.samples, args.new_tokens,
                        args.temperature, args.threads)  # fmt: skip
        base_rates, our_rates = [], []
        for r in range(args.repeats):
            b_samples, b_wall = base.run()
            base_rates.append(b_samples / b_wall)
            print(f"baseline round {r + 1} (1 sample per generate call): {b_samples} samples in {b_wall:.2f}s = "
                  f"{base_rates[-1]:.2f} samples/s")  # fmt: skip
        del base
        gc.collect()
        ours = Ours(args.engine, model_dir, prompts[: args.prompts], args.samples, args.new_tokens,
                    args.temperature, args.threads, args.vllm_memory, args.actors)  # fmt: skip
        for r in range(args.repeats):
            o_samples, o_wall = ours.run(seed=r)
            our_rates.append(o_samples / o_wall)
            print(f"ours round {r + 1} ({args.engine}, N per request, {args.prompts} prompts over {args.actors} "
                  f"actor(s), {args.threads} threads in all): {o_samples} samples in {o_wall:.2f}s = "
                  f"{our_rates[-1]:.2f} samples/s")  # fmt: skip
        ours.close()
    base_rate, our_rate = statistics.median(base_rates), statistics.median(our_rates)
    print(
        f"median over {args.repeats} rounds: baseline {base_rate:.2f} samples/s, ours {our_rate:.2f} samples/s"
    )
    result = {
        "engine": args.engine,
        "model": args.model or "bench-tiny-llama",
        "baseline_samples_per_s": round(base_rate, 3),
        "ours_samples_per_s": round(our_rate, 3),
        "ratio": round(our_rate / base_rate, 2),
        "rounds": args.repeats,
        "baseline_per_round": [round(x, 2) for x in base_rates],
        "ours_per_round": [round(x, 2) for x in our_rates],
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
