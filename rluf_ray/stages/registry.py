"""The pipeline's stages: names, artifact directories, upstream stages and the config keys each reads.

A stage's manifest hashes exactly the config keys listed here (resources and output paths are never
listed: they change how fast, not what), so changing a key re-runs the stages that read it and,
through the upstream manifest hashes, everything downstream of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rluf_ray.errors import StageNotBuilt


@dataclass(frozen=True)
class StageSpec:
    """One pipeline stage."""

    name: str
    artifact_dir: str
    upstream: tuple[str, ...]
    reads: tuple[str, ...]
    module: str

    def runner(self) -> Callable[..., Any]:
        """The stage's ``run(cfg, ctx)``; raises StageNotBuilt when there is none yet."""
        try:
            mod = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if exc.name == self.module:
                raise StageNotBuilt(f"stage '{self.name}' is not built yet") from None
            raise
        run = getattr(mod, "run", None)
        if run is None:
            raise StageNotBuilt(f"stage '{self.name}' is not built yet")
        return run


_JUDGE_RESULT_KEYS = (
    "judge.provider",
    "judge.model",
    "judge.base_url",
    "judge.temperature",
    "judge.max_tokens",
    "judge.offline_noise",
    "judge.seed",
)

STAGES: tuple[StageSpec, ...] = (
    StageSpec("sft", "sft", (), ("model", "data", "sft"), "rluf_ray.stages.sft"),
    StageSpec(
        "generate",
        "generation",
        ("sft",),
        (
            "model.max_context",
            "data",
            "generation.sampling_num",
            "generation.temperature",
            "generation.top_p",
            "generation.max_new_tokens",
            "generation.seed",
            "generation.score_calibration",
            *_JUDGE_RESULT_KEYS,
        ),
        "rluf_ray.stages.generate",
    ),
    StageSpec("calibrate", "calibration", ("generate",), ("conformal",), "rluf_ray.stages.calibrate"),
    StageSpec(
        "feedback", "feedback", ("generate",), ("feedback", *_JUDGE_RESULT_KEYS), "rluf_ray.stages.feedback"
    ),
    StageSpec(
        "assign-weights", "weights", ("calibrate", "feedback"), ("weights",), "rluf_ray.stages.weights"
    ),
    StageSpec("train", "training", ("sft", "assign-weights"), ("dpo",), "rluf_ray.stages.train"),
    StageSpec(
        "infer",
        "inference",
        ("sft", "train"),
        ("inference", "data", "model.max_context"),
        "rluf_ray.stages.infer",
    ),
    StageSpec(
        "evaluate", "evaluation", ("infer",), ("evaluation", *_JUDGE_RESULT_KEYS), "rluf_ray.stages.evaluate"
    ),
)

BY_NAME: dict[str, StageSpec] = {s.name: s for s in STAGES}


def get(name: str) -> StageSpec:
    """The stage called ``name``."""
    return BY_NAME[name]
