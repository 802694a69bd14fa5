"""The offline judge: reference-based (ROUGE-L from ``rouge-score``; the rubric's own measures),
deterministic, no network.

It answers the same requests as the API judge with the same result type, so the embedded default
runs end to end on a laptop. Scores follow the request's template version:

- ``score_v1``: ROUGE-L F1 against the reference;
- ``score_v2`` (the original's criteria, accuracy first): ``1 - ERROR_COST * errors``, floored at 0,
  where ``errors`` counts the word-level mistakes against the reference: ``max(missing, extra)``
  from the ROUGE-L alignment (a wrong name, day or count is one error; a dropped or invented word is
  one). With ``ERROR_COST`` 0.2 one mistake scores 0.8 (acceptable at 0.7) and two score 0.6 (not):
  a summary that gets two facts wrong is not an accurate summary, although its ROUGE-L F1 is still
  about 0.85.

A pairwise preference picks the output with the higher ROUGE-L F1 (ties broken by a hash of the
record, never by position). The rubric gives each axis its own measure against the reference and the
post (``rluf_ray.judge.offline_rubric``: accuracy, the reference's key facts stated against the wrong
ones; completeness, the share of its facts covered; relevance, the share of the answer grounded in the
post; expression, fluency and length), scaled to 0-10 (integers under ``rubric_v1``, steps of 0.5
under ``rubric_v2``, as each version's prompt asks). ``noise`` (``judge.offline_noise``) mimics
annotator disagreement: with that probability a pairwise preference is flipped, seeded per request
key so results do not depend on order or batching. Scores and rubrics stay deterministic functions of the texts.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from rouge_score import rouge_scorer, tokenizers

from rluf_ray.judge.offline_rubric import rubric_axes
from rluf_ray.judge.parsing import RUBRIC_AXES, RUBRIC_STEPS
from rluf_ray.judge.requests import JudgeRequest, JudgeResult

ERROR_COST = 0.2
"""What one word-level mistake against the reference costs under ``score_v2`` (1.0 is a perfect copy)."""
_ERROR_SCORED = frozenset({"score_v2"})


def accuracy_score(errors: int, cost: float = ERROR_COST) -> float:
    """The ``score_v2`` grade of an answer with ``errors`` word-level mistakes.

    Args:
        errors: Word-level mistakes against the reference (:meth:`OfflineJudge.errors`), >= 0.
        cost: What one mistake costs (:data:`ERROR_COST` by default).

    Returns:
        ``max(0, 1 - cost * errors)``, in [0, 1].
    """
    return max(0.0, 1.0 - cost * errors)


def _digest(*parts: str) -> int:
    h = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(h[:8], "big")


class OfflineJudge:
    """Deterministic reference-based judge with optional seeded label noise.

    Args:
        noise: Probability in [0, 0.5] of flipping a pairwise preference (``judge.offline_noise``).
        seed: Seed of the noise (``judge.seed``), combined with each request's key.
    """

    def __init__(self, noise: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= noise <= 0.5:
            raise ValueError("noise must lie in [0, 0.5]")
        self.noise = noise
        self.seed = seed
        self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        self._tokenizer = tokenizers.DefaultTokenizer(use_stemmer=False)

    def _rng(self, req: JudgeRequest) -> random.Random:
        return random.Random(_digest(str(self.seed), req.task, req.key))

    def _rouge(self, candidate: str, reference: str) -> tuple[float, float, float]:
        s = self._scorer.score(reference, candidate)["rougeL"]
        return float(s.precision), float(s.recall), float(s.fmeasure)

    def errors(self, candidate: str, reference: str) -> int:
        """Word-level mistakes of ``candidate`` against ``reference``: ``max(missing, extra)`` tokens of
        their longest common subsequence (ROUGE-L's alignment and tokenizer).

        Args:
            candidate: The answer to grade.
            reference: The reference summary.

        Returns:
            The number of mistakes, >= 0; when either text has no tokens, the other's token count.
        """
        cand = self._tokenizer.tokenize(candidate)
        ref = self._tokenizer.tokenize(reference)
        if not cand or not ref:
            return max(len(cand), len(ref))
        precision = self._rouge(candidate, reference)[0]
        lcs = round(precision * len(cand))
        return max(len(cand) - lcs, len(ref) - lcs)

    def judge_one(self, req: JudgeRequest) -> JudgeResult:
        """Answer one request (synchronously).

        Args:
            req: A ``score``, ``pairwise`` or ``rubric`` request; its ``reference`` field is what the
                texts are compared with (a pairwise request without one fails).

        Returns:
            The result, with no attempts: a score in [0, 1], a preference 1 or 2, or the four rubric
            axes in [0, 10] on the version's grid; a pairwise request without a reference is
            ``value=None`` with an ``offline`` error.
        """
        f = req.fields
        ref = f.get("reference", "")
        if req.task == "score":
            if req.version in _ERROR_SCORED:
                value: object = accuracy_score(self.errors(f["answer"], ref))
            else:
                value = self._rouge(f["answer"], ref)[2]
        elif req.task == "pairwise":
            if not ref:
                return JudgeResult(req.key, None, "offline: pairwise needs a reference", attempts=0)
            f1 = self._rouge(f["output_1"], ref)[2]
            f2 = self._rouge(f["output_2"], ref)[2]
            if f1 != f2:
                pref = 1 if f1 > f2 else 2
            else:
                pref = 1 + _digest(f["instruction"], f["input"], *sorted((f["output_1"], f["output_2"]))) % 2
            flip = self.noise > 0 and self._rng(req).random() < self.noise
            value = (3 - pref) if flip else pref
        elif req.task == "rubric":
            raw = rubric_axes(f["answer"], ref, f.get("post", ""))
            step = RUBRIC_STEPS.get(req.version, 1.0)
            value = {axis: float(round(10 * raw[axis] / step) * step) for axis in RUBRIC_AXES}
        else:  # pragma: no cover - Literal guards this
            raise ValueError(f"unknown task {req.task!r}")
        return JudgeResult(req.key, value, None, attempts=0)

    async def judge(self, req: JudgeRequest) -> JudgeResult:
        """Same interface as the API judge.

        Args:
            req: The request.

        Returns:
            Its result, as :meth:`judge_one`.
        """
        return self.judge_one(req)

    async def judge_many(self, reqs: Sequence[JudgeRequest]) -> list[JudgeResult]:
        """Answer many requests, in order.

        Args:
            reqs: The requests.

        Returns:
            One result per request, in input order.
        """
        return [self.judge_one(r) for r in reqs]
