"""Answer similarity, pure parts: tokenizing, and which (answer, top answer) pairs the score needs.

The similarity of an answer is measured against its prompt's top (most frequent) answer. Each
distinct (answer, top answer) pair is computed once (``top_answer_pairs``) and reused by every grid
point; ``per_answer_similarities`` lays a vector of pair similarities back out per prompt. The model
that scores the pairs (FastText trained on the run's text) is a component:
``rluf_ray.conformal.similarity_model``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Split text into lowercased word tokens.

    Args:
        text: Any text.

    Returns:
        The runs of word characters (letters, digits, underscore) of the lowercased text, in order.
    """
    return _TOKEN.findall(text.lower())


def top_answer_pairs(answers: Sequence[Sequence[str]]) -> dict[tuple[str, str], int]:
    """Each distinct (answer, top answer) pair with its position, in first-seen order.

    Args:
        answers: ``answers[i]`` is prompt i's unique answers, top answer first; the top answer is not
            paired with itself.

    Returns:
        ``(answer, top answer)`` -> its position in the vector of pair similarities.
    """
    index: dict[tuple[str, str], int] = {}
    for row in answers:
        for a in row[1:]:
            index.setdefault((a, row[0]), len(index))
    return index


def per_answer_similarities(
    answers: Sequence[Sequence[str]], index: dict[tuple[str, str], int], sims: np.ndarray
) -> list[list[float]]:
    """sim(answer, the prompt's top answer) for every answer (0.0 for the top answer itself).

    Args:
        answers: ``answers[i]`` is prompt i's unique answers, top answer first.
        index: The pair positions, ``top_answer_pairs(answers)``.
        sims: The similarity of each pair, shape ``(N,)`` for the N pairs of ``index``
            (``sims[index[pair]]``).

    Returns:
        One list per prompt, aligned with its answers (empty for a prompt without answers).
    """
    return [[0.0] + [float(sims[index[(a, row[0])]]) for a in row[1:]] if row else [] for row in answers]
