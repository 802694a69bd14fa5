"""A test engine in the shape every engine module has (options, engine, options builder, ``ENGINE``).

It samples nothing: each of the N "samples" of a prompt is its first ``max_words`` words after
``prefix``. Tests register it (``registry.register(ENGINE)`` or a temporary ``registry.BUILTIN`` line)
to check that a new engine needs nothing but its module and that one registration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rluf_ray.config import GenerationConfig, ModelConfig, ResourcesConfig
from rluf_ray.engines.base import Completion, EngineEntry, EngineOptions, SamplingSpec


@dataclass(frozen=True)
class EchoOptions(EngineOptions):
    prefix: str = "echo: "
    max_words: int = 8


def options_from_config(
    generation: GenerationConfig, model: ModelConfig, resources: ResourcesConfig
) -> EchoOptions:
    return EchoOptions(prefix=f"seed {generation.seed}: ", max_words=int(resources.cpus_per_actor))


class EchoEngine:
    name = "echo"

    def __init__(self, model_path: str, options: EchoOptions) -> None:
        self.model_path = model_path
        self.options = options
        self.closed = False

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(
        self, prompts: Sequence[str], spec: SamplingSpec, seed: int | None = None
    ) -> list[Completion]:
        out = []
        for p in prompts:
            text = self.options.prefix + " ".join(p.split()[: self.options.max_words])
            out.append(Completion([text] * spec.n, [0.0] * spec.n))
        return out

    def close(self) -> None:
        self.closed = True


ENGINE = EngineEntry("echo", EchoEngine, EchoOptions, options_from_config)
