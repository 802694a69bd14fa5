"""Frequency tables of sampled answers and the variety statistics of a generation run (pure)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from rluf_ray.common.text import normalize_answer


@dataclass(frozen=True)
class PromptAnswers:
    """Unique normalised answers of one prompt with their counts, most frequent first (ties: first
    sampled first); the generate stage writes one row of them per prompt.

    ``first_sampled`` is the index in ``answers`` of the answer of sample 0 (the top answer of the
    ``cfa`` protocol, as in the original; it differs from 0 when another answer is more frequent).
    """

    answers: list[str]
    counts: list[int]
    texts: list[str]  # one raw text per answer: its first sample
    mean_logprobs: list[float]  # mean over that answer's samples of the per-sample mean token log-prob
    first_sampled: int = 0  # index in ``answers`` of the first sample's answer

    @property
    def num_samples(self) -> int:
        return sum(self.counts)


def prompt_answers(texts: Sequence[str], logprobs: Sequence[float] | None = None) -> PromptAnswers:
    """Count the normalised answers of one prompt's samples.

    NaN log-probs (unknown) are ignored in an answer's mean; an answer with none known gets NaN.

    Args:
        texts: The prompt's sampled texts, in sampling order (sample 0 first).
        logprobs: ``logprobs[i]`` is sample i's mean token log-prob, one per text; None when unknown
            (every answer's mean is then NaN).

    Returns:
        The unique normalised answers, most frequent first (ties: first sampled first), with their
        counts, first raw text, mean log-prob and the index of sample 0's answer.

    Raises:
        ValueError: If ``logprobs`` and ``texts`` differ in length.
    """
    if logprobs is not None and len(logprobs) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(logprobs)} log-probs")
    order: dict[str, int] = {}
    counts: dict[str, int] = {}
    raw: dict[str, str] = {}
    lp_sum: dict[str, float] = {}
    lp_n: dict[str, int] = {}
    for i, text in enumerate(texts):
        key = normalize_answer(text)
        if key not in order:
            order[key] = len(order)
            counts[key] = 0
            raw[key] = text.strip()
            lp_sum[key] = 0.0
            lp_n[key] = 0
        counts[key] += 1
        lp = float("nan") if logprobs is None else float(logprobs[i])
        if not math.isnan(lp):
            lp_sum[key] += lp
            lp_n[key] += 1
    keys = sorted(order, key=lambda k: (-counts[k], order[k]))
    return PromptAnswers(
        answers=keys,
        counts=[counts[k] for k in keys],
        texts=[raw[k] for k in keys],
        mean_logprobs=[lp_sum[k] / lp_n[k] if lp_n[k] else float("nan") for k in keys],
        first_sampled=next((i for i, k in enumerate(keys) if order[k] == 0), 0),
    )


@dataclass
class VarietyStats:
    """Running statistics of distinct answers per prompt and top-answer accuracy (mergeable)."""

    prompts: int = 0
    samples: int = 0
    top_matches: int = 0  # most frequent answer == normalised reference
    any_matches: int = 0  # the reference is among the answers
    truncated: int = 0
    distinct_hist: dict[int, int] = field(default_factory=dict)  # distinct answers -> prompts

    def add(
        self, answers: Sequence[str], counts: Sequence[int], reference: str, truncated: bool = False
    ) -> None:
        """Count one prompt's answers in.

        Args:
            answers: The prompt's unique normalised answers, most frequent first.
            counts: The samples of each answer, aligned with ``answers``.
            reference: The prompt's reference answer (raw; normalised here before matching).
            truncated: Whether the prompt was cut to fit the token budget.
        """
        ref = normalize_answer(reference)
        self.prompts += 1
        self.samples += int(sum(counts))
        self.top_matches += bool(answers) and answers[0] == ref
        self.any_matches += ref in answers
        self.truncated += bool(truncated)
        k = len(answers)
        self.distinct_hist[k] = self.distinct_hist.get(k, 0) + 1

    def merge(self, other: VarietyStats) -> None:
        """Add another run's statistics into these (in place; ``other`` is left as it is).

        Args:
            other: Statistics of other prompts (e.g. another batch); histogram keys may be strings,
                as after a JSON round trip.
        """
        self.prompts += other.prompts
        self.samples += other.samples
        self.top_matches += other.top_matches
        self.any_matches += other.any_matches
        self.truncated += other.truncated
        for k, v in other.distinct_hist.items():
            self.distinct_hist[int(k)] = self.distinct_hist.get(int(k), 0) + int(v)

    def summary(self, low: int = 3, high: int = 30) -> dict[str, float | int | None]:
        """Summarize: median/min/max distinct answers, share in [low, high], top/any-answer match shares.

        Args:
            low: The lower end of the wanted range of distinct answers per prompt (inclusive).
            high: The upper end of that range (inclusive).

        Returns:
            ``prompts``, ``samples``, ``distinct_median``/``_min``/``_max``, the share of prompts with
            ``low..high`` distinct answers (key ``distinct_share_{low}_{high}``), the shares whose top
            answer is / whose answers include the normalised reference, and ``truncated``; only
            ``{"prompts": 0}`` before any prompt was added.
        """
        if not self.prompts:
            return {"prompts": 0}
        values = _expand(self.distinct_hist)
        in_range = sum(v for k, v in self.distinct_hist.items() if low <= k <= high)
        return {
            "prompts": self.prompts,
            "samples": self.samples,
            "distinct_median": float(statistics.median(values)),
            "distinct_min": values[0],
            "distinct_max": values[-1],
            f"distinct_share_{low}_{high}": round(in_range / self.prompts, 4),
            "top_matches_reference": round(self.top_matches / self.prompts, 4),
            "reference_among_answers": round(self.any_matches / self.prompts, 4),
            "truncated": self.truncated,
        }


def _expand(hist: dict[int, int]) -> list[int]:
    return sorted(k for k, v in hist.items() for _ in range(v))
