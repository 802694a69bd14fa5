"""A simulated GPU vLLM engine for ``rluf bench scale``: it sleeps instead of computing.

A benchmark-only engine (never a ``generation.engine`` choice), injected into the real generate stage
through its engine factory. Per engine call of ``P`` prompts it sleeps, in simulated seconds,

    ``ceil(P * N / max_seqs) * (prompt_tokens / prefill_tokens_per_s + max_new_tokens * step_s)``

(a batch of up to ``max_seqs`` sequences decodes one token per step, as vLLM's continuous batching does
while the batch fits; more sequences take more rounds), divided by one declared ``compression``
factor so that a run takes minutes. The default figures (prefill 10,000 tokens/s, 30 ms per decode
step for up to 256 sequences) are the benchmark's stated assumptions for Llama-2-7B in fp16 on one
A100 with vLLM. It returns outputs of real size: N texts of ``max_new_tokens`` tokens (about
``CHARS_PER_TOKEN`` characters each, cut from a seeded random word buffer, so nearly all distinct)
and a mean log-prob per text, and burns no CPU beyond making them.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rluf_ray.engines.base import Completion, SamplingSpec

CHARS_PER_TOKEN = 4
"""Characters of text per simulated token (English text under a Llama tokenizer: about 4)."""

_WORDS = ("the", "a", "crowd", "came", "to", "see", "park", "city", "said", "on", "after", "new", "of",
          "and", "in", "300", "people", "market", "opened", "Tuesday", "local", "council", "voted")  # fmt: skip


@dataclass(frozen=True)
class LatencyModel:
    """How long a simulated GPU engine call takes.

    Attributes:
        prefill_tokens_per_s: Prompt tokens prefilled per second.
        step_s: Seconds per decode step of one batch.
        max_seqs: Sequences decoded together per step.
        compression: Simulated seconds per real second slept (> 0).
    """

    prefill_tokens_per_s: float = 10_000.0
    step_s: float = 0.030
    max_seqs: int = 256
    compression: float = 5.0

    def batch_seconds(self, prompt_tokens: int, sequences: int, new_tokens: int) -> float:
        """Simulated seconds of one engine call (before compression).

        Args:
            prompt_tokens: Prompt tokens of the call, summed over its prompts.
            sequences: Sequences sampled (prompts x N).
            new_tokens: Tokens per sequence.

        Returns:
            ``rounds * (prompt_tokens / prefill + new_tokens * step)`` with ``rounds =
            ceil(sequences / max_seqs)``; 0 for no sequences.
        """
        if sequences <= 0:
            return 0.0
        rounds = math.ceil(sequences / self.max_seqs)
        return rounds * (prompt_tokens / self.prefill_tokens_per_s + new_tokens * self.step_s)


class LatencyEngine:
    """The engine: sleeps :class:`LatencyModel` time per call and returns outputs of real size.

    Args:
        latency: The latency model.
        seed: Seed of the text buffer and of the texts' offsets.
    """

    name = "latency"

    def __init__(self, latency: LatencyModel, seed: int = 0):
        self.latency = latency
        rng = random.Random(seed)
        self._buffer = " ".join(rng.choice(_WORDS) for _ in range(200_000))
        self._rng = rng
        self.last_simulated_s: float | None = None  # the last call's simulated seconds (uncompressed)

    def count_tokens(self, text: str) -> int:
        """Simulated tokens of a text: its characters over ``CHARS_PER_TOKEN``, at least 1.

        Args:
            text: A rendered prompt.

        Returns:
            The token count.
        """
        return max(1, len(text) // CHARS_PER_TOKEN)

    def generate(
        self, prompts: Sequence[str], spec: SamplingSpec, seed: int | None = None
    ) -> list[Completion]:
        """``spec.n`` texts of ``spec.max_new_tokens`` simulated tokens per prompt, after the call's sleep.

        Args:
            prompts: The rendered prompts of one batch.
            spec: How to sample (its ``n`` and ``max_new_tokens`` count; the rest is ignored).
            seed: Ignored (the texts' offsets come from the engine's own generator).

        Returns:
            One Completion per prompt with ``spec.n`` texts and mean log-probs.
        """
        t0 = time.perf_counter()
        tokens = sum(self.count_tokens(p) for p in prompts)
        simulated = self.latency.batch_seconds(tokens, len(prompts) * spec.n, spec.max_new_tokens)
        self.last_simulated_s = simulated
        chars = spec.max_new_tokens * CHARS_PER_TOKEN
        top = len(self._buffer) - chars
        out = []
        for _ in prompts:
            offsets = [self._rng.randrange(top) for _ in range(spec.n)]
            out.append(Completion(texts=[self._buffer[o : o + chars] for o in offsets],
                                  mean_logprobs=[-1.0 - o / top for o in offsets]))  # fmt: skip
        left = simulated / self.latency.compression - (time.perf_counter() - t0)
        if left > 0:
            time.sleep(left)
        return out

    def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True)
class LatencyEngineFactory:
    """Builds a :class:`LatencyEngine` inside an engine actor (picklable: plain fields).

    Attributes:
        latency: The latency model.
        seed: Base seed (each actor's engine mixes in its process id, so actors' texts differ).
    """

    latency: LatencyModel
    seed: int = 0

    def __call__(self) -> LatencyEngine:
        import os

        return LatencyEngine(self.latency, seed=self.seed * 1_000_003 + os.getpid())
