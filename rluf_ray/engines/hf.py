"""The ``hf`` engine: transformers ``generate`` with N samples per prompt over a left-padded batch of
prompts in one call.

Each prompt is prefilled once and its KV cache shared by its N samples (what ``num_return_sequences=N``
does, without encoding the prompt N times); the mean token log-probability of each sample is computed
from the raw logits that ``generate`` returns (``output_logits``), under the model's own distribution
(not the temperature-scaled one), counting tokens up to and including the end-of-sequence token.
torch and transformers are imported inside the engine, so importing this module costs nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rluf_ray.engines.base import Completion, EngineEntry, EngineOptions, SamplingSpec, check_model_path
from rluf_ray.errors import RlufError

if TYPE_CHECKING:
    from rluf_ray.config import GenerationConfig, ModelConfig, ResourcesConfig


@dataclass(frozen=True)
class HfOptions(EngineOptions):
    """Options of the ``hf`` engine.

    Attributes:
        dtype: Weights dtype (a torch dtype name).
        device: Torch device; None picks cuda when there is one, else cpu.
        threads: Torch CPU threads (None: torch's default).
        max_context: Context length in tokens (None: the model's ``max_position_embeddings``).
        share_prefill: Prefill each prompt once for its N samples.
    """

    dtype: str = "float32"
    device: str | None = None
    threads: int | None = None
    max_context: int | None = None
    share_prefill: bool = True


def options_from_config(
    generation: GenerationConfig, model: ModelConfig, resources: ResourcesConfig
) -> HfOptions:
    """The ``hf`` options of a run.

    Args:
        generation: The ``generation`` section (nothing in it is an hf option).
        model: The ``model`` section: ``dtype`` and ``max_context``.
        resources: The ``resources`` section: ``cpus_per_actor`` (whole CPUs, at least one) sets the
            torch threads of each engine actor.

    Returns:
        The engine's options (``device`` and ``share_prefill`` at their defaults).
    """
    return HfOptions(
        dtype=model.dtype, threads=max(1, int(resources.cpus_per_actor)), max_context=model.max_context
    )


class HFEngine:
    """transformers ``generate``: one call per batch of prompts with ``num_return_sequences=N``."""

    name = "hf"

    def __init__(self, model_path: str, options: HfOptions | None = None):
        """Load the model in ``model_path`` (a save_pretrained folder) with ``options`` (defaults if None).

        Args:
            model_path: The local save_pretrained folder (model and tokenizer).
            options: The engine's options; ``None`` for ``HfOptions()``.

        Raises:
            RlufError: ``model_path`` holds no save_pretrained model.
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        opts = options if options is not None else HfOptions()
        check_model_path(model_path)
        if opts.threads:
            torch.set_num_threads(int(opts.threads))
        self.device = opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model: Any = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, opts.dtype))
        # transformers types PreTrainedModel.to through @wraps(nn.Module.to), which hides the bound self
        self.model.to(self.device).eval()  # type: ignore[arg-type]
        self.max_context = opts.max_context or getattr(self.model.config, "max_position_embeddings", None)
        self.share_prefill = opts.share_prefill
        # transformers >= 5.2x names the KV cache argument ``cache`` (``past_key_values`` deprecated).
        self._cache_kw = (
            "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        )

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the engine will see it (special tokens included).

        Args:
            text: A prompt as it will be sent to ``generate``.

        Returns:
            The number of prompt tokens, any special tokens the tokenizer adds (e.g. BOS) included.
        """
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
        """``spec.n`` samples for every prompt, in one ``generate`` call over the left-padded batch.

        Greedy decoding (temperature 0) generates once per prompt and repeats the result ``spec.n`` times;
        otherwise, with more than one sample, each prompt is prefilled once and its KV cache shared
        (``share_prefill``). The mean log-probs are under the model's own distribution (raw logits).

        Args:
            prompts: The prompts of one batch, already rendered; an empty batch gives an empty list.
            spec: How to sample.
            seed: Torch seed set before the call (``torch.manual_seed``); ``None`` leaves it as it is.

        Returns:
            One Completion per prompt, in order, each with ``spec.n`` texts and mean token log-probs.

        Raises:
            RlufError: The padded prompt width plus ``spec.max_new_tokens`` exceeds the context length.
        """
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


ENGINE = EngineEntry("hf", HFEngine, HfOptions, options_from_config)
"""The registration of this engine (``registry.BUILTIN`` names this module)."""
