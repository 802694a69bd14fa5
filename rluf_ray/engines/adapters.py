"""Sampling engines behind one interface: N samples per prompt in ONE request, several prompts per call.

* ``hf``: transformers ``generate`` with N samples per prompt over a left-padded batch of prompts in
  one call; each prompt is prefilled once and its KV cache shared by its N samples (what
  ``num_return_sequences=N`` does, without encoding the prompt N times); the mean token log-probability of each sample is computed from the raw logits that
  ``generate`` returns (``output_logits``), under the model's own distribution (not the
  temperature-scaled one), counting tokens up to and including the end-of-sequence token.
* ``vllm``: ``LLM.generate`` with ``SamplingParams(n=N)``, prefix caching on, tensor-parallel size and
  memory share from config. vLLM is imported inside the adapter only, so everything else imports on
  a machine without it. The engine is seeded (``LLM(seed=...)``), never the request: a per-request
  seed fails on the CPU build ("CPU Generator does not use offset").

Engines are plain classes; the engine pool (``rluf_ray.engines.pool``) builds one inside each Ray
actor and closes it when the actor is torn down.
"""

from __future__ import annotations

import gc
import inspect
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rluf_ray.errors import RlufError


@dataclass(frozen=True)
class SamplingSpec:
    """How to sample: N per prompt, temperature, nucleus, token limits."""

    n: int
    temperature: float
    top_p: float = 1.0
    max_new_tokens: int = 128
    min_new_tokens: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise RlufError(f"sampling_num must be >= 1, got {self.n}")
        if self.max_new_tokens < 1:
            raise RlufError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.min_new_tokens > self.max_new_tokens:
            raise RlufError("min_new_tokens must not exceed max_new_tokens")


@dataclass
class Completion:
    """The N samples of one prompt: raw texts and each sample's mean token log-prob (NaN if unknown)."""

    texts: list[str]
    mean_logprobs: list[float] = field(default_factory=list)


class Engine(Protocol):
    """What the generate stage needs from an engine."""

    name: str

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the engine will see it (special tokens included)."""
        ...

    def generate(
        self, prompts: Sequence[str], spec: SamplingSpec, seed: int | None = None
    ) -> list[Completion]:
        """``spec.n`` samples for every prompt, in one engine call; one Completion per prompt, in order."""
        ...

    def close(self) -> None:
        """Release the engine (processes, memory)."""
        ...


def check_model_path(path: str) -> None:
    """A one-line error when the model directory is missing or is not a save_pretrained directory."""
    if not path:
        raise RlufError("no model path given to the sampling engine")
    if not os.path.isdir(path):
        raise RlufError(f"model not found: {path} (run `rluf sft` first)")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise RlufError(f"{path} is not a Hugging Face model directory (no config.json)")


class HFEngine:
    """transformers ``generate``: one call per batch of prompts with ``num_return_sequences=N``."""

    name = "hf"

    def __init__(
        self,
        model_path: str,
        dtype: str = "float32",
        device: str | None = None,
        threads: int | None = None,
        max_context: int | None = None,
        share_prefill: bool = True,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        check_model_path(model_path)
        if threads:
            torch.set_num_threads(int(threads))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model: Any = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype))
        # transformers types PreTrainedModel.to through @wraps(nn.Module.to), which hides the bound self
        self.model.to(self.device).eval()  # type: ignore[arg-type]
        self.max_context = max_context or getattr(self.model.config, "max_position_embeddings", None)
        self.share_prefill = share_prefill
        # transformers >= 5.2x names the KV cache argument ``cache`` (``past_key_values`` deprecated).
        self._cache_kw = (
            "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def close(self) -> None:
        """Drop the model (nothing else to release; ``model`` is None from now on); safe to call again."""
        self.model = None

    def _shared_prefill(self, ids: Any, mask: Any, n: int) -> dict[str, Any]:
        """Run each prompt through the model ONCE and give its KV cache to all N samples.

        ``num_return_sequences=N`` alone copies every prompt N times before the prefill, so the
        prompt is encoded N times; here it is encoded once and the cache is repeated (the same
        tokens and logits, checked in the tests). Position ids follow the left padding as in
        ``generate``. Returns the ``generate`` inputs for the N-times expanded batch.
        """
        from transformers import DynamicCache

        try:
            cache = DynamicCache(config=self.model.config)
        except TypeError:  # older transformers
            cache = DynamicCache()
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        self.model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=pos[:, :-1],
            use_cache=True,
            **{self._cache_kw: cache},
        )
        cache.batch_repeat_interleave(n)
        return {
            "input_ids": ids.repeat_interleave(n, dim=0),
            "attention_mask": mask.repeat_interleave(n, dim=0),
            self._cache_kw: cache,
        }

    def generate(
        self, prompts: Sequence[str], spec: SamplingSpec, seed: int | None = None
    ) -> list[Completion]:
        import torch

        if not prompts:
            return []
        if seed is not None:
            torch.manual_seed(seed)
        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True).to(self.device)
        width = enc["input_ids"].shape[1]
        if self.max_context and width + spec.max_new_tokens > self.max_context:
            raise RlufError(
                f"prompt of {width} tokens + {spec.max_new_tokens} new exceeds the context {self.max_context}"
            )
        greedy = spec.temperature == 0
        n_call = 1 if greedy else spec.n  # greedy samples are identical: generate once, repeat
        kwargs: dict[str, Any] = {
            "max_new_tokens": spec.max_new_tokens,
            "min_new_tokens": spec.min_new_tokens or None,
            "num_return_sequences": n_call,
            "return_dict_in_generate": True,
            "output_logits": True,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if greedy:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=spec.temperature, top_p=spec.top_p, top_k=0)
        with torch.inference_mode():
            if n_call > 1 and width > 1 and self.share_prefill:
                inputs = self._shared_prefill(enc["input_ids"], enc["attention_mask"], n_call)
                kwargs["num_return_sequences"] = 1
            else:
                inputs = dict(enc)
            out = self.model.generate(**inputs, **kwargs)
            gen = out.sequences[:, width:]
            lps = _mean_token_logprobs(out.logits, gen, self.tokenizer.eos_token_id)
        texts = self.tokenizer.batch_decode(gen, skip_special_tokens=True)
        results = []
        for i in range(len(prompts)):
            sl = slice(i * n_call, (i + 1) * n_call)
            t, lp = texts[sl], lps[sl]
            if greedy:
                t, lp = t * spec.n, lp * spec.n
            results.append(Completion(texts=list(t), mean_logprobs=list(lp)))
        return results


def _mean_token_logprobs(logits: Sequence[Any], gen: Any, eos_id: int | None) -> list[float]:
    """Per-row mean log-prob of the generated tokens up to and including the first EOS."""
    import torch

    steps = min(len(logits), gen.shape[1])
    if steps == 0:
        return [float("nan")] * gen.shape[0]
    total = torch.zeros(gen.shape[0], dtype=torch.float64, device=gen.device)
    if eos_id is None:
        valid = torch.ones_like(gen[:, :steps], dtype=torch.bool)
    else:
        is_eos = (gen[:, :steps] == eos_id).long()
        valid = (torch.cumsum(is_eos, dim=1) - is_eos) == 0  # no EOS strictly before this position
    for t in range(steps):  # one step at a time: never a (rows, steps, vocab) tensor
        lp = torch.log_softmax(logits[t].float(), dim=-1).gather(1, gen[:, t : t + 1]).squeeze(1)
        total += torch.where(valid[:, t], lp.double(), torch.zeros_like(total))
    n = valid.sum(dim=1).clamp(min=1).double()
    return (total / n).tolist()


class VLLMEngine:
    """vLLM ``LLM.generate`` with ``SamplingParams(n=N)``; vllm is imported here only."""

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        dtype: str = "float32",
        max_context: int | None = None,
        gpu_memory_utilization: float = 0.9,
        enable_prefix_caching: bool = True,
        tensor_parallel_size: int = 1,
        seed: int = 42,
    ):
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
            dtype=dtype,
            max_model_len=max_context,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=enable_prefix_caching,
            tensor_parallel_size=tensor_parallel_size,
            seed=seed,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def close(self) -> None:
        """Shut the engine down now (not at interpreter exit), through vLLM's public API; a second call
        does nothing.

        ``LLM.shutdown()`` where the installed vLLM has it. Then the ``LLM`` is dropped and
        ``vllm.distributed.cleanup_dist_env_and_memory()`` collects it (vLLM's engine core client shuts
        the engine core down when it is collected) and frees the distributed state and cached device
        memory, as vLLM's own tests release an ``LLM``.
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


def make_engine(name: str, model_path: str, **options: Any) -> Engine:
    """Build the engine called ``name`` ('hf' or 'vllm') with adapter-specific options."""
    if name == "hf":
        keys: tuple[str, ...] = ("dtype", "device", "threads", "max_context", "share_prefill")
        return HFEngine(model_path, **{k: v for k, v in options.items() if k in keys})
    if name == "vllm":
        keys = (
            "dtype",
            "max_context",
            "gpu_memory_utilization",
            "enable_prefix_caching",
            "tensor_parallel_size",
            "seed",
        )
        return VLLMEngine(model_path, **{k: v for k, v in options.items() if k in keys})
    raise RlufError(f"unknown engine {name!r} (expected hf or vllm)")
