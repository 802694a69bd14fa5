"""``rluf bench generate``: the whole ``generate`` stage against what a user would run instead.

Three figures from one run, on the same prompts, model, N, token budget and total threads:

* **stage**: ``rluf generate`` itself (Ray Data, engine actors, Parquet part files, the manifest),
  run through :func:`rluf_ray.pipeline.run_stage` on the embedded demo's prompts, its engines timed
  from inside the actors (:mod:`rluf_ray.bench.stage_timing`);
* **bare**: the strongest single-process use of the same engine (:mod:`rluf_ray.bench.bare_generate`):
  hf, batched ``generate(num_return_sequences=N)`` over the stage's own prompt batches; vllm,
  ``LLM.generate(prompts, SamplingParams(n=N))`` over all prompts at once;
* **loop**: one ``generate`` call per sample (the original project's loop), on ``--loop-prompts``.

Every sample is exactly ``--new-tokens`` tokens on every side (min = max). Steady state leaves the
engine start out on both sides (the stage: its slowest actor's engine build; bare: the model load),
end to end counts it; Ray's own start is outside both (Ray is up before the clock starts). The
default model is a seeded 2-layer, 128-wide Llama (head_dim 64); ``--model
embedded:smollm2-135m-instruct`` or a local folder runs the same on a real pretrained model.

The last line printed is a JSON object with ``engine``, ``model``, ``prompts``,
``stage_samples_per_s``, ``bare_samples_per_s``, ``ratio_vs_bare`` (steady state),
``loop_samples_per_s``, ``engine_start_s``, the end-to-end figures and the stage's ``phases``.
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
    p.add_argument(
        "--prompts",
        type=int,
        default=90,
        help="prompts, half calibration, half test (the default config's 50 + 40)",
    )
    p.add_argument("--loop-prompts", type=int, default=1, help="prompts for the one-sample-per-call loop")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens per sample, exactly")
    p.add_argument(
        "--batch", type=int, default=4, help="prompts per engine call (generation.prompts_per_batch)"
    )
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="total threads, every side")
    p.add_argument(
        "--actors",
        type=int,
        default=None,
        help="the stage's engine actors sharing the threads (default: hf one per thread; vllm 1)",
    )
    p.add_argument("--rows-per-file", type=int, default=None,
                   help="generation.rows_per_file (default: --batch, so every batch is a block)")  # fmt: skip
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--temperature", type=float, default=0.35)
    p.add_argument("--vllm-memory", type=float, default=0.3, help="vLLM memory share (CPU build: RAM share)")
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


class OneSampleLoop:
    """The original loop: one sample per ``generate`` call, N calls per prompt (KV cache on).

    Args:
        model_dir: The save_pretrained folder to load.
        n: Samples per prompt.
        new_tokens: New tokens per sample (exactly: min = max).
        temperature: Sampling temperature (> 0).
        threads: Torch threads of this process.
        dtype: Torch dtype name of the weights.
    """

    def __init__(self, model_dir: Path, n: int, new_tokens: int, temperature: float, threads: int,
                 dtype: str):  # fmt: skip
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
        self.n, self.new_tokens, self.temperature = n, new_tokens, temperature

    def _sample(self, enc) -> None:
        import torch

        with torch.inference_mode():
            out = self.model.generate(**enc, do_sample=True, temperature=self.temperature, top_k=0, use_cache=True,
                                      max_new_tokens=self.new_tokens, min_new_tokens=self.new_tokens,
                                      pad_token_id=self.tok.pad_token_id or self.tok.eos_token_id)  # fmt: skip
        assert out.shape[1] - enc["input_ids"].shape[1] == self.new_tokens

    def run(self, prompts: list[str]) -> tuple[int, float]:
        """Every prompt's N calls, after one untimed warm-up call.

        Args:
            prompts: The rendered prompts.

        Returns:
            ``(samples drawn, wall seconds)``.
        """
        self._sample(self.tok(prompts[0], return_tensors="pt"))
        samples = 0
        t0 = time.perf_counter()
        for prompt in prompts:
            enc = self.tok(prompt, return_tensors="pt")
            for _ in range(self.n):
                self._sample(enc)
                samples += 1
        return samples, time.perf_counter() - t0


def stage_overrides(args: argparse.Namespace, out: Path) -> list[str]:
    """The config overrides under which the benchmark runs the generate stage.

    Args:
        args: The parsed command line.
        out: The run's output directory.

    Returns:
        ``KEY=VALUE`` overrides of the embedded default: the demo's splits at ``--prompts`` (half
        calibration, half test), the sampling, batching and pool of the command line, no scoring.
    """
    cal = (args.prompts + 1) // 2
    test = args.prompts - cal
    return [
        f"data.demo.calibration_docs={cal}", f"data.calibration_size={cal}",
        f"data.demo.test_docs={test}", f"data.test_size={test}",
        f"generation.engine={args.engine}", f"generation.sampling_num={args.samples}",
        f"generation.temperature={args.temperature}", f"generation.max_new_tokens={args.new_tokens}",
        f"generation.prompts_per_batch={args.batch}",
        f"generation.rows_per_file={args.rows_per_file or args.batch}",
        f"generation.vllm_gpu_memory_utilization={args.vllm_memory}", f"generation.seed={args.seed}",
        "generation.score_calibration=false",
        f"resources.engine_actors={args.actors}", f"resources.cpus_per_actor={args.threads // args.actors}",
        f"output_dir={out}",
    ]  # fmt: skip


def run_stage_timed(
    args: argparse.Namespace, out: Path, model_dir: Path
) -> tuple[Any, dict[str, float], Any]:
    """The real generate stage over ``model_dir`` (installed as the SFT stage's model), timed.

    Args:
        args: The parsed command line.
        out: The run's output directory (the stage's store).
        model_dir: The model folder.

    Returns:
        ``(config, phases, store)``: the stage's config, :func:`stage_timing.stage_phases` of the run,
        and its artifact store.
    """
    from rluf_ray.bench.stage_timing import TimedEngineFactory, read_events, stage_phases
    from rluf_ray.config import load
    from rluf_ray.engines.pool import EngineFactory
    from rluf_ray.pipeline import run_stage, stage_fingerprint
    from rluf_ray.runtime.bootstrap import ensure_ray
    from rluf_ray.schema import MODEL_DIR
    from rluf_ray.stages.registry import get
    from rluf_ray.store.artifacts import ArtifactStore

    cfg = load(overrides=stage_overrides(args, out))
    store = ArtifactStore(out)
    sft_model = out / get("sft").artifact_dir / MODEL_DIR
    sft_model.parent.mkdir(parents=True, exist_ok=True)
    if sft_model != model_dir:
        sft_model.symlink_to(model_dir.resolve(), target_is_directory=True)
    store.complete("sft", stage_fingerprint(cfg, get("sft")), {})
    options = engine_registry.options_for(args.engine, cfg.generation, cfg.model, cfg.resources)
    events = out / "engine_events.jsonl"
    factory = TimedEngineFactory(EngineFactory(args.engine, str(sft_model), options), str(events))
    ensure_ray(num_cpus=args.threads)  # Ray's start is outside the clock
    t0 = time.time()
    man = run_stage(cfg, store, "generate", force=True, options={"engine_factory": factory})
    t1 = time.time()
    if man is None:
        raise SystemExit("rluf bench generate: the generate stage did not complete")
    return cfg, stage_phases(read_events(events), t0, t1), store


def stage_batches(store: Any, batch: int) -> list[list[str]]:
    """The rendered prompts the stage sampled, read back from its part files, in batches of ``batch``.

    Args:
        store: The stage's artifact store.
        batch: Prompts per batch (``generation.prompts_per_batch``).

    Returns:
        The prompt batches, split by split (a batch never mixes splits, as in the stage).
    """
    from rluf_ray.schema import GENERATION_SPLITS
    from rluf_ray.stages.registry import get

    batches: list[list[str]] = []
    for split in GENERATION_SPLITS:
        prompts = [p for d in store.iter_part_batches(get("generate").artifact_dir, split, ["prompt"])
                   for p in d["prompt"]]  # fmt: skip
        batches += [prompts[i : i + batch] for i in range(0, len(prompts), batch)]
    return batches


def run_bare(
    args: argparse.Namespace, cfg: Any, model_dir: Path, batches: list[list[str]]
) -> tuple[float, int, float]:
    """The single-process baseline of the engine over the same batches.

    Args:
        args: The parsed command line.
        cfg: The stage's config (its dtype, context and sampling).
        model_dir: The model folder.
        batches: The stage's prompt batches.

    Returns:
        ``(start seconds, samples, sampling seconds)``.
    """
    from rluf_ray.bench.bare_generate import BareHF, BareVLLM

    g = cfg.generation
    bare: BareHF | BareVLLM
    if args.engine == "vllm":
        bare = BareVLLM(model_dir, args.samples, args.new_tokens, g.temperature, g.top_p, cfg.model.dtype,
                        args.vllm_memory, cfg.model.max_context, g.seed)  # fmt: skip
    else:
        bare = BareHF(model_dir, args.samples, args.new_tokens, g.temperature, g.top_p, args.threads,
                      cfg.model.dtype)  # fmt: skip
    samples, wall = bare.run(batches)
    start = bare.start_s
    bare.close()
    del bare
    gc.collect()
    return start, samples, wall


def main(argv: list[str] | None = None) -> int:
    """Run the stage, the bare baseline and the loop; the last printed line is JSON.

    Args:
        argv: Command-line arguments (``None``: ``sys.argv[1:]``); see ``_parser`` for the options.

    Returns:
        The exit status, 0.
    """
    args = _parser().parse_args(argv)
    if args.prompts < 2:
        raise SystemExit("rluf bench generate: --prompts must be at least 2 (one per split)")
    if args.actors is None:
        args.actors = args.threads if args.engine == "hf" else 1
    if args.actors < 1 or args.threads % args.actors:
        raise SystemExit(f"rluf bench generate: --threads {args.threads} must split evenly over --actors")
    import ray

    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version()}  # fmt: skip
    print(f"machine: {machine}")
    with tempfile.TemporaryDirectory(prefix="rluf-bench-gen-") as tmp:
        out = Path(tmp) / "run"
        model_dir, model_desc = resolve_bench_model(args.model, Path(tmp), args)
        print(f"model: {model_desc}; N={args.samples}, {args.new_tokens} new tokens, {args.prompts} prompts "
              f"in batches of {args.batch}, {args.threads} threads ({args.actors} actor(s) in the stage)")  # fmt: skip
        cfg, phases, store = run_stage_timed(args, out, model_dir)
        batches = stage_batches(store, args.batch)
        ray.shutdown()  # the baselines run with no Ray process left
        prompts = sum(len(b) for b in batches)
        expected = prompts * args.samples
        if phases["samples"] != expected:
            raise SystemExit(
                f"rluf bench generate: the stage drew {phases['samples']:.0f} samples, not {expected}"
            )
        stage_steady = phases["wall_s"] - phases["engine_start_s"]
        print(f"stage ({args.engine}): {expected} samples in {phases['wall_s']:.2f}s end to end, "
              f"{stage_steady:.2f}s without the engine start; phases {json.dumps(_rounded(phases))}")  # fmt: skip
        bare_start, bare_samples, bare_wall = run_bare(args, cfg, model_dir, batches)
        assert bare_samples == expected, (bare_samples, expected)
        print(f"bare ({args.engine}, one process): {bare_samples} samples in {bare_wall:.2f}s "
              f"+ {bare_start:.2f}s model load")  # fmt: skip
        loop = OneSampleLoop(model_dir, args.samples, args.new_tokens, cfg.generation.temperature, args.threads,
                             cfg.model.dtype)  # fmt: skip
        loop_samples, loop_wall = loop.run([p for b in batches for p in b][: args.loop_prompts])
        del loop
        print(f"loop (1 sample per generate call): {loop_samples} samples in {loop_wall:.2f}s")
    stage_rate, bare_rate = expected / stage_steady, bare_samples / bare_wall
    stage_e2e, bare_e2e = expected / phases["wall_s"], bare_samples / (bare_wall + bare_start)
    result = {
        "engine": args.engine,
        "model": args.model or "bench-tiny-llama",
        "prompts": prompts,
        "samples_per_prompt": args.samples,
        "new_tokens": args.new_tokens,
        "prompts_per_batch": args.batch,
        "stage_samples_per_s": round(stage_rate, 3),
        "bare_samples_per_s": round(bare_rate, 3),
        "ratio_vs_bare": round(stage_rate / bare_rate, 3),
        "stage_end_to_end_samples_per_s": round(stage_e2e, 3),
        "bare_end_to_end_samples_per_s": round(bare_e2e, 3),
        "ratio_vs_bare_end_to_end": round(stage_e2e / bare_e2e, 3),
        "loop_samples_per_s": round(loop_samples / loop_wall, 3),
        "engine_start_s": round(phases["engine_start_s"], 2),
        "bare_engine_start_s": round(bare_start, 2),
        "phases": _rounded(phases),
        "threads": args.threads,
        "actors": args.actors,
        "machine": machine,
    }
    sys.stderr.flush()
    print(json.dumps(result), flush=True)
    return 0


def _rounded(figures: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in figures.items()}


if __name__ == "__main__":
    raise SystemExit(main())
