"""Score requests of unique answers and their SCORE_SCHEMA rows (pure; the judging itself is
``rluf_ray.judge.api.score_answers``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rluf_ray.judge.keys import answer_key, parse_answer_key
from rluf_ray.judge.requests import JudgeRequest, JudgeResult, score_request


def score_requests(rows: Iterable[Mapping[str, Any]], template: str | None = None) -> list[JudgeRequest]:
    """Score requests from ``(prompt_id, post, reference, answer)`` rows.

    Args:
        rows: Score items (:func:`calibration_score_rows`): ``prompt_id``, ``post``, ``reference``,
            ``answer`` (the normalised answer, part of the request key) and optionally ``text`` (the
            raw answer shown to the judge; absent or empty: ``answer`` is shown).
        template: The score template version (``judge.templates.score``); None: the default version.

    Returns:
        One score request per row, in order, keyed by ``answer_key(prompt_id, answer)``.
    """
    out = []
    for row in rows:
        shown = row.get("text") or row["answer"]
        out.append(
            score_request(
                answer_key(row["prompt_id"], row["answer"]), row["post"], row["reference"], shown, template
            )
        )
    return out


def calibration_score_rows(
    generation_rows: Iterable[Mapping[str, Any]], posts: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Expand GENERATION_SCHEMA rows of the calibration split into one score item per unique answer.

    ``posts`` maps prompt_id to the source post (the generation rows carry the prompt, not the post).
    Rows of the test split are skipped: as in the original, only calibration answers are scored.

    Args:
        generation_rows: GENERATION_SCHEMA rows (``prompt_id``, ``reference``, ``answers``, optional
            ``texts`` parallel to ``answers`` and ``split``; a row without ``split`` counts as
            calibration).
        posts: prompt_id -> source post, for every calibration prompt.

    Returns:
        One item per (row, answer), in order: ``prompt_id``, ``post``, ``reference``, ``answer``
        and ``text`` (the raw answer; ``answer`` itself when the row has no ``texts``).
    """
    items = []
    for g in generation_rows:
        if g.get("split", "calibration") != "calibration":
            continue
        texts = g.get("texts") or g["answers"]
        for answer, text in zip(g["answers"], texts, strict=True):
            items.append(
                {
                    "prompt_id": g["prompt_id"],
                    "post": posts[g["prompt_id"]],
                    "reference": g["reference"],
                    "answer": answer,
                    "text": text,
                }
            )
    return items


def score_rows(reqs: Sequence[JudgeRequest], results: Sequence[JudgeResult]) -> list[dict[str, Any]]:
    """SCORE_SCHEMA rows (prompt_id, answer, score, error) of score requests and their results, in order.

    A failed call is ``score=None`` with its reason, never 0.

    Args:
        reqs: Score requests keyed by ``rluf_ray.judge.keys.answer_key``.
        results: Their results, one per request in the same order.

    Returns:
        One row per request: ``prompt_id`` and ``answer`` from the key, ``score`` (float or None)
        and ``error``.
    """
    out = []
    for req, res in zip(reqs, results, strict=True):
        pid, ans = parse_answer_key(req.key)
        score = float(res.value) if res.ok else None
        out.append({"prompt_id": pid, "answer": ans, "score": score, "error": res.error})
    return out
