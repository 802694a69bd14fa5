"""Request keys of the judge: built and parsed here only (pure).

A key joins its parts with the ASCII unit separator ``\\x1f``, which never occurs in prompt ids or
model names. The judge cache is keyed by rendered messages, not by these keys; artifacts and tests
rely on their exact spelling, so it must not change.
"""

from __future__ import annotations

SEP = "\x1f"


def _split(key: str, parts: int, kind: str) -> list[str]:
    fields = key.split(SEP, parts - 1)
    if len(fields) != parts:
        raise ValueError(f"not a {kind} key: {key!r}")
    return fields


def answer_key(prompt_id: str, answer: str) -> str:
    """The key of one (prompt, answer) score request; ``answer`` may itself contain the separator.

    Args:
        prompt_id: The prompt's id (never contains ``SEP``).
        answer: The normalised answer text.

    Returns:
        ``prompt_id`` and ``answer`` joined by ``SEP``.
    """
    return f"{prompt_id}{SEP}{answer}"


def parse_answer_key(key: str) -> tuple[str, str]:
    """``(prompt_id, answer)`` of an :func:`answer_key`.

    Args:
        key: An :func:`answer_key`; everything after the first ``SEP`` is the answer.

    Returns:
        ``(prompt_id, answer)``.

    Raises:
        ValueError: ``key`` has too few parts.
    """
    prompt_id, answer = _split(key, 2, "answer")
    return prompt_id, answer


def pair_key(prompt_id: str, first: int, second: int) -> str:
    """The key of one pairwise comparison: the answer indices shown as output_1 and output_2.

    Args:
        prompt_id: The prompt's id.
        first: Index of the answer shown as ``output_1``.
        second: Index of the answer shown as ``output_2``.

    Returns:
        The three parts joined by ``SEP``.
    """
    return f"{prompt_id}{SEP}{first}{SEP}{second}"


def parse_pair_key(key: str) -> tuple[str, int, int]:
    """``(prompt_id, first, second)`` of a :func:`pair_key`.

    Args:
        key: A :func:`pair_key`.

    Returns:
        ``(prompt_id, first, second)`` with the answer indices as ints.

    Raises:
        ValueError: ``key`` has too few parts or an index is not an integer.
    """
    prompt_id, first, second = _split(key, 3, "pair")
    return prompt_id, int(first), int(second)


def rubric_key(model: str, prompt_id: str) -> str:
    """The key of one rubric request: the model that wrote the prediction and the prompt.

    Args:
        model: The name of the model (arm) that wrote the prediction.
        prompt_id: The prompt's id.

    Returns:
        ``model`` and ``prompt_id`` joined by ``SEP``.
    """
    return f"{model}{SEP}{prompt_id}"


def parse_rubric_key(key: str) -> tuple[str, str]:
    """``(model, prompt_id)`` of a :func:`rubric_key`.

    Args:
        key: A :func:`rubric_key`.

    Returns:
        ``(model, prompt_id)``.

    Raises:
        ValueError: ``key`` has too few parts.
    """
    model, prompt_id = _split(key, 2, "rubric")
    return model, prompt_id


def _seed_text(seed: int | None) -> str:
    return "" if seed is None else str(int(seed))


def _seed_of(text: str) -> int | None:
    return None if text == "" else int(text)


def comparison_key(a: str, b: str, seed: int | None, prompt_id: str) -> str:
    """The key of one evaluation comparison: arms A and B, the seed (empty when None), the prompt.

    Args:
        a: Arm A of the comparison (not necessarily the one shown as ``output_1``).
        b: Arm B of the comparison.
        seed: The comparison's seed; None: no seed (an empty part).
        prompt_id: The prompt's id.

    Returns:
        The four parts joined by ``SEP``.
    """
    return SEP.join((a, b, _seed_text(seed), prompt_id))


def parse_comparison_key(key: str) -> tuple[str, str, int | None, str]:
    """``(a, b, seed, prompt_id)`` of a :func:`comparison_key`.

    Args:
        key: A :func:`comparison_key`.

    Returns:
        ``(a, b, seed, prompt_id)``; ``seed`` is None where its part is empty.

    Raises:
        ValueError: ``key`` has too few parts or a seed that is not an integer.
    """
    a, b, seed, prompt_id = _split(key, 4, "comparison")
    return a, b, _seed_of(seed), prompt_id


def seeded_rubric_key(model: str, seed: int | None, prompt_id: str) -> str:
    """The key of one evaluation rubric request: the model, its seed (empty when None), the prompt.

    Args:
        model: The name of the model (arm) that wrote the prediction.
        seed: The seed of the prediction; None: no seed, e.g. the SFT arm (an empty part).
        prompt_id: The prompt's id.

    Returns:
        The three parts joined by ``SEP``.
    """
    return SEP.join((model, _seed_text(seed), prompt_id))


def parse_seeded_rubric_key(key: str) -> tuple[str, int | None, str]:
    """``(model, seed, prompt_id)`` of a :func:`seeded_rubric_key`.

    Args:
        key: A :func:`seeded_rubric_key`.

    Returns:
        ``(model, seed, prompt_id)``; ``seed`` is None where its part is empty.

    Raises:
        ValueError: ``key`` has too few parts or a seed that is not an integer.
    """
    model, seed, prompt_id = _split(key, 3, "seeded rubric")
    return model, _seed_of(seed), prompt_id
