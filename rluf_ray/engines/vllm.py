"""The ``vllm`` engine: ``LLM.generate`` with ``SamplingParams(n=N)``, prefix caching on, tensor-parallel
size and memory share from the config.

vLLM is imported inside the engine only (here, and nowhere else in the package), so everything else
imports on a machine without it. The engine is seeded (``LLM(seed=...)``), never the request: a
per-request seed fails on the CPU build ("CPU Generator does not use offset").
"""

from __future__ import annotations

import gc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rluf_ray.engines.base import Completion, EngineEntry, EngineOptions, SamplingSpec, check_model_path
from rluf_ray.errors import RlufError

if TYPE_CHECKING:
    from rluf_ray.config import GenerationConfig, ModelConfig, ResourcesConfig


@dataclass(frozen=True)
class VllmOptions(EngineOptions):
    """Options of the ``vllm`` engine (``LLM(...)``'s arguments).

    Attributes:
        dtype: Weights dtype.
        max_context: ``max_model_len`` (None: the model's).
        gpu_memory_utilization: The memory share (CPU builds: the share of RAM).
        enable_prefix_caching: Whether vLLM caches shared prompt prefixes.
        tensor_parallel_size: GPUs per engine.
        seed: The engine's seed.
    """

    dtype: str = "float32"
    max_context: int | None = None
    gpu_memory_utilization: float = 0.9
    enable_prefix_caching: bool = True
    tensor_parallel_size: int = 1
    seed: int = 42


def options_from_config(
    generation: GenerationConfig, model: ModelConfig, resources: ResourcesConfig
) -> VllmOptions:
    """The ``vllm`` options of a run.

    Args:
        generation: The ``generation`` section: ``vllm_gpu_memory_utilization``,
            ``vllm_enable_prefix_caching``, ``tensor_parallel_size`` and ``seed``.
        model: The ``model`` section: ``dtype`` and ``max_context``.
        resources: The ``resources`` section: ``gpus_per_actor`` bounds ``tensor_parallel_size``.

    Returns:
        The engine's options.

    Raises:
        RlufError: ``tensor_parallel_size`` exceeds the GPUs of an engine actor (when it has any).
    """
    gpus = resources.gpus_per_actor
    if gpus and generation.tensor_parallel_size > gpus:
        raise RlufError(
            f"generation.tensor_parallel_size={generation.tensor_parallel_size} needs resources.gpus_per_actor "
            f">= {generation.tensor_parallel_size} (got {gpus})"
        )
    return VllmOptions(
        dtype=model.dtype,
        max_context=model.max_context,
        gpu_memory_utilization=generation.vllm_gpu_memory_utilization,
        enable_prefix_caching=generation.vllm_enable_prefix_caching,
        tensor_parallel_size=generation.tensor_parallel_size,
        seed=generation.seed,
    )


class VLLMEngine:
    """vLLM ``LLM.generate`` with ``SamplingParams(n=N)``; vllm is imported here only."""

    name = "vllm"

    def __init__(self, model_path: str, options: VllmOptions | None = None):
        """Start vLLM on the model in ``model_path`` with ``options`` (defaults if None).

        Args:
            model_path: The local save_pretrained folder (model and tokenizer).
            options: The engine's options; ``None`` for ``VllmOptions()``.

        Raises:
            RlufError: ``model_path`` holds no save_pretrained model, or vllm is not installed.
        """
        opts = options if options is not None else VllmOptions()
        check_model_path(model_path)
        try:
            from vllm import LLM
        except ImportError as exc:
            raise RlufError(
                "generation.engine=vllm needs vllm (GPU: pip install 'rluf-ray[vllm]'; CPU: see "
                "scripts/setup_vllm_env.sh)"
            ) from exc
        self.llm = LLM(
            model=model_path,
            tokenizer=model_path,
            dtype=opts.dtype,
            max_model_len=opts.max_context,
            gpu_memory_utilization=opts.gpu_memory_utilization,
            enable_prefix_caching=opts.enable_prefix_caching,
            tensor_parallel_size=opts.tensor_parallel_size,
            seed=opts.seed,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the engine will see it (special tokens included).

        Args:
            text: A prompt as it will be sent to ``generate``.

        Returns:
            The number of prompt tokens by vLLM's tokenizer, any special tokens it adds included.
        """
        return len(self.tokenizer(text)["input_ids"])

    def close(self) -> None:
        """Shut the engine down now (not at interpreter exit), through vLLM's public API.

        A second call does nothing. ``LLM.shutdown()`` runs where the installed vLLM has it. Then the
        ``LLM`` is dropped and ``vllm.distributed.cleanup_dist_env_and_memory()`` collects it (vLLM's
        engine core client shuts the engine core down when it is collected) and frees the distributed
        state and cached device memory, as vLLM's own tests release an ``LLM``.
        """
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        shutdown = getattr(llm, "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm, shutdown
        try:
            from vllm.distributed import cleanup_dist_env_and_memory
        except ImportError:  # a vLLM without it: collecting the LLM still shuts its engine core down
            gc.collect()
            return
        cleanup_dist_env_and_memory()

    def generate(
        self, prompts: Sequence[str], spec: SamplingSpec, seed: int | None = None
    ) -> list[Completion]:
        """``spec.n`` samples for every prompt, in one ``LLM.generate`` call with ``SamplingParams(n=N)``.

        Args:
            prompts: The prompts of one batch, already rendered; an empty batch gives an empty list.
            spec: How to sample.
            seed: Ignored: the engine is seeded once (``VllmOptions.seed``), since a per-request seed fails
                on vLLM's CPU build.

        Returns:
            One Completion per prompt, in order; a sample's mean log-prob is NaN when vLLM reports none.
        """
        from vllm import SamplingParams

        if not prompts:
            return []
        # ``seed`` is deliberately not passed per request (the engine is seeded; see module doc).
        params = SamplingParams(
            n=spec.n,
            temperature=spec.temperature,
            top_p=spec.top_p,
            max_tokens=spec.max_new_tokens,
            min_tokens=spec.min_new_tokens,
            logprobs=0,  # the sampled token's log-prob only
        )
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        results = []
        for req in outputs:
            texts, lps = [], []
            for o in req.outputs:
                texts.append(o.text)
                lps.append(_vllm_mean_logprob(o))
            results.append(Completion(texts=texts, mean_logprobs=lps))
        return results


def _vllm_mean_logprob(output: Any) -> float:
    n = len(getattr(output, "token_ids", ()) or ())
    cum = getattr(output, "cumulative_logprob", None)
    if cum is not None and n:
        return float(cum) / n
    steps = getattr(output, "logprobs", None)
    if steps and n:
        total = 0.0
        for tok, step in zip(output.token_ids, steps, strict=False):
            entry = step.get(tok) if hasattr(step, "get") else None
            if entry is None:
                return math.nan
            total += float(getattr(entry, "logprob", entry))
        return total / n
    return math.nan


ENGINE = EngineEntry("vllm", VLLMEngine, VllmOptions, options_from_config)
"""The registration of this engine (``registry.BUILTIN`` names this module)."""
