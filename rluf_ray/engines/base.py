"""What every sampling engine shares: the sampling request, its result, the engine interface, the entry
an engine module registers, and the model-folder check.

* :class:`SamplingSpec`: N per prompt, temperature, nucleus, token limits (built from the config once,
  by :meth:`SamplingSpec.from_config`, for ``generate`` and ``infer`` alike);
* :class:`Completion`: the N samples of one prompt;
* :class:`Engine`: what the engine pool needs from an engine (``count_tokens``, ``generate``, ``close``);
* :class:`EngineOptions`: the base of each engine's typed options (a frozen dataclass);
* :class:`EngineEntry`: an engine module's registration (name, engine class, options class, and the
  function that builds the options from the config's ``generation``, ``model`` and ``resources``).

No third-party import here: the config types are imported for type checking only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from rluf_ray.errors import RlufError

if TYPE_CHECKING:
    from rluf_ray.config import GenerationConfig, InferenceConfig, ModelConfig, ResourcesConfig


@dataclass(frozen=True)
class SamplingSpec:
    """How to sample: N per prompt, temperature, nucleus, token limits.

    Attributes:
        n: Samples per prompt, >= 1.
        temperature: Sampling temperature; 0 is greedy decoding.
        top_p: Nucleus sampling mass in (0, 1]; 1 keeps every token.
        max_new_tokens: Most new tokens per sample, >= 1.
        min_new_tokens: Fewest new tokens per sample (0: no minimum), at most ``max_new_tokens``.

    Raises:
        RlufError: A limit above is violated (checked at construction).
    """

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

    @classmethod
    def from_config(
        cls, generation: GenerationConfig, inference: InferenceConfig | None = None
    ) -> SamplingSpec:
        """The sampling of a stage, from the config sections it reads.

        Args:
            generation: The ``generation`` section: N samples per prompt, temperature, top_p, new tokens.
            inference: The ``inference`` section, for held-out inference: then one sample per prompt
                with its temperature and token limit (top_p still from ``generation``).

        Returns:
            ``generate``'s spec without ``inference``, ``infer``'s with it.
        """
        if inference is None:
            return cls(
                n=generation.sampling_num,
                temperature=generation.temperature,
                top_p=generation.top_p,
                max_new_tokens=generation.max_new_tokens,
            )
        return cls(
            n=1,
            temperature=inference.temperature,
            top_p=generation.top_p,
            max_new_tokens=inference.max_new_tokens,
        )


@dataclass
class Completion:
    """The N samples of one prompt: raw texts and each sample's mean token log-prob (NaN if unknown).

    Attributes:
        texts: The N decoded samples, special tokens removed.
        mean_logprobs: One mean token log-prob per text, in the same order.
    """

    texts: list[str]
    mean_logprobs: list[float] = field(default_factory=list)


class Engine(Protocol):
    """What the generate stage needs from an engine."""

    name: str

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the engine will see it (special tokens included).

        Args:
            text: A prompt as it will be sent to ``generate``.

        Returns:
            The number of prompt tokens, any special tokens the tokenizer adds (e.g. BOS) included.
        """
        ...

    def generate(
        self, prompts: Sequence[str], spec: SamplingSpec, seed: int | None = None
    ) -> list[Completion]:
        """``spec.n`` samples for every prompt, in one engine call; one Completion per prompt, in order.

        Args:
            prompts: The prompts of one batch, already rendered; an empty batch gives an empty list.
            spec: How to sample.
            seed: Torch seed set before the call where the engine takes one (``hf``); ``None`` leaves
                the random state as it is. ``vllm`` ignores it (its engine is seeded once).

        Returns:
            One Completion per prompt, each with ``spec.n`` texts.
        """
        ...

    def close(self) -> None:
        """Release the engine (processes, memory)."""
        ...


class EngineOptions:
    """Base of every engine's typed options; each engine subclasses it as a frozen dataclass."""


OptionsT = TypeVar("OptionsT", bound=EngineOptions)


@dataclass(frozen=True)
class EngineEntry(Generic[OptionsT]):
    """One engine as its module registers it (``ENGINE = EngineEntry(...)``; see ``registry.BUILTIN``).

    ``engine(model_path, options)`` builds the engine; ``options`` is its typed options class (every
    field has a default); ``from_config(generation, model, resources)`` builds those options from the
    config's sections and raises RlufError for settings the engine cannot run.
    """

    name: str
    engine: Callable[[str, OptionsT], Engine]
    options: type[OptionsT]
    from_config: Callable[[GenerationConfig, ModelConfig, ResourcesConfig], OptionsT]


def check_model_path(path: str) -> None:
    """A one-line error when the model directory is missing or is not a save_pretrained directory.

    Args:
        path: The local model directory.

    Raises:
        RlufError: ``path`` is empty, is not a directory, or has no ``config.json``.
    """
    if not path:
        raise RlufError("no model path given to the sampling engine")
    if not os.path.isdir(path):
        raise RlufError(f"model not found: {path} (run `rluf sft` first)")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise RlufError(f"{path} is not a Hugging Face model directory (no config.json)")
