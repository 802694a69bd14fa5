"""Which answer pairs the AI-feedback judge compares, and in which order it sees them.

Order is randomised *per pair* from a hash of (seed, prompt id, the two answers), so it does not
depend on processing order or on how the work is sharded, and position bias averages out within
each prompt (randomising once per prompt would leave it in).
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class PairTask:
    """One comparison: the answers as shown to the judge (output_1, output_2)."""

    prompt_id: str
    first: int  # index (into the prompt's unique answers) shown as output_1
    second: int  # index shown as output_2
    flipped: bool  # True when the shown order is the reverse of (lower index, higher index)


def _stable_unit(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pair_tasks(
    prompt_id: str,
    answers: list[str],
    max_pairs: int | None = None,
    seed: int = 42,
    debias_order: bool = True,
) -> list[PairTask]:
    """List the unordered pairs of a prompt's unique answers the judge compares (a seeded sample when capped).

    Args:
        prompt_id: The prompt (seeds the sample and the order).
        answers: The prompt's unique answers; a pair is two indices into it.
        max_pairs: The most pairs per prompt; None = every pair. A capped sample is drawn from an RNG
            seeded by ``seed`` and ``prompt_id`` and kept in index order.
        seed: Seed of the sample and of the shown order.
        debias_order: Whether the shown order is randomised per pair (else the lower index is shown
            first).

    Returns:
        One task per pair, in (lower index, higher index) order.
    """
    pairs = list(itertools.combinations(range(len(answers)), 2))
    if max_pairs is not None and len(pairs) > max_pairs:
        rng = random.Random(f"{seed}:{prompt_id}")
        pairs = sorted(rng.sample(pairs, max_pairs))
    tasks = []
    for i, j in pairs:
        flip = debias_order and _stable_unit(seed, prompt_id, answers[i], answers[j]) < 0.5
        tasks.append(PairTask(prompt_id, j if flip else i, i if flip else j, flip))
    return tasks


def chosen_rejected(task: PairTask, preference: int) -> tuple[int, int]:
    """Turn the judge's preference for output 1 or output 2 into (chosen index, rejected index).

    Args:
        task: The comparison, with the answer shown as output_1 and output_2.
        preference: The output the judge preferred, 1 or 2.

    Returns:
        ``(chosen, rejected)``, indices into the prompt's unique answers.

    Raises:
        ValueError: If ``preference`` is neither 1 nor 2.
    """
    if preference == 1:
        return task.first, task.second
    if preference == 2:
        return task.second, task.first
    raise ValueError(f"preference must be 1 or 2, got {preference!r}")
